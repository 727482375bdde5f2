//! A deadline for the whole request head. Pingora's read timeout restarts after every read, so a
//! client that trickles one header line every few seconds holds a connection forever (the
//! slowloris attack). [`TimedStream`] wraps a client connection and fails its reads once a
//! request head has taken longer than `header_timeout`; [`HeadClock`] is the switch the
//! connection loop arms before each request and the proxy's first hook disarms once the head
//! is parsed, so request bodies, long responses and upgraded connections are never cut by it.

use crate::telemetry::connections::DOWNSTREAM_TIMEOUTS;
use async_trait::async_trait;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::protocols::{SocketDigest, TimingDigest};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const DISARMED: u8 = 0;
/// Armed; the clock starts with the next byte that arrives (an idle keep-alive connection is
/// governed by the keep-alive timeout until then).
const ON_FIRST_BYTE: u8 = 1;
/// Armed; the clock starts at once (a new connection must send its head in time).
const NOW: u8 = 2;
/// Running: the stream holds the deadline.
const RUNNING: u8 = 3;

/// The switch shared by a connection's stream, its loop and the proxy hook.
#[derive(Debug)]
pub struct HeadClock {
    state: AtomicU8,
    timeout: Duration,
}

impl HeadClock {
    /// A disarmed clock allowing `timeout` per request head.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU8::new(DISARMED),
            timeout,
        })
    }

    /// The head must be complete `timeout` from now.
    pub fn start_now(&self) {
        self.state.store(NOW, Ordering::Release);
    }

    /// The head must be complete `timeout` after its first byte.
    pub fn start_on_first_byte(&self) {
        self.state.store(ON_FIRST_BYTE, Ordering::Release);
    }

    /// The head is complete: reads are unbounded by this clock again.
    pub fn stop(&self) {
        self.state.store(DISARMED, Ordering::Release);
    }
}

/// A client stream whose reads fail with `TimedOut` once a request head is overdue.
#[derive(Debug)]
pub struct TimedStream {
    inner: Stream,
    clock: Arc<HeadClock>,
    /// Created on the first armed read and reset afterwards: one timer per connection.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedStream {
    /// Wraps `inner`; the clock starts disarmed.
    pub fn new(inner: Stream, clock: Arc<HeadClock>) -> Self {
        Self {
            inner,
            clock,
            sleep: None,
        }
    }

    fn start(&mut self) {
        let deadline = Instant::now() + self.clock.timeout;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.clock.state.store(RUNNING, Ordering::Release);
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.clock.state.load(Ordering::Acquire) {
            DISARMED => return Pin::new(&mut this.inner).poll_read(cx, buf),
            NOW => this.start(),
            _ => {}
        }
        if this.clock.state.load(Ordering::Acquire) == RUNNING {
            if let Some(sleep) = &mut this.sleep {
                if sleep.as_mut().poll(cx).is_ready() {
                    this.clock.stop();
                    DOWNSTREAM_TIMEOUTS
                        .with_label_values(&["request_head"])
                        .inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within server.limits.header_timeout",
                    )));
                }
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this
                .clock
                .state
                .compare_exchange(ON_FIRST_BYTE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            this.start();
        }
        polled
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for TimedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for TimedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for TimedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for TimedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for TimedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for TimedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for TimedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
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
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(timeout: Duration) -> (TimedStream, tokio::net::TcpStream, Arc<HeadClock>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let clock = HeadClock::new(timeout);
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (TimedStream::new(stream, clock.clone()), client, clock)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_fails_at_the_deadline_however_often_bytes_arrive() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(10)).await;
        clock.start_now();
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            client.write_all(b"X-a: b\r\n").await.unwrap();
            assert!(stream.read(&mut buf).await.unwrap() > 0);
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        client.write_all(b"X-a: b\r\n").await.unwrap();
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_clock_lets_slow_reads_through() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(1)).await;
        clock.start_now();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(stream.read(&mut buf).await.unwrap() > 0);
        clock.stop();
        tokio::time::advance(Duration::from_secs(30)).await;
        client.write_all(b"body").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keepalive_connection_starts_the_clock_with_its_first_byte() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(5)).await;
        clock.start_on_first_byte();
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            stream.read(&mut buf).await.unwrap(),
            3,
            "idle time is not head time"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        client.write_all(b" / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(
            stream.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }
}
