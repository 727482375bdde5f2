//! Warnings that a storm would repeat once per connection, written at most once per period
//! with the count of those held back. Descriptor exhaustion is the case in point: every idle
//! connection that cannot go dormant would log its own line every idle period, burying the
//! one line an operator needs (and costing a write per connection when the process is
//! already short of resources).

use std::fmt::Arguments;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The period for warnings a connection storm repeats: long enough to keep the log readable,
/// short enough that the count of held-back lines says how the storm is going.
pub const STORM: Duration = Duration::from_secs(10);

/// One call site's warning.
pub struct Throttled {
    period_us: u64,
    /// Microseconds since [`EPOCH`] before which lines are held back; 0 = none written yet.
    next_us: AtomicU64,
    held: AtomicU64,
}

impl Throttled {
    /// A warning written at most once per `period`.
    pub const fn new(period: Duration) -> Self {
        Self {
            period_us: period.as_micros() as u64,
            next_us: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// Logs `message` at warning level unless a line went out less than a period ago; the
    /// line says how many were held back since the last one.
    pub fn warn(&self, message: Arguments<'_>) {
        // +1: a clock read at the epoch itself must not look like "nothing written yet".
        let now_us = EPOCH.elapsed().as_micros() as u64 + 1;
        if let Some(held) = self.admit(now_us) {
            if held == 0 {
                log::warn!("{message}");
            } else {
                log::warn!("{message} ({held} more like it since the last such line, not logged)");
            }
        }
    }

    /// Whether a line may be written at `now_us`, and if so how many were held back before it.
    fn admit(&self, now_us: u64) -> Option<u64> {
        let next = self.next_us.load(Ordering::Relaxed);
        if now_us >= next
            && self
                .next_us
                .compare_exchange(
                    next,
                    now_us + self.period_us,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_then_the_count_of_those_held_back() {
        let t = Throttled::new(Duration::from_secs(10));
        let s = 1_000_000;
        assert_eq!(t.admit(5 * s), Some(0), "the first one is written");
        for i in 0..7 {
            assert_eq!(t.admit(6 * s + i), None, "within the period: held back");
        }
        assert_eq!(t.admit(15 * s - 1), None);
        assert_eq!(t.admit(15 * s), Some(8), "a period later, with the count");
        assert_eq!(t.admit(16 * s), None);
        assert_eq!(t.admit(60 * s), Some(1), "the count starts again");
    }

    #[test]
    fn racing_threads_write_one_line_and_count_the_rest() {
        let t = Throttled::new(Duration::from_secs(3600));
        let written = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if t.admit(42).is_some() {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(written.load(Ordering::Relaxed), 1);
        assert_eq!(t.held.load(Ordering::Relaxed), 3999);
    }
}
