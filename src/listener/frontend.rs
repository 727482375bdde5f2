//! The connection loop in front of Pingora's HTTP proxy. Pingora's own loop (the `ServerApp`
//! impl for every `HttpServerApp`) is kept for HTTP/2; HTTP/1 connections run this copy of it,
//! which adds what Pingora lacks: connection limits, a deadline for each request head and for
//! the h2c preface, request pipelining, and a drain window at shutdown in which idle keep-alive
//! connections may send one more request (answered with `Connection: close`) instead of being
//! cut while that request is on the wire. Between busy periods an HTTP/1 connection holds only
//! its socket (`super::idle`), and a cleartext one then leaves its task for a dormant lot
//! (`super::dormant`), from which a new task takes it up when its next request comes.

use super::between::{Carried, Counted, Http1};
use super::buffers::ParkedBuffers;
use super::connections::{Connections, Limits};
use super::dormant::{Hooks, Lots};
use super::head_deadline::{HeadClock, TimedStream};
use super::idle::{self, Closing, Wake};
use super::socket;
use crate::log_throttle::{self, Throttled};
use crate::snapshot::Current;
use crate::telemetry::connections::{ListenerMetrics, DOWNSTREAM_DORMANT, DOWNSTREAM_TIMEOUTS};
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest wait at shutdown for idle keep-alive connections to send one more request.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Pingora's keep-alive for a connection's first request (its own default, kept).
const FIRST_REQUEST_KEEPALIVE_SECS: u64 = 60;

/// The proxy application every listener serves.
pub struct Frontend<P> {
    proxy: Arc<HttpProxy<P>>,
    /// The configuration in force: limits and timeouts apply to connections accepted after a
    /// reload.
    current: Arc<Current>,
    connections: Arc<Connections>,
    /// Per listener, in configuration order (never empty).
    listeners: Vec<Listener>,
    /// Ends idle connections' waits once the drain window at shutdown is over.
    closing: Closing,
    /// Idle cleartext HTTP/1 connections without a task, per worker thread.
    dormant: Lots<Asleep>,
}

/// A connection in a dormant lot: its state, its socket's addresses, and its count among the
/// idle.
struct Asleep {
    conn: Http1,
    peer: std::net::SocketAddr,
    local: Option<std::net::SocketAddr>,
    _idle: Counted,
}

/// Takes a dormant connection up again in a task of its own, on the lot's thread.
struct Revive<P> {
    frontend: Weak<Frontend<P>>,
    shutdown: ShutdownWatch,
}

impl<P> Hooks<Asleep> for Revive<P>
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    fn wake(&self, asleep: Asleep, socket: std::net::TcpStream) {
        let Some(frontend) = self.frontend.upgrade() else {
            return;
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let Asleep {
                conn,
                peer,
                local,
                _idle,
            } = asleep;
            // Counted again by the idle wait it goes back to.
            drop(_idle);
            match socket::rebuild(socket, peer, local) {
                Ok(stream) => frontend.serve_http1(stream, conn, true, &shutdown).await,
                Err(e) => {
                    static NO_REBUILD: Throttled = Throttled::new(log_throttle::STORM);
                    NO_REBUILD.warn(format_args!(
                        "a dormant connection could not be taken up again: {e}"
                    ));
                }
            }
        });
    }

    fn expire(&self, asleep: Asleep) {
        if asleep.conn.first {
            DOWNSTREAM_TIMEOUTS
                .with_label_values(&["request_head"])
                .inc();
        }
    }

    fn settled(&self) {
        crate::allocator::release_freed();
    }
}

/// A listener's address, parsed once, and its connection metrics.
struct Listener {
    addr: Option<std::net::SocketAddr>,
    port: Option<u16>,
    metrics: ListenerMetrics,
}

impl Listener {
    fn new(listen: &str, tls: bool) -> Self {
        Self {
            addr: listen.parse().ok(),
            port: listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()),
            metrics: ListenerMetrics::new(listen, tls),
        }
    }
}

impl<P> Frontend<P>
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    /// Serves `proxy` on `listeners` (listen address, TLS), admitting connections through
    /// `connections`.
    pub fn new(
        proxy: HttpProxy<P>,
        current: Arc<Current>,
        connections: Arc<Connections>,
        listeners: &[(String, bool)],
    ) -> Self {
        let mut listeners: Vec<Listener> = listeners
            .iter()
            .map(|(listen, tls)| Listener::new(listen, *tls))
            .collect();
        if listeners.is_empty() {
            listeners.push(Listener::new("", false));
        }
        Self {
            proxy: Arc::new(proxy),
            current,
            connections,
            listeners,
            closing: Closing::default(),
            dormant: Lots::new(DOWNSTREAM_DORMANT.clone()),
        }
    }

    /// The listener a connection came in on: the one whose address is the socket's local
    /// address, else the one on its port (a wildcard address), else the first.
    fn listener_of(&self, stream: &Stream) -> usize {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
            .and_then(|a| a.as_inet().copied());
        let Some(local) = local else {
            return 0;
        };
        let exact = self.listeners.iter().position(|l| l.addr == Some(local));
        exact
            .or_else(|| {
                self.listeners
                    .iter()
                    .position(|l| l.port == Some(local.port()))
            })
            .unwrap_or(0)
    }

    /// HTTP/1 requests on one connection, in order, until it closes or goes dormant. Between
    /// busy periods the connection holds only its socket (`super::idle`); a cleartext one then
    /// leaves this task for a dormant lot (`super::dormant`), which starts this again in a new
    /// task when its next request comes (`woken`: this is that task).
    async fn serve_http1(
        self: &Arc<Self>,
        mut stream: Stream,
        mut conn: Http1,
        woken: bool,
        shutdown: &ShutdownWatch,
    ) {
        let clock = HeadClock::new(conn.header_timeout);
        // TLS connections stay awake: their state is more than a socket.
        let cleartext = stream.get_ssl_digest().is_none();
        // Woken, it reads first: its bytes are there, though tokio may not know it yet.
        let mut may_sleep = cleartext && !woken;
        loop {
            let idle = Counted::new(&self.listeners[conn.listener].metrics.idle);
            // Its L4 buffers are freed while it waits (rebuilt only if a request comes).
            let parked = ParkedBuffers::park(&mut stream);
            let dormant = (may_sleep && parked.is_parked())
                .then(|| self.dormant_at(&conn))
                .flatten();
            let wake =
                idle::wait_for_request(&mut stream, conn.deadline, dormant, &self.closing).await;
            let head = match wake {
                Wake::Request(head) => {
                    drop(idle);
                    parked.restore(&mut stream);
                    head
                }
                Wake::Dormant => match self.fall_asleep(stream, conn, idle, shutdown) {
                    // Not taken (TLS, or refused): it waits here, awake, for the rest of this
                    // idle time.
                    Some((awake, kept)) => {
                        (stream, conn, may_sleep) = (awake, kept, false);
                        continue;
                    }
                    None => return,
                },
                Wake::TimedOut if conn.first => {
                    DOWNSTREAM_TIMEOUTS
                        .with_label_values(&["request_head"])
                        .inc();
                    return;
                }
                Wake::TimedOut | Wake::Closed => return,
            };
            let head_start = if conn.first {
                conn.opened
            } else {
                Instant::now()
            };
            conn.first = false;
            // Boxed: the idle connection keeps the pointer, not the request state.
            let busy =
                Box::pin(self.serve_busy(stream, head, head_start, conn.carried, &clock, shutdown));
            let Some((idle, kept)) = busy.await else {
                return;
            };
            stream = idle;
            may_sleep = cleartext;
            conn.carried = kept;
            conn.deadline = conn.carried.idle_deadline();
        }
    }

    /// When a connection starting its idle wait now goes dormant (`None`: never): at
    /// `limits.dormant_after` from the accept for a new one, from its last response for a
    /// kept-alive one, which has already waited its shedding second (`serve_busy`).
    fn dormant_at(&self, conn: &Http1) -> Option<Instant> {
        let after = self.current.load().config().server.limits.dormant_after;
        if after.is_zero() {
            return None;
        }
        Some(match conn.first {
            true => conn.opened + after,
            false => {
                Instant::now() + after.saturating_sub(Duration::from_secs(idle::SHED_AFTER_SECS))
            }
        })
    }

    /// Hands an idle connection to this thread's dormant lot. `None` once it is there (or lost:
    /// its socket could not be registered again); the stream back, awake, when it cannot go
    /// (not a plain TCP stream, or the lots are closed).
    fn fall_asleep(
        self: &Arc<Self>,
        stream: Stream,
        conn: Http1,
        idle: Counted,
        shutdown: &ShutdownWatch,
    ) -> Option<(Stream, Http1)> {
        let taken = match socket::take(stream) {
            Ok(taken) => taken,
            Err(stream) => return Some((stream, conn)),
        };
        let deadline = conn.deadline;
        let asleep = Asleep {
            conn,
            peer: taken.peer,
            local: taken.local,
            _idle: idle,
        };
        let hooks = || -> Box<dyn Hooks<Asleep>> {
            Box::new(Revive {
                frontend: Arc::downgrade(self),
                shutdown: shutdown.clone(),
            })
        };
        let (socket, asleep) = self
            .dormant
            .park(taken.socket, asleep, deadline, hooks)
            .err()?;
        match socket::rebuild(socket.into(), asleep.peer, asleep.local) {
            Ok(stream) => Some((stream, asleep.conn)),
            Err(e) => {
                static LOST: Throttled = Throttled::new(log_throttle::STORM);
                LOST.warn(format_args!("an idle connection was lost: {e}"));
                None
            }
        }
    }

    /// Requests on a connection until it closes (`None`) or waits [`idle::SHED_AFTER_SECS`]
    /// for the next one: then its socket and what the next request inherits.
    async fn serve_busy(
        &self,
        stream: Stream,
        head: BytesMut,
        head_start: Instant,
        mut carried: Carried,
        clock: &Arc<HeadClock>,
        shutdown: &ShutdownWatch,
    ) -> Option<(Stream, Carried)> {
        let stream: Stream = Box::new(TimedStream::new(stream, clock.clone(), head_start));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(carried.keepalive);
        session.set_keepalive_reuses_remaining(carried.reuses);
        // Pingora answers pipelined requests in order when asked; otherwise it drops the
        // second one with the connection.
        session.set_pipelining_enabled(true);
        session.set_pipelined_prefix(head);
        clock.start_from_open();
        loop {
            // A space or control byte in the request line is a 400, not a %-escaped target.
            session.set_strict_request_line(true);
            // The proxy's first hook stops the clock once the head is parsed.
            session.set_connection_user_context(Some(Box::new(clock.clone())));
            // Awaited in place: the trait method would box (and so copy) the request's future.
            let Some(reused) = self.proxy.serve_http(session, shutdown).await else {
                // Pingora's keep-alive timer ended an idle wait: the stream handed its socket
                // back when the session dropped it. Otherwise the connection is over.
                return clock.take_handed_back().map(|idle| (idle, carried));
            };
            let (stream, settings) = reused.consume();
            session = ServerSession::new_http1(stream);
            let mut pipelined = false;
            if let Some(settings) = settings {
                pipelined = settings.has_pipelined_prefix();
                settings.apply_to_session(&mut session);
            }
            carried = Carried {
                keepalive: session.get_keepalive(),
                reuses: session.get_keepalive_reuses_remaining(),
            };
            // Bytes of the next request already read cannot wait in the idle loop.
            let shed = !pipelined && carried.sheds_when_idle();
            if shed {
                session.set_keepalive(Some(idle::SHED_AFTER_SECS));
            }
            clock.start_on_first_byte(shed);
        }
    }

    /// Whether a cleartext connection opens with the HTTP/2 preface, waiting at most
    /// `timeout` for it. `None`: the client sent nothing usable in time.
    async fn starts_with_h2_preface(stream: &mut Stream, timeout: Duration) -> Option<bool> {
        let mut buf = [0u8; H2_PREFACE.len()];
        match tokio::time::timeout(timeout, stream.try_peek(&mut buf)).await {
            Ok(Ok(true)) => Some(buf == H2_PREFACE),
            Ok(Ok(false)) => Some(false),
            Ok(Err(_)) => None,
            Err(_) => {
                DOWNSTREAM_TIMEOUTS.with_label_values(&["h2_preface"]).inc();
                None
            }
        }
    }
}

#[async_trait]
impl<P> ServerApp for Frontend<P>
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (limits, header_timeout, h2c) = {
            let snapshot = self.current.load();
            let server = &snapshot.config().server;
            let limits = &server.limits;
            (
                Limits {
                    max: limits.max_connections,
                    per_ip: limits.max_connections_per_ip,
                },
                limits.header_timeout,
                server.h2c,
            )
        };
        let index = self.listener_of(&stream);
        let listener = &self.listeners[index].metrics;
        // A refused connection is closed before a byte is read.
        let mut place = match self.connections.admit(peer_ip(&stream), limits) {
            Ok(place) => place,
            Err(refusal) => {
                listener.refused(refusal.index());
                return None;
            }
        };
        let tls = stream.get_ssl_digest().is_some();
        let h2 = if tls {
            matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
        } else if h2c {
            Self::starts_with_h2_preface(&mut stream, header_timeout).await?
        } else {
            false
        };
        place.counted_in(listener.accepted(h2));
        if h2 {
            // Pingora's loop, which finds the same preface or ALPN and serves HTTP/2.
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let opened = Instant::now();
        let conn = Http1 {
            _place: place,
            listener: index,
            header_timeout,
            opened,
            first: true,
            carried: Carried {
                keepalive: (!*shutdown.borrow()).then_some(FIRST_REQUEST_KEEPALIVE_SECS),
                reuses: self
                    .proxy
                    .server_options
                    .as_ref()
                    .and_then(|o| o.keepalive_request_limit),
            },
            // The first head counts from the accept, like any head from its first byte.
            deadline: Some(opened + header_timeout),
        };
        self.serve_http1(stream, conn, false, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        // The listeners have stopped accepting. Busy connections close after their current
        // response (Pingora sends `Connection: close` once shutdown has begun); idle ones get a
        // moment to send the request that may already be on its way, then are closed.
        let grace = self.current.load().config().server.grace_period;
        let _ = tokio::time::timeout(grace.min(DRAIN_IDLE), self.connections.wait_idle()).await;
        self.closing.begin();
        self.dormant.close();
        self.proxy.http_cleanup().await;
    }
}

/// The peer's IP address, when the stream is a TCP connection.
pub fn peer_ip(stream: &Stream) -> Option<std::net::IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().cloned())
        .and_then(|a| match a {
            SocketAddr::Inet(a) => Some(a.ip()),
            SocketAddr::Unix(_) => None,
        })
}

#[cfg(test)]
mod tests {
    /// What each dormant connection costs the lot beside its slot's token and descriptor: the
    /// point of dormancy (BENCHMARKS.md, seventh session: 0.7 KiB per idle connection in all).
    #[test]
    fn a_dormant_connections_record_stays_small() {
        assert!(std::mem::size_of::<super::Asleep>() <= 200);
    }
}
