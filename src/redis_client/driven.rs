//! A connection driven by the calls waiting on it instead of by a task of its own.
//!
//! The redis crate runs each multiplexed connection's I/O in a spawned task: a command goes
//! from the caller to that task through a channel, and its reply comes back through another.
//! On Pingora's single-threaded worker runtimes each of those hand-offs waits in the run queue
//! behind every request that is ready, so at 64 connections a rate-limit decision spent most of
//! its 2 ms queued, not in Redis (BENCHMARKS.md, fifth session). Here the caller polls the
//! connection's I/O itself while it waits for its reply: the command is written in the poll
//! that issued it, and the reply is read and delivered in the poll the socket's readiness
//! wakes. No hop through the run queue is left but the wake-up itself.
//!
//! One caller drives at a time (the I/O future is taken out of the [`Driver`] while it is
//! polled). A caller that finds it taken registers to be woken when it is put back; the
//! holder puts it back as soon as its own reply is in, or when it is dropped (a timeout), so a
//! reply is never left unread while someone waits for it. When the I/O future ends (the
//! connection closed), the crate fails every outstanding command and later ones at once.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisResult};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;

/// Dials `info` for a driven connection: the TCP connection and the handshake (`AUTH`,
/// `SELECT`) within `connect`. `None` for an address the crate must dial itself (TLS, a Unix
/// socket), which keeps its own task.
pub async fn dial(
    info: &ConnectionInfo,
    config: AsyncConnectionConfig,
    connect: Duration,
) -> RedisResult<Option<(MultiplexedConnection, Driver)>> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        return Ok(None);
    };
    let handshake = async {
        let stream = TcpStream::connect((host.as_str(), *port)).await?;
        // Small commands, each awaited: nothing to gain from Nagle's delay.
        stream.set_nodelay(true)?;
        // Every call through a driven connection is already bounded by its caller
        // (`Redis::attempt`); a second timer per command would only cost a clock read and a
        // timer-wheel entry.
        let config = config.set_response_timeout(None);
        MultiplexedConnection::new_with_config(info.redis_settings(), stream, config).await
    };
    match tokio::time::timeout(connect, handshake).await {
        Ok(opened) => opened.map(|(conn, io)| Some((conn, Driver::new(io)))),
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

type Io = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The I/O of one connection, for its callers to drive.
pub struct Driver {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The I/O future, when no caller holds it.
    io: Option<Io>,
    /// The connection is closed; there is nothing left to drive.
    closed: bool,
    /// Callers waiting for the I/O future to be put back.
    waiting: Vec<Waker>,
}

impl Driver {
    /// A driver for the connection I/O `io` (the future the redis crate would have spawned).
    pub fn new(io: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            state: Mutex::new(State {
                io: Some(Box::pin(io)),
                ..State::default()
            }),
        }
    }

    /// Runs `call` (commands on this driver's connection), driving the connection's I/O
    /// whenever no other caller is.
    pub async fn drive<F: Future>(&self, call: F) -> F::Output {
        let mut call = pin!(call);
        let mut held = Held {
            driver: self,
            io: None,
        };
        std::future::poll_fn(|cx| {
            // First the call: a new command goes into the connection's queue...
            if let Poll::Ready(out) = call.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if held.io.is_none() {
                held.io = self.take_or_wait(cx.waker());
            }
            let Some(io) = held.io.as_mut() else {
                return Poll::Pending;
            };
            // ...then the I/O writes it, or reads and hands over the replies that came...
            if io.as_mut().poll(cx).is_ready() {
                held.io = None;
                self.close();
            }
            // ...and the call takes its reply in the same poll.
            call.as_mut().poll(cx)
        })
        .await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_or_wait(&self, waker: &Waker) -> Option<Io> {
        let mut state = self.lock();
        if let Some(io) = state.io.take() {
            return Some(io);
        }
        if !state.closed && !state.waiting.iter().any(|w| w.will_wake(waker)) {
            state.waiting.push(waker.clone());
        }
        None
    }

    fn put_back(&self, io: Io) {
        let waiting = {
            let mut state = self.lock();
            state.io = Some(io);
            std::mem::take(&mut state.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
    }

    fn close(&self) {
        let waiting = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
    }
}

/// The I/O future while one caller holds it; put back when the caller is done or dropped.
struct Held<'a> {
    driver: &'a Driver,
    io: Option<Io>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            self.driver.put_back(io);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::{mpsc, oneshot};

    /// A fake connection: requests go through a channel to an "I/O" future that answers each
    /// one with its number doubled — only while someone polls it.
    fn connection() -> (mpsc::UnboundedSender<(u64, oneshot::Sender<u64>)>, Driver) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
        let io = async move {
            while let Some((n, reply)) = rx.recv().await {
                // A reply that takes a moment, as from a socket.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let _ = reply.send(n * 2);
            }
        };
        (tx, Driver::new(io))
    }

    async fn ask(tx: &mpsc::UnboundedSender<(u64, oneshot::Sender<u64>)>, n: u64) -> u64 {
        let (reply, rx) = oneshot::channel();
        tx.send((n, reply)).unwrap();
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn a_caller_drives_its_own_reply() {
        let (tx, driver) = connection();
        assert_eq!(driver.drive(ask(&tx, 21)).await, 42);
        assert!(driver.lock().io.is_some(), "the I/O is put back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_all_get_their_replies_and_abandoned_ones_lose_nobody() {
        let (tx, driver) = connection();
        let driver = Arc::new(driver);
        let tasks: Vec<_> = (0..200u64)
            .map(|n| {
                let (tx, driver) = (tx.clone(), driver.clone());
                tokio::spawn(async move {
                    let call = driver.drive(ask(&tx, n));
                    if n % 3 == 0 {
                        // Some give up mid-call, holding the I/O or waiting for it.
                        let _ = tokio::time::timeout(Duration::from_micros(n * 10), call).await;
                        None
                    } else {
                        Some((n, call.await))
                    }
                })
            })
            .collect();
        for task in tasks {
            // Every caller that stays is answered (a lost wake-up would hang this join).
            let joined = tokio::time::timeout(Duration::from_secs(10), task).await;
            if let Some((n, reply)) = joined.expect("no caller is left waiting").unwrap() {
                assert_eq!(reply, n * 2);
            }
        }
        assert!(driver.lock().io.is_some());
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_driven_again() {
        let (tx, driver) = connection();
        drop(tx); // the I/O future ends on its first poll
        for _ in 0..2 {
            let never = std::future::pending::<()>();
            let call = tokio::time::timeout(Duration::from_millis(20), driver.drive(never));
            assert!(call.await.is_err(), "the call itself never ends");
            let state = driver.lock();
            assert!(state.closed && state.io.is_none() && state.waiting.is_empty());
        }
    }
}
