//! The connection loop in front of Pingora's HTTP proxy. Pingora's own loop (the `ServerApp`
//! impl for every `HttpServerApp`) is kept for HTTP/2; HTTP/1 connections run this copy of it,
//! which adds what Pingora lacks: connection limits, a deadline for each request head and for
//! the h2c preface, request pipelining, and a drain window at shutdown in which idle keep-alive
//! connections may send one more request (answered with `Connection: close`) instead of being
//! cut while that request is on the wire. Between busy periods an HTTP/1 connection holds only
//! its socket (`super::idle`).

use super::buffers::ParkedBuffers;
use super::connections::{Connections, Limits};
use super::head_deadline::{HeadClock, TimedStream};
use super::idle::{self, Closing, Wake};
use crate::snapshot::Current;
use crate::telemetry::connections::{ListenerMetrics, DOWNSTREAM_TIMEOUTS};
use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use std::sync::Arc;
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
}

/// What a connection's next request inherits from the previous one (Pingora's keep-alive
/// settings, kept here while the connection idles without a session).
#[derive(Debug, Clone, Copy)]
struct Carried {
    /// Idle seconds allowed before the next request (`Some(0)`: no limit; `None`: no reuse).
    keepalive: Option<u64>,
    /// Requests the connection may still serve after the next (`None`: no limit).
    reuses: Option<u32>,
}

impl Carried {
    /// Whether the keep-alive outlasts the wait with the request state kept.
    fn sheds_when_idle(&self) -> bool {
        self.keepalive
            .is_some_and(|secs| secs == 0 || secs > idle::SHED_AFTER_SECS)
    }

    /// When the idle wait that follows the first [`idle::SHED_AFTER_SECS`] ends (`None`: never).
    fn idle_deadline(&self) -> Option<Instant> {
        // `Some(0)` has no end: the subtraction fails.
        let rest = self.keepalive?.checked_sub(idle::SHED_AFTER_SECS)?;
        Some(Instant::now() + Duration::from_secs(rest))
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
        }
    }

    /// The listener a connection came in on: the one whose address is the socket's local
    /// address, else the one on its port (a wildcard address), else the first.
    fn listener_of(&self, stream: &Stream) -> &ListenerMetrics {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().cloned())
            .and_then(|a| a.as_inet().copied());
        let first = &self.listeners[0].metrics;
        let Some(local) = local else {
            return first;
        };
        let exact = self.listeners.iter().find(|l| l.addr == Some(local));
        exact
            .or_else(|| self.listeners.iter().find(|l| l.port == Some(local.port())))
            .map_or(first, |l| &l.metrics)
    }

    /// HTTP/1 requests on one connection, in order, until it closes. Between busy periods the
    /// connection holds only its socket (`super::idle`).
    async fn serve_http1(
        &self,
        mut stream: Stream,
        header_timeout: Duration,
        idle_gauge: &IntGauge,
        shutdown: &ShutdownWatch,
    ) {
        let opened = Instant::now();
        let clock = HeadClock::new(header_timeout);
        let mut carried = Carried {
            keepalive: (!*shutdown.borrow()).then_some(FIRST_REQUEST_KEEPALIVE_SECS),
            reuses: self
                .proxy
                .server_options
                .as_ref()
                .and_then(|o| o.keepalive_request_limit),
        };
        // The first head counts from the accept, like any head from its first byte.
        let mut deadline = Some(opened + header_timeout);
        let mut first = true;
        loop {
            idle_gauge.inc();
            // Its L4 buffers are freed while it waits (rebuilt only if a request comes).
            let parked = ParkedBuffers::park(&mut stream);
            let wake = idle::wait_for_request(&mut stream, deadline, &self.closing).await;
            idle_gauge.dec();
            let head = match wake {
                Wake::Request(head) => {
                    parked.restore(&mut stream);
                    head
                }
                Wake::TimedOut if first => {
                    DOWNSTREAM_TIMEOUTS
                        .with_label_values(&["request_head"])
                        .inc();
                    return;
                }
                Wake::TimedOut | Wake::Closed => return,
            };
            let head_start = if first { opened } else { Instant::now() };
            first = false;
            // Boxed: the idle connection keeps the pointer, not the request state.
            let busy =
                Box::pin(self.serve_busy(stream, head, head_start, carried, &clock, shutdown));
            let Some((idle, kept)) = busy.await else {
                return;
            };
            stream = idle;
            carried = kept;
            deadline = carried.idle_deadline();
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
        let listener = self.listener_of(&stream);
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
        self.serve_http1(stream, header_timeout, &listener.idle, shutdown)
            .await;
        None
    }

    async fn cleanup(&self) {
        // The listeners have stopped accepting. Busy connections close after their current
        // response (Pingora sends `Connection: close` once shutdown has begun); idle ones get a
        // moment to send the request that may already be on its way, then are closed.
        let grace = self.current.load().config().server.grace_period;
        let _ = tokio::time::timeout(grace.min(DRAIN_IDLE), self.connections.wait_idle()).await;
        self.closing.begin();
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
