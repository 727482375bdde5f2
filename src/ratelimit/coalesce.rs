//! Coalescing of concurrent Redis decisions: while [`MAX_CALLS`] script call is out,
//! decisions that arrive wait, and the next call takes all of them (up to [`MAX_BATCH`]) in one
//! `EVALSHA`. A decision with no call out is sent at once; under load the batches grow with
//! the concurrency, so the per-call costs — a timer, the command's encoding and parsing, the
//! syscalls, Redis's own dispatch and clock read — are paid once per batch instead of once per
//! request. The script decides the buckets in order, so a batch decides exactly what the same
//! requests one by one would at that instant.
//!
//! Measured (`benches/load.py`, one worker, Redis beside the load generator; Redis-store
//! req/s over local-store req/s, same run): one call out at a time 0.68x / 0.79x / 1.02x at
//! 16 / 64 / 256 connections; four calls out before batching 0.66x / 0.80x / 0.94x; one
//! `EVALSHA` per request (before) 0.69x / 0.82x at 16 / 64. Hence one. Since then the
//! connection is driven by the leader itself (`redis_client::driven`): 0.70x → 0.78x at 16 and
//! 0.78x → 0.88x at 64 connections (`benches/compare_builds.py --redis`, paired rounds).
//! Tried again on top of that: passing the lead on before answering the batch, no change
//! (0.90x either way); two calls out, 0.894x → 0.922x in one run and 0.917x → 0.906x in the
//! next at 64 connections, with 2.7–2.8% more CPU per request (smaller batches). Still one.
//!
//! There is no background task. A request that finds a call slot free leads: it sends its own
//! decision, and when the answer is back it passes the slot (a [`Baton`]) to the first waiter,
//! which sends everything waiting by then, its own decision included. Every request leads at
//! most one call, so none waits longer than the call before its own plus its own.
//! Leadership cannot be lost: a baton dropped unused (its request went away) passes itself on,
//! and a leader dropped mid-call fails its batch's waiters and passes the lead on.

use super::gcra::{Decision, Gcra};
use super::shared::SharedError;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Most decisions in one script call.
pub const MAX_BATCH: usize = 64;
/// Script calls out at once before decisions wait to be batched.
pub const MAX_CALLS: usize = 1;

/// One decision to make: the bucket's Redis key and its rule.
pub struct Entry {
    pub key: String,
    pub gcra: Gcra,
}

/// The decisions waiting for the next call, and whether a call is out.
#[derive(Default)]
pub struct Coalescer {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Entry, oneshot::Sender<Turn>)>,
    /// Calls out (or batons on their way); at [`MAX_CALLS`] arrivals wait.
    out: usize,
}

/// What a waiting decision receives: its outcome, or the lead of the next call.
enum Turn {
    Decided(Result<Decision, SharedError>),
    Lead(Baton),
}

/// The lead of the next call, carrying the new leader's own entry. Dropped unused, it passes
/// itself to the next waiter.
struct Baton {
    queue: Arc<Mutex<Queue>>,
    entry: Option<Entry>,
    armed: bool,
}

impl Drop for Baton {
    fn drop(&mut self) {
        if self.armed {
            hand_off(&self.queue);
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Passes a finished call's slot to the first waiter still there; with none, it is free.
fn hand_off(queue: &Arc<Mutex<Queue>>) {
    loop {
        let Some((entry, turn)) = ({
            let mut q = lock(queue);
            let next = q.waiting.pop_front();
            if next.is_none() {
                q.out -= 1;
            }
            next
        }) else {
            return;
        };
        let baton = Baton {
            queue: queue.clone(),
            entry: Some(entry),
            armed: true,
        };
        match turn.send(Turn::Lead(baton)) {
            Ok(()) => return,
            // That request went away: the next one leads.
            Err(Turn::Lead(mut baton)) => baton.armed = false,
            Err(Turn::Decided(_)) => unreachable!("a lead was sent"),
        }
    }
}

/// The waiters of a call that is out; dropped (the leader went away, or the call is done) it
/// fails whoever was not answered and passes the lead on.
struct InFlight {
    queue: Arc<Mutex<Queue>>,
    waiters: Vec<oneshot::Sender<Turn>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for turn in self.waiters.drain(..) {
            let _ = turn.send(Turn::Decided(Err(SharedError::Unavailable)));
        }
        hand_off(&self.queue);
    }
}

impl Coalescer {
    /// Decides `entry`, in a call of its own or in one with the decisions waiting beside it;
    /// `call` decides a batch (one decision per entry, in order).
    pub async fn decide<F, Fut>(&self, entry: Entry, call: F) -> Result<Decision, SharedError>
    where
        F: FnOnce(Vec<Entry>) -> Fut,
        Fut: Future<Output = Result<Vec<Decision>, SharedError>>,
    {
        let waiting = {
            let mut q = lock(&self.queue);
            if q.out >= MAX_CALLS {
                let (tx, rx) = oneshot::channel();
                q.waiting.push_back((entry, tx));
                Err(rx)
            } else {
                q.out += 1;
                Ok(entry)
            }
        };
        let own = match waiting {
            Ok(entry) => entry,
            Err(rx) => match rx.await {
                Ok(Turn::Decided(result)) => return result,
                Ok(Turn::Lead(mut baton)) => {
                    baton.armed = false;
                    baton.entry.take().expect("a baton carries its entry")
                }
                // Every sender answers or leads before it is dropped; kept total anyway.
                Err(_) => return Err(SharedError::Unavailable),
            },
        };
        let mut entries = vec![own];
        let mut flight = InFlight {
            queue: self.queue.clone(),
            waiters: Vec::new(),
        };
        {
            let mut q = lock(&self.queue);
            let n = q.waiting.len().min(MAX_BATCH - 1);
            for (entry, turn) in q.waiting.drain(..n) {
                entries.push(entry);
                flight.waiters.push(turn);
            }
        }
        let result = call(entries).await;
        match result {
            Ok(decisions) => {
                let mut decisions = decisions.into_iter();
                let own = decisions.next();
                for (turn, d) in flight.waiters.drain(..).zip(decisions) {
                    let _ = turn.send(Turn::Decided(Ok(d)));
                }
                // `flight` fails any waiter a short reply did not cover, and passes the lead.
                drop(flight);
                own.ok_or(SharedError::Failed("protocol"))
            }
            Err(e) => {
                for turn in flight.waiters.drain(..) {
                    let _ = turn.send(Turn::Decided(Err(e)));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn entry(i: u64) -> Entry {
        Entry {
            key: format!("k{i}"),
            gcra: Gcra {
                interval_us: i,
                capacity: 1,
            },
        }
    }

    /// A "Redis" answering each entry with its interval as `remaining`, after `delay`,
    /// counting calls and the largest batch.
    async fn fake(
        entries: Vec<Entry>,
        calls: &AtomicUsize,
        largest: &AtomicUsize,
        delay: Duration,
    ) -> Result<Vec<Decision>, SharedError> {
        calls.fetch_add(1, Ordering::SeqCst);
        largest.fetch_max(entries.len(), Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        Ok(entries
            .iter()
            .map(|e| Decision {
                allowed: true,
                remaining: e.gcra.interval_us,
                reset_us: 0,
                retry_after_us: 0,
            })
            .collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_decisions_share_calls_and_each_gets_its_own_answer() {
        let c = Arc::new(Coalescer::default());
        let (calls, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (1..=200u64)
            .map(|i| {
                let (c, calls, largest) = (c.clone(), calls.clone(), largest.clone());
                tokio::spawn(async move {
                    let d = c
                        .decide(entry(i), |b| {
                            fake(b, &calls, &largest, Duration::from_millis(2))
                        })
                        .await;
                    (i, d)
                })
            })
            .collect();
        for t in tasks {
            let (i, d) = t.await.unwrap();
            assert_eq!(d.unwrap().remaining, i, "each decision is its own");
        }
        let calls = calls.load(Ordering::SeqCst);
        assert!(calls < 200, "{calls} calls for 200 concurrent decisions");
        assert!(largest.load(Ordering::SeqCst) <= MAX_BATCH);
        assert_eq!(lock(&c.queue).out, 0, "nothing left out");
    }

    #[tokio::test]
    async fn a_lone_decision_is_sent_at_once() {
        let c = Coalescer::default();
        let (calls, largest) = (AtomicUsize::new(0), AtomicUsize::new(0));
        for i in 1..=3 {
            let d = c
                .decide(entry(i), |b| fake(b, &calls, &largest, Duration::ZERO))
                .await;
            assert_eq!(d.unwrap().remaining, i);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(largest.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaders_and_waiters_that_go_away_lose_nobody_else() {
        let c = Arc::new(Coalescer::default());
        let (calls, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Half of 100 decisions are abandoned at random points (timeouts shorter than a call).
        let tasks: Vec<_> = (1..=100u64)
            .map(|i| {
                let (c, calls, largest) = (c.clone(), calls.clone(), largest.clone());
                tokio::spawn(async move {
                    let decide = c.decide(entry(i), |b| {
                        fake(b, &calls, &largest, Duration::from_millis(3))
                    });
                    if i % 2 == 0 {
                        tokio::time::timeout(Duration::from_millis(i % 7), decide)
                            .await
                            .ok()
                            .map(|d| (i, d))
                    } else {
                        Some((i, decide.await))
                    }
                })
            })
            .collect();
        for t in tasks {
            // A waiter whose leader went away mid-call is failed, never left hanging (the
            // join itself would hang otherwise).
            if let Some((i, Ok(d))) = t.await.unwrap() {
                assert_eq!(d.remaining, i);
            }
        }
        // And the coalescer still works afterwards.
        let d = c
            .decide(entry(7), |b| fake(b, &calls, &largest, Duration::ZERO))
            .await;
        assert_eq!(d.unwrap().remaining, 7);
        assert_eq!(lock(&c.queue).out, 0);
    }
}
