//! Which failed attempts are retried, after how long, and how many retries a service can carry
//! at once (the retry budget), so retries cannot multiply load on a struggling service. The
//! per-request decision is a state machine ([`Attempts`]) that takes the time as an argument.

mod attempts;

pub use attempts::{Attempts, Decision, Refusal, TimeLeft};

use crate::config::{Problems, RetryConfig, RetryOn};
use http::Method;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Retrying requests always allowed per service, whatever the traffic.
const MIN_CONCURRENT_RETRIES: usize = 3;
/// Share of a service's in-flight requests that may be retrying at once.
const RETRY_SHARE: f64 = 0.2;

/// Why an attempt is retried; the `reason` label of `portico_upstream_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    ConnectFailure,
    Status,
    Error,
}

impl Cause {
    /// Every cause, in label order.
    pub const ALL: [Cause; 3] = [Cause::ConnectFailure, Cause::Status, Cause::Error];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ConnectFailure => "connect_failure",
            Cause::Status => "status",
            Cause::Error => "error",
        }
    }
}

/// A route's compiled retry policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    attempts: u32,
    on: [bool; 3],
    non_idempotent: bool,
    backoff: Duration,
}

/// Most retries a route may ask for.
pub const MAX_RETRIES: u32 = 5;

impl RetryPolicy {
    /// Compiles a route's `retry` section (at `at`), recording problems.
    pub fn compile(cfg: &RetryConfig, at: &str, problems: &mut Problems) -> Self {
        if cfg.attempts > MAX_RETRIES {
            problems.push(
                format!("{at}.attempts"),
                format!("at most {MAX_RETRIES} retries"),
            );
        }
        Self::new(cfg)
    }

    /// The policy of a `retry` section.
    pub fn new(cfg: &RetryConfig) -> Self {
        let has = |o| cfg.on.contains(&o);
        Self {
            attempts: cfg.attempts,
            on: [
                has(RetryOn::ConnectFailure),
                has(RetryOn::Status),
                has(RetryOn::Error),
            ],
            non_idempotent: cfg.non_idempotent,
            backoff: cfg.backoff,
        }
    }

    /// Whether an attempt that failed with `cause` may be retried, given the attempts made.
    /// A connect failure sent nothing, so any method qualifies; the others need an idempotent
    /// method unless the route allows otherwise.
    pub fn allows(&self, cause: Cause, method: &Method, attempts_made: u32) -> bool {
        attempts_made <= self.attempts
            && self.on[cause as usize]
            && (cause == Cause::ConnectFailure || self.non_idempotent || method.is_idempotent())
    }

    /// Wait before retry number `retry` (1-based) for a `jitter` drawn uniformly from [0, 1):
    /// `jitter × backoff × 2^(retry-1)`, so concurrent retries spread out.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(10));
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Per-service accounting of in-flight and retrying requests.
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: AtomicUsize,
    retrying: AtomicUsize,
}

impl RetryBudget {
    /// A request to the service started; it must [`RetryBudget::leave`] with the entry.
    pub fn enter(&self) -> BudgetEntry {
        self.requests.fetch_add(1, Ordering::Relaxed);
        BudgetEntry { retrying: false }
    }

    /// The request of `entry` finished: it no longer counts, and its retry slot is free.
    pub fn leave(&self, entry: BudgetEntry) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        if entry.retrying {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes a retry slot; false when the budget is spent.
    fn try_take(&self) -> bool {
        let limit = ((self.requests.load(Ordering::Relaxed) as f64 * RETRY_SHARE) as usize)
            .max(MIN_CONCURRENT_RETRIES);
        self.retrying
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r < limit).then_some(r + 1)
            })
            .is_ok()
    }
}

/// One request's place in its service's retry budget: counted until it leaves, holding a retry
/// slot once it first retries. It holds no reference to the budget (a shared reference count
/// would be one more contended atomic per request); the request context gives it back in
/// `logging`, or when it is dropped (`proxy::context`).
#[derive(Debug)]
#[must_use = "an entry must leave its budget"]
pub struct BudgetEntry {
    retrying: bool,
}

impl BudgetEntry {
    /// Whether this request may retry: takes a slot of `budget` on its first retry, keeps it.
    pub fn take_slot(&mut self, budget: &RetryBudget) -> bool {
        if !self.retrying {
            self.retrying = budget.try_take();
        }
        self.retrying
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: Vec<RetryOn>, non_idempotent: bool) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig {
            attempts: 2,
            on,
            non_idempotent,
            backoff: Duration::from_millis(10),
        })
    }

    #[test]
    fn connect_failures_retry_any_method_but_status_retries_need_idempotence() {
        let p = policy(vec![RetryOn::ConnectFailure, RetryOn::Status], false);
        assert!(p.allows(Cause::ConnectFailure, &Method::POST, 1));
        assert!(p.allows(Cause::Status, &Method::GET, 1));
        assert!(!p.allows(Cause::Status, &Method::POST, 1));
        assert!(
            !p.allows(Cause::Error, &Method::GET, 1),
            "error retries are opt-in"
        );
        assert!(policy(vec![RetryOn::Status], true).allows(Cause::Status, &Method::POST, 1));
    }

    #[test]
    fn attempts_bound_the_retries() {
        let p = policy(vec![RetryOn::ConnectFailure], false);
        assert!(p.allows(Cause::ConnectFailure, &Method::GET, 2));
        assert!(!p.allows(Cause::ConnectFailure, &Method::GET, 3));
    }

    #[test]
    fn backoff_doubles_per_retry_and_the_jitter_spreads_it_over_the_whole_range() {
        let p = policy(vec![], false);
        for retry in 1..=3 {
            let ceiling = Duration::from_millis(10 << (retry - 1));
            assert_eq!(p.backoff(retry, 0.0), Duration::ZERO);
            assert_eq!(p.backoff(retry, 0.5), ceiling / 2);
            assert_eq!(p.backoff(retry, 1.0), ceiling);
        }
        assert_eq!(
            p.backoff(20, 1.0),
            Duration::from_millis(10 << 10),
            "capped"
        );
    }

    #[test]
    fn the_budget_allows_a_minimum_then_a_share_of_in_flight_requests() {
        let b = RetryBudget::default();
        let mut retrying: Vec<BudgetEntry> = (0..3).map(|_| b.enter()).collect();
        assert!(retrying.iter_mut().all(|e| e.take_slot(&b)));
        let mut fourth = b.enter();
        assert!(
            !fourth.take_slot(&b),
            "3 retries is the floor while few requests are in flight"
        );
        let waiting: Vec<BudgetEntry> = (0..21).map(|_| b.enter()).collect();
        assert!(fourth.take_slot(&b), "20% of 25 in flight is 5");
        assert!(
            fourth.take_slot(&b),
            "a request keeps its slot for further retries"
        );
        let mut sixth = b.enter();
        assert!(sixth.take_slot(&b), "20% of 26 is 5");
        let mut seventh = b.enter();
        assert!(!seventh.take_slot(&b));
        b.leave(retrying.pop().unwrap());
        assert!(seventh.take_slot(&b), "a finished retry frees its slot");
        for e in waiting
            .into_iter()
            .chain(retrying)
            .chain([fourth, sixth, seventh])
        {
            b.leave(e);
        }
        assert_eq!(b.requests.load(Ordering::Relaxed), 0);
        assert_eq!(
            b.retrying.load(Ordering::Relaxed),
            0,
            "every slot given back"
        );
    }
}
