//! Steady background load: GETs in a loop from another thread, counting 200s and the rest.

use super::get;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running load thread (bounded to 60 s).
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SteadyLoad {
    /// GETs `/` on `addr` back to back, pausing `pause` between requests.
    pub fn start(addr: SocketAddr, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = get(addr, "/", &[]);
                    if r.status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pause);
                }
            })
        };
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns (ok, failed).
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (self.ok(), self.failed.load(Ordering::Relaxed))
    }
}

/// Steady load over one keep-alive connection at a time: a new connection only after the
/// gateway said `Connection: close` or closed after a complete response. A request that gets
/// no complete response counts as failed (a pooling client would see that error).
pub struct KeepAliveLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl KeepAliveLoad {
    /// GETs `/` on `addr` back to back on reused connections.
    pub fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let stop = stop.clone();
            let (ok, failed, connections) = counters.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(stream) = std::net::TcpStream::connect(addr) else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    connections.fetch_add(1, Ordering::Relaxed);
                    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut conn = super::keepalive::Connection::new(stream);
                    let mut on_this = 0;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match conn.get("/") {
                            Some((200, keep)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                on_this += 1;
                                if !keep {
                                    break;
                                }
                            }
                            other => {
                                eprintln!(
                                    "keep-alive load: request {} on connection {} failed: {other:?}",
                                    on_this + 1,
                                    connections.load(Ordering::Relaxed)
                                );
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        };
        Self {
            stop,
            ok: counters.0,
            failed: counters.1,
            connections: counters.2,
            thread: Some(thread),
        }
    }

    /// Requests answered 200 so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns (ok, failed, connections opened).
    pub fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (
            self.ok(),
            self.failed.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}
