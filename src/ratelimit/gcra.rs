//! The one rate-limit algorithm: GCRA (a token bucket kept as a single "theoretical arrival
//! time"), in integer microseconds so the local store and the Redis script compute bit-identical
//! decisions. A rule admits `capacity = limit + burst` requests at once and refills one every
//! `interval = per / limit`.
//!
//! State per key is one number, `tat`: the time at which the bucket would be full again.
//! A request at `now` is allowed when `max(tat, now) + interval - capacity * interval <= now`;
//! then `tat` becomes `max(tat, now) + interval`. A state with `tat <= now` equals no state, so
//! expired keys can be dropped without changing any decision.

/// A rule's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time to earn one request back.
    pub interval_us: u64,
    /// Requests admitted at once from a full bucket.
    pub capacity: u64,
}

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still admissible right now after this one.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset_us: u64,
    /// When denied, until the next request would be admitted.
    pub retry_after_us: u64,
}

impl Gcra {
    /// `limit` requests per `per_us`, plus `burst` extra at once. `limit` must be at least 1.
    pub fn new(limit: u64, per_us: u64, burst: u64) -> Self {
        Self {
            interval_us: (per_us / limit.max(1)).max(1),
            capacity: limit.max(1) + burst,
        }
    }

    /// Decides a request at `now_us` against state `tat_us` (0 = none). Returns the decision
    /// and the new state to store when allowed.
    pub fn decide(&self, tat_us: u64, now_us: u64) -> (Decision, Option<u64>) {
        // Signed: `allow_at` is before time zero for a fresh key near the clock's origin.
        let now = now_us as i64;
        let interval = self.interval_us as i64;
        let tat = (tat_us as i64).max(now);
        let new_tat = tat + interval;
        let allow_at = new_tat - self.capacity as i64 * interval;
        if now < allow_at {
            return (
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset_us: (tat - now) as u64,
                    retry_after_us: (allow_at - now) as u64,
                },
                None,
            );
        }
        (
            Decision {
                allowed: true,
                remaining: ((now - allow_at) / interval) as u64,
                reset_us: (new_tat - now) as u64,
                retry_after_us: 0,
            },
            Some(new_tat as u64),
        )
    }
}

/// The Redis side of the same algorithm, for one or more buckets at once (a batch of
/// decisions): KEYS = buckets; ARGV[1] = now_us, or 0 for the server clock; then for each
/// bucket i, ARGV[2i] = interval_us and ARGV[2i+1] = capacity. Buckets are decided in order
/// at the same `now` (a bucket named twice sees its first decision), and the reply is one
/// string of `allowed remaining reset_us retry_after_us` per bucket, space-separated
/// ([`read_reply`]): one bulk string instead of four integers per bucket, because the redis
/// crate's parser spent ~1.7% of the proxy's CPU on a 64-connection load reading 124-element
/// integer arrays. Kept next to [`Gcra::decide`] so the two are read and changed together.
pub const REDIS_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - capacity * interval
  if now < allow_at then
    out[i] = string.format('0 0 %.0f %.0f', tat - now, allow_at - now)
  else
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
    out[i] = string.format('1 %.0f %.0f 0', math.floor((now - allow_at) / interval), new_tat - now)
  end
end
return table.concat(out, ' ')
";

/// Reads [`REDIS_SCRIPT`]'s reply: one decision per four numbers. `None` for anything else.
pub fn read_reply(reply: &[u8]) -> Option<Vec<Decision>> {
    let mut numbers = reply.split(|&b| b == b' ').map(|digits| {
        // 19 digits always fit a u64.
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        digits.iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    });
    let mut decisions = Vec::with_capacity(reply.len() / 8);
    while let Some(allowed) = numbers.next() {
        decisions.push(Decision {
            allowed: allowed? == 1,
            remaining: numbers.next()??,
            reset_us: numbers.next()??,
            retry_after_us: numbers.next()??,
        });
    }
    Some(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(g: &Gcra, times: &[u64]) -> Vec<bool> {
        let mut tat = 0;
        times
            .iter()
            .map(|&now| {
                let (d, next) = g.decide(tat, now);
                if let Some(t) = next {
                    tat = t;
                }
                d.allowed
            })
            .collect()
    }

    #[test]
    fn a_full_bucket_admits_limit_plus_burst_at_once() {
        let g = Gcra::new(10, 1_000_000, 0);
        let start = 5_000_000;
        let allowed = run(&g, &[start; 30]).iter().filter(|a| **a).count();
        assert_eq!(allowed, 10);
        let g = Gcra::new(10, 1_000_000, 5);
        assert_eq!(run(&g, &[start; 30]).iter().filter(|a| **a).count(), 15);
    }

    #[test]
    fn remaining_reset_and_retry_after_are_exact() {
        let g = Gcra::new(10, 1_000_000, 0);
        let now = 1_000_000;
        let (first, tat) = g.decide(0, now);
        assert_eq!(
            (first.allowed, first.remaining, first.reset_us),
            (true, 9, 100_000)
        );
        let mut tat = tat.unwrap();
        for _ in 0..9 {
            tat = g.decide(tat, now).1.unwrap();
        }
        let (denied, none) = g.decide(tat, now);
        assert!(!denied.allowed && none.is_none());
        assert_eq!(denied.retry_after_us, 100_000);
        assert_eq!(denied.reset_us, 1_000_000);
        // One interval later exactly one more is admitted.
        let (again, _) = g.decide(tat, now + 100_000);
        assert!(again.allowed);
        assert_eq!(again.remaining, 0);
    }

    #[test]
    fn a_fresh_key_near_the_clock_origin_has_a_full_bucket() {
        let (d, _) = Gcra::new(10, 1_000_000, 0).decide(0, 1);
        assert_eq!((d.allowed, d.remaining), (true, 9));
    }

    #[test]
    fn the_steady_rate_is_the_limit() {
        let g = Gcra::new(5, 1_000_000, 0);
        // One request every 50 ms for 10 s: 20 per second offered, 5 per second (+ the initial
        // full bucket) admitted.
        let times: Vec<u64> = (0..200).map(|i| 1_000_000 + i * 50_000).collect();
        let allowed = run(&g, &times).iter().filter(|a| **a).count();
        assert_eq!(allowed, 5 + 50 - 1);
    }

    #[test]
    fn replies_are_read_four_numbers_a_decision_and_nothing_else() {
        let d = read_reply(b"1 4 200000 0 0 0 150 1000000").unwrap();
        assert_eq!(
            d,
            [
                Decision {
                    allowed: true,
                    remaining: 4,
                    reset_us: 200_000,
                    retry_after_us: 0
                },
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset_us: 150,
                    retry_after_us: 1_000_000
                }
            ]
        );
        for bad in [
            &b""[..],
            b"1 4 200000",
            b"1 4 200000 0 ",
            b"1  4 200000 0",
            b"1 -4 200000 0",
            b"1 4 2e5 0",
            b"1 4 99999999999999999999 0",
        ] {
            assert_eq!(read_reply(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
