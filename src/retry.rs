//! Which failed attempts are retried, after how long, and how many retries a service can carry
//! at once (the retry budget), so retries cannot multiply load on a struggling service.

use crate::config::{RetryConfig, RetryOn};
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

impl RetryPolicy {
    /// Compiles a route's `retry` section.
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

    /// Jittered wait before retry number `retry` (1-based): uniform in [0, backoff × 2^(retry-1)].
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(10));
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Per-service accounting of in-flight and retrying requests.
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: AtomicUsize,
    retrying: AtomicUsize,
}

impl RetryBudget {
    /// A request to the service started.
    pub fn enter(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request finished; `retried` if it took a retry slot.
    pub fn leave(&self, retried: bool) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        if retried {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Takes a retry slot for a request's first retry; false when the budget is spent.
    pub fn try_take(&self) -> bool {
        let limit = ((self.requests.load(Ordering::Relaxed) as f64 * RETRY_SHARE) as usize)
            .max(MIN_CONCURRENT_RETRIES);
        self.retrying
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                (r < limit).then_some(r + 1)
            })
            .is_ok()
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
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let p = policy(vec![], false);
        for retry in 1..=3 {
            let d = p.backoff(retry);
            assert!(d <= Duration::from_millis(10 << (retry - 1)), "{d:?}");
        }
    }

    #[test]
    fn the_budget_allows_a_minimum_then_a_share_of_in_flight_requests() {
        let b = RetryBudget::default();
        for _ in 0..3 {
            assert!(b.try_take());
        }
        assert!(
            !b.try_take(),
            "3 retries with 0 requests in flight is the floor"
        );
        for _ in 0..25 {
            b.enter();
        }
        assert!(b.try_take() && b.try_take(), "20% of 25 is 5");
        assert!(!b.try_take());
        b.leave(true);
        b.enter();
        assert!(b.try_take(), "a finished retry frees its slot");
    }
}
