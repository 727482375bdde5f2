//! One request's attempts as a state machine: how many were made, the route's deadline, and
//! whether the next attempt is a retry (and why). Time is always passed in — the proxy passes
//! `Instant::now()`, the tests any instant they like — so every rule here is tested without a
//! socket or a clock.
//!
//! The cycle, per attempt: [`Attempts::backoff`] (a pending retry waits first), then
//! [`Attempts::time_left`] (the deadline may already be gone), then [`Attempts::begin`] once an
//! instance is chosen; when the attempt fails, [`Attempts::after_failure`] decides whether
//! there is another.

use super::{BudgetEntry, Cause, RetryBudget, RetryPolicy};
use http::Method;
use std::time::{Duration, Instant};

/// A request's attempts.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    deadline: Option<Instant>,
    made: u32,
    /// Why the next attempt is a retry.
    pending: Option<Cause>,
}

/// Time left for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLeft {
    /// The route has no deadline.
    Unbounded,
    Left(Duration),
    /// The deadline has passed: the request ends with 504 `deadline_exceeded`.
    Exceeded,
}

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry,
    GiveUp(Refusal),
}

/// Why a failed attempt is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The route's policy: the cause is not retried, the method is not idempotent, or the
    /// attempts are spent.
    Policy,
    /// The route's deadline has passed.
    Deadline,
    /// The service's retry budget is spent (counted in
    /// `portico_upstream_retry_budget_exhausted_total`).
    Budget,
}

impl Attempts {
    /// A request that started at `start`, bounded by the route's `timeout`.
    pub fn new(start: Instant, timeout: Option<Duration>) -> Self {
        Self {
            deadline: timeout.map(|t| start + t),
            made: 0,
            pending: None,
        }
    }

    /// End of the route's time budget, retries included.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Attempts made so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// Whether the next attempt is a retry (and so waits a backoff first).
    pub fn retry_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the deadline has passed at `now`.
    pub fn past_deadline(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// When a retry is pending: its cause and how long to wait before it — the policy's
    /// backoff for this retry at `jitter` (uniform in [0, 1)), never past the deadline.
    /// Consumes the pending retry.
    pub fn backoff(
        &mut self,
        policy: &RetryPolicy,
        now: Instant,
        jitter: f64,
    ) -> Option<(Cause, Duration)> {
        let cause = self.pending.take()?;
        let wait = policy.backoff(self.made, jitter);
        let wait = self
            .deadline
            .map_or(wait, |d| wait.min(d.saturating_duration_since(now)));
        Some((cause, wait))
    }

    /// Time left at `now` for the next attempt.
    pub fn time_left(&self, now: Instant) -> TimeLeft {
        match self.deadline {
            None => TimeLeft::Unbounded,
            Some(d) => match d.saturating_duration_since(now) {
                left if left.is_zero() => TimeLeft::Exceeded,
                left => TimeLeft::Left(left),
            },
        }
    }

    /// An attempt goes out.
    pub fn begin(&mut self) {
        self.made += 1;
    }

    /// Whether the attempt that just failed with `cause` gets another one: the route's policy,
    /// the deadline and the service's retry budget must all allow it (a retry slot is taken on
    /// the request's first retry and kept).
    pub fn after_failure(
        &mut self,
        cause: Cause,
        method: &Method,
        policy: &RetryPolicy,
        now: Instant,
        (budget, entry): (&RetryBudget, &mut BudgetEntry),
    ) -> Decision {
        if !policy.allows(cause, method, self.made) {
            return Decision::GiveUp(Refusal::Policy);
        }
        if self.past_deadline(now) {
            return Decision::GiveUp(Refusal::Deadline);
        }
        if !entry.take_slot(budget) {
            return Decision::GiveUp(Refusal::Budget);
        }
        self.pending = Some(cause);
        Decision::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RetryConfig, RetryOn};

    const MS: Duration = Duration::from_millis(1);

    fn policy(attempts: u32, on: Vec<RetryOn>) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            attempts,
            on,
            non_idempotent: false,
            backoff: 100 * MS,
        })
    }

    #[test]
    fn a_connect_failure_is_retried_after_a_jittered_doubling_backoff_until_attempts_run_out() {
        let t0 = Instant::now();
        let p = policy(2, vec![RetryOn::ConnectFailure]);
        let budget = RetryBudget::default();
        let mut entry = budget.enter();
        let mut a = Attempts::new(t0, None);
        assert_eq!(
            a.backoff(&p, t0, 0.5),
            None,
            "the first attempt does not wait"
        );
        a.begin();
        let fail = |a: &mut Attempts, entry: &mut BudgetEntry| {
            a.after_failure(
                Cause::ConnectFailure,
                &Method::POST,
                &p,
                t0,
                (&budget, entry),
            )
        };
        assert_eq!(fail(&mut a, &mut entry), Decision::Retry);
        assert_eq!(
            a.backoff(&p, t0, 0.5),
            Some((Cause::ConnectFailure, 50 * MS)),
            "retry 1: half of 100ms"
        );
        assert_eq!(a.backoff(&p, t0, 0.5), None, "consumed");
        a.begin();
        assert_eq!(fail(&mut a, &mut entry), Decision::Retry);
        assert_eq!(
            a.backoff(&p, t0, 0.5),
            Some((Cause::ConnectFailure, 100 * MS)),
            "retry 2: half of 200ms"
        );
        a.begin();
        assert_eq!(
            fail(&mut a, &mut entry),
            Decision::GiveUp(Refusal::Policy),
            "two retries, then no more"
        );
        assert_eq!(a.made(), 3);
    }

    #[test]
    fn status_and_error_retries_need_an_idempotent_method_and_must_be_enabled() {
        let t0 = Instant::now();
        let budget = RetryBudget::default();
        let mut entry = budget.enter();
        let only_connect = policy(3, vec![RetryOn::ConnectFailure]);
        let all = policy(3, vec![RetryOn::Status, RetryOn::Error]);
        let mut a = Attempts::new(t0, None);
        a.begin();
        let mut decide = |p: &RetryPolicy, cause, method: &Method| {
            let mut a = a.clone();
            a.after_failure(cause, method, p, t0, (&budget, &mut entry))
        };
        let no = Decision::GiveUp(Refusal::Policy);
        assert_eq!(decide(&only_connect, Cause::Status, &Method::GET), no);
        assert_eq!(decide(&all, Cause::Status, &Method::GET), Decision::Retry);
        assert_eq!(decide(&all, Cause::Error, &Method::PUT), Decision::Retry);
        assert_eq!(decide(&all, Cause::Status, &Method::POST), no);
        a.begin();
    }

    #[test]
    fn the_deadline_caps_the_backoff_and_ends_the_request_when_it_passes() {
        let t0 = Instant::now();
        let p = policy(5, vec![RetryOn::ConnectFailure]);
        let budget = RetryBudget::default();
        let mut entry = budget.enter();
        let mut a = Attempts::new(t0, Some(120 * MS));
        assert_eq!(a.time_left(t0), TimeLeft::Left(120 * MS));
        a.begin();
        let at = t0 + 90 * MS;
        let d = a.after_failure(
            Cause::ConnectFailure,
            &Method::GET,
            &p,
            at,
            (&budget, &mut entry),
        );
        assert_eq!(d, Decision::Retry);
        assert_eq!(
            a.backoff(&p, at, 1.0),
            Some((Cause::ConnectFailure, 30 * MS)),
            "100ms of backoff, but only 30ms left"
        );
        assert_eq!(a.time_left(t0 + 120 * MS), TimeLeft::Exceeded);
        assert_eq!(
            a.after_failure(
                Cause::ConnectFailure,
                &Method::GET,
                &p,
                t0 + 121 * MS,
                (&budget, &mut entry)
            ),
            Decision::GiveUp(Refusal::Deadline)
        );
        assert_eq!(Attempts::new(t0, None).time_left(t0), TimeLeft::Unbounded);
    }

    #[test]
    fn a_spent_budget_refuses_retries_and_a_finished_request_frees_its_slot() {
        let t0 = Instant::now();
        let p = policy(5, vec![RetryOn::ConnectFailure]);
        let budget = RetryBudget::default();
        let mut holders: Vec<BudgetEntry> = (0..3).map(|_| budget.enter()).collect();
        for h in &mut holders {
            assert!(h.take_slot(&budget));
        }
        let mut entry = budget.enter();
        let mut a = Attempts::new(t0, None);
        a.begin();
        assert_eq!(
            a.after_failure(
                Cause::ConnectFailure,
                &Method::GET,
                &p,
                t0,
                (&budget, &mut entry)
            ),
            Decision::GiveUp(Refusal::Budget)
        );
        budget.leave(holders.pop().unwrap());
        assert_eq!(
            a.after_failure(
                Cause::ConnectFailure,
                &Method::GET,
                &p,
                t0,
                (&budget, &mut entry)
            ),
            Decision::Retry
        );
    }
}
