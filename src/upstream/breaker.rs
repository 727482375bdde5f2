//! Per-instance circuit breaker: closed → open on consecutive failures or on a failure ratio
//! over a rolling window with a minimum volume; open for `open_for`, doubling on each re-open up
//! to `max_open_for`; then half-open, admitting at most `half_open_probes` concurrent probes;
//! `half_open_probes` successes close it, one failure re-opens it.
//!
//! Time is passed in (`now`), never read here, so every transition is unit-tested with a fake
//! clock. The open → half-open move happens in [`Breaker::try_acquire`], i.e. when the balancer
//! considers the instance, so an open breaker cannot starve for lack of traffic.

use crate::config::BreakerConfig;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Number of buckets the rolling window is split into.
const BUCKETS: usize = 10;

/// The externally visible state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// Every state, in label order.
    pub const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// The answer to "may a request go to this instance?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Allowed,
    /// Half-open: go ahead as one of the bounded probes; report its outcome.
    Probe,
    /// Open, or half-open with every probe slot taken.
    Refused { retry_after: Duration },
}

/// A state change, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the window slice this bucket counts (time since `epoch` / slice).
    slice: u64,
    total: u32,
    failures: u32,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    buckets: [Bucket; BUCKETS],
    /// When the current open period ends.
    open_until: Instant,
    /// Length of the last open period (doubles on re-open).
    open_for: Duration,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// One instance's breaker.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    epoch: Instant,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker; `now` anchors the rolling window.
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                buckets: [Bucket::default(); BUCKETS],
                open_until: now,
                open_for: Duration::ZERO,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
            cfg,
            epoch: now,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an expired open period reads as half-open).
    pub fn state(&self, now: Instant) -> State {
        let inner = self.lock();
        match inner.state {
            State::Open if now >= inner.open_until => State::HalfOpen,
            s => s,
        }
    }

    /// Time until an open breaker admits probes; zero unless open.
    pub fn retry_after(&self, now: Instant) -> Duration {
        let inner = self.lock();
        match inner.state {
            State::Open => inner.open_until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Decides admission; moves open → half-open when the open period is over.
    pub fn try_acquire(&self, now: Instant) -> (Admission, Option<Transition>) {
        let mut inner = self.lock();
        let mut transition = None;
        if inner.state == State::Open {
            if now < inner.open_until {
                return (
                    Admission::Refused {
                        retry_after: inner.open_until - now,
                    },
                    None,
                );
            }
            inner.state = State::HalfOpen;
            inner.probes_in_flight = 0;
            inner.probe_successes = 0;
            transition = Some(Transition {
                from: State::Open,
                to: State::HalfOpen,
            });
        }
        match inner.state {
            State::Closed => (Admission::Allowed, transition),
            State::HalfOpen if inner.probes_in_flight < self.cfg.half_open_probes => {
                inner.probes_in_flight += 1;
                (Admission::Probe, transition)
            }
            _ => (
                Admission::Refused {
                    retry_after: Duration::from_millis(100),
                },
                transition,
            ),
        }
    }

    /// Gives back a probe slot whose request never reached the instance (e.g. another
    /// instance was chosen after all).
    pub fn release_probe(&self) {
        let mut inner = self.lock();
        inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
    }

    /// Records an outcome. `may_open` is false when opening would eject more instances than the
    /// service allows; the failure is then counted but the breaker stays closed.
    pub fn record(
        &self,
        now: Instant,
        success: bool,
        probe: bool,
        may_open: bool,
    ) -> Option<Transition> {
        let mut inner = self.lock();
        match inner.state {
            State::HalfOpen => {
                if probe {
                    inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
                }
                if !success {
                    return Some(self.open(&mut inner, now, State::HalfOpen));
                }
                inner.probe_successes += 1;
                if inner.probe_successes >= self.cfg.half_open_probes {
                    self.close(&mut inner);
                    return Some(Transition {
                        from: State::HalfOpen,
                        to: State::Closed,
                    });
                }
                None
            }
            // Late outcomes of requests admitted before the breaker opened change nothing.
            State::Open => None,
            State::Closed => {
                let slice = self.slice(now);
                let bucket = &mut inner.buckets[(slice % BUCKETS as u64) as usize];
                if bucket.slice != slice {
                    *bucket = Bucket {
                        slice,
                        total: 0,
                        failures: 0,
                    };
                }
                bucket.total += 1;
                if success {
                    inner.consecutive_failures = 0;
                    return None;
                }
                bucket.failures += 1;
                inner.consecutive_failures += 1;
                if may_open && self.should_trip(&inner, slice) {
                    return Some(self.open(&mut inner, now, State::Closed));
                }
                None
            }
        }
    }

    fn slice(&self, now: Instant) -> u64 {
        let width = (self.cfg.window / BUCKETS as u32).max(Duration::from_millis(1));
        (now.saturating_duration_since(self.epoch).as_nanos() / width.as_nanos()) as u64
    }

    fn should_trip(&self, inner: &Inner, slice: u64) -> bool {
        if inner.consecutive_failures >= self.cfg.consecutive_failures {
            return true;
        }
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1);
        let (total, failures) = inner
            .buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= slice)
            .fold((0, 0), |(t, f), b| (t + b.total, f + b.failures));
        total >= self.cfg.min_requests
            && total > 0
            && f64::from(failures) / f64::from(total) >= self.cfg.failure_ratio
    }

    fn open(&self, inner: &mut Inner, now: Instant, from: State) -> Transition {
        inner.open_for = if from == State::HalfOpen {
            (inner.open_for * 2).min(self.cfg.max_open_for)
        } else {
            self.cfg.open_for
        };
        inner.state = State::Open;
        inner.open_until = now + inner.open_for;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        Transition {
            from,
            to: State::Open,
        }
    }

    fn close(&self, inner: &mut Inner) {
        inner.state = State::Closed;
        inner.consecutive_failures = 0;
        inner.buckets = [Bucket::default(); BUCKETS];
        inner.open_for = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(35),
            half_open_probes: 2,
            ..BreakerConfig::default()
        }
    }

    fn fail(b: &Breaker, now: Instant) -> Option<Transition> {
        b.record(now, false, false, true)
    }

    fn ok(b: &Breaker, now: Instant) -> Option<Transition> {
        b.record(now, true, false, true)
    }

    fn tripped(t0: Instant) -> Breaker {
        let b = Breaker::new(cfg(), t0);
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(
            fail(&b, t0),
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        b
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(), t0);
        fail(&b, t0);
        fail(&b, t0);
        ok(&b, t0);
        fail(&b, t0);
        assert_eq!(fail(&b, t0), None);
        assert_eq!(b.state(t0), State::Closed);
        let _ = tripped(t0);
    }

    #[test]
    fn opens_on_failure_ratio_only_with_minimum_volume() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(), t0);
        // Alternate: never 3 in a row, ratio 0.5 — trips exactly at the 10th request.
        for i in 0..9 {
            let t = if i % 2 == 0 { fail(&b, t0) } else { ok(&b, t0) };
            assert_eq!(t, None, "request {i}");
        }
        // The 10th outcome (a failure) reaches min_requests with a 6/10 failure ratio.
        assert_eq!(fail(&b, t0).map(|t| t.to), Some(State::Open));
    }

    #[test]
    fn old_failures_leave_the_rolling_window() {
        // Six failures in nine requests, never three in a row: below min_requests, no trip.
        let nine = |b: &Breaker, t: Instant| {
            for _ in 0..3 {
                assert_eq!(fail(b, t), None);
                assert_eq!(fail(b, t), None);
                assert_eq!(ok(b, t), None);
            }
        };
        let t0 = Instant::now();
        // Within the 10 s window a tenth request that fails trips on the ratio (7/10)...
        let b = Breaker::new(cfg(), t0);
        nine(&b, t0);
        let inside = t0 + Duration::from_secs(5);
        assert_eq!(fail(&b, inside).map(|t| t.to), Some(State::Open));
        // ...11 s later the first nine have left the window: one failure in one request.
        let b = Breaker::new(cfg(), t0);
        nine(&b, t0);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(fail(&b, later), None);
        assert_eq!(b.state(later), State::Closed);
    }

    #[test]
    fn open_refuses_until_open_for_then_admits_bounded_probes() {
        let t0 = Instant::now();
        let b = tripped(t0);
        let (a, _) = b.try_acquire(t0 + Duration::from_secs(4));
        assert_eq!(
            a,
            Admission::Refused {
                retry_after: Duration::from_secs(6)
            }
        );
        assert_eq!(
            b.retry_after(t0 + Duration::from_secs(4)),
            Duration::from_secs(6)
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), State::HalfOpen);
        let (a, t) = b.try_acquire(t1);
        assert_eq!(
            (a, t),
            (
                Admission::Probe,
                Some(Transition {
                    from: State::Open,
                    to: State::HalfOpen
                })
            )
        );
        assert_eq!(b.try_acquire(t1).0, Admission::Probe);
        assert!(
            matches!(b.try_acquire(t1).0, Admission::Refused { .. }),
            "third concurrent probe"
        );
        b.release_probe();
        assert_eq!(
            b.try_acquire(t1).0,
            Admission::Probe,
            "a released slot is reusable"
        );
    }

    #[test]
    fn enough_probe_successes_close_it() {
        let t0 = Instant::now();
        let b = tripped(t0);
        let t1 = t0 + Duration::from_secs(10);
        b.try_acquire(t1);
        b.try_acquire(t1);
        assert_eq!(b.record(t1, true, true, true), None);
        assert_eq!(
            b.record(t1, true, true, true),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Closed
            })
        );
        assert_eq!(b.try_acquire(t1).0, Admission::Allowed);
    }

    #[test]
    fn one_probe_failure_reopens_with_doubled_time_up_to_the_cap() {
        let t0 = Instant::now();
        let b = tripped(t0);
        let mut t = t0;
        for expected in [20, 35, 35] {
            t += b.retry_after(t);
            b.try_acquire(t);
            assert_eq!(
                b.record(t, false, true, true),
                Some(Transition {
                    from: State::HalfOpen,
                    to: State::Open
                })
            );
            assert_eq!(b.retry_after(t), Duration::from_secs(expected));
        }
    }

    #[test]
    fn after_closing_the_open_time_starts_again_from_open_for() {
        let t0 = Instant::now();
        let b = tripped(t0);
        let t1 = t0 + Duration::from_secs(10);
        b.try_acquire(t1);
        b.record(t1, false, true, true);
        let t2 = t1 + Duration::from_secs(20);
        b.try_acquire(t2);
        b.try_acquire(t2);
        b.record(t2, true, true, true);
        b.record(t2, true, true, true);
        for _ in 0..3 {
            fail(&b, t2);
        }
        assert_eq!(b.retry_after(t2), Duration::from_secs(10));
    }

    #[test]
    fn the_ejection_cap_keeps_it_closed() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(), t0);
        for _ in 0..5 {
            assert_eq!(b.record(t0, false, false, false), None);
        }
        assert_eq!(b.state(t0), State::Closed);
        assert_eq!(
            fail(&b, t0).map(|t| t.to),
            Some(State::Open),
            "trips once the cap allows"
        );
    }
}
