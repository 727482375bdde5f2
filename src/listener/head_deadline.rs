//! A deadline for the whole request head. Pingora's read timeout restarts after every read, so a
//! client that trickles one header line every few seconds holds a connection forever (the
//! slowloris attack). [`TimedStream`] wraps a client connection and fails its reads once a
//! request head has taken longer than `header_timeout`; [`HeadClock`] is the switch the
//! connection loop arms before each request and the proxy's first hook disarms once the head
//! is parsed, so request bodies, long responses and upgraded connections are never cut by it.
//! The clock runs on socket reads: a pipelined request whose head arrived together with the
//! previous request is timed from the next read it needs (none, when it arrived whole).
//!
//! The clock also hands an idle connection back to its loop: armed with `hand_back`, a stream
//! dropped before the next request's first byte (Pingora gave up waiting for it) leaves its
//! socket in the clock instead of closing it, so the loop can wait for that request without
//! the request machinery (`super::idle`).

use crate::telemetry::connections::DOWNSTREAM_TIMEOUTS;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::protocols::{SocketDigest, TimingDigest};
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

// The clock's state sits in the low two bits, the hand-back flag in the third; the bits above
// count arms, so a stream never carries a deadline over from an earlier request head.
const DISARMED: u32 = 0;
/// Armed; the clock starts with the next byte that arrives (an idle keep-alive connection is
/// governed by the keep-alive timeout until then).
const ON_FIRST_BYTE: u32 = 1;
/// Armed and running since the next request's first byte.
const RUNNING: u32 = 2;
/// Armed and running since the stream was opened (a new connection's first head).
const FROM_OPEN: u32 = 3;
const STATE: u32 = 0b11;
/// With `ON_FIRST_BYTE`: a stream dropped before that byte hands its socket back. Cleared by
/// the byte, by end of stream and by a read error.
const HAND_BACK: u32 = 0b100;
const FLAGS: u32 = STATE | HAND_BACK;
const EPOCH: u32 = 0b1000;

/// The switch shared by a connection's stream, its loop and the proxy hook.
#[derive(Debug)]
pub struct HeadClock {
    state: AtomicU32,
    timeout: Duration,
    /// The socket of a stream dropped while idle with `HAND_BACK` set.
    handed_back: Mutex<Option<Stream>>,
}

impl HeadClock {
    /// A disarmed clock allowing `timeout` per request head.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU32::new(DISARMED),
            timeout,
            handed_back: Mutex::new(None),
        })
    }

    /// The head must be complete `timeout` after the stream was opened (its `opened` instant).
    pub fn start_from_open(&self) {
        self.arm(FROM_OPEN);
    }

    /// The head must be complete `timeout` after its first byte. With `hand_back`, the stream's
    /// socket is kept in the clock if the stream is dropped before that byte arrives.
    pub fn start_on_first_byte(&self, hand_back: bool) {
        self.arm(if hand_back {
            ON_FIRST_BYTE | HAND_BACK
        } else {
            ON_FIRST_BYTE
        });
    }

    /// The head is complete: reads are unbounded by this clock again.
    pub fn stop(&self) {
        let now = self.state.load(Ordering::Acquire);
        self.state.store(now & !FLAGS, Ordering::Release);
    }

    /// The socket an idle stream handed back when it was dropped, if it did.
    pub fn take_handed_back(&self) -> Option<Stream> {
        self.slot().take()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Stream>> {
        self.handed_back.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, state: u32) {
        let now = self.state.load(Ordering::Acquire);
        self.state.store(
            ((now & !FLAGS).wrapping_add(EPOCH)) | state,
            Ordering::Release,
        );
    }

    /// Clears `HAND_BACK` if the clock is still at arm `armed`.
    fn keep_nothing(&self, armed: u32) {
        let _ = self.state.compare_exchange(
            armed,
            armed & !HAND_BACK,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// A client stream whose reads fail with `TimedOut` once a request head is overdue.
///
/// The timer is only set when a read would wait while the clock runs: a head that arrives in
/// one read (nearly all of them) costs no timer and no clock read.
#[derive(Debug)]
pub struct TimedStream {
    /// Dropped, or handed back to the clock, only in `Drop`.
    inner: ManuallyDrop<Stream>,
    clock: Arc<HeadClock>,
    /// When the stream was wrapped (the connection's accept, give or take the handshake).
    opened: Instant,
    /// The arm (epoch and state) the timer below belongs to.
    timed: Option<u32>,
    /// Created on the first wait and reset afterwards: one timer allocation per connection.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedStream {
    /// Wraps `inner`, opened at `opened` (the accept, or the first byte of a request that woke an
    /// idle connection); the clock starts disarmed.
    pub fn new(inner: Stream, clock: Arc<HeadClock>, opened: Instant) -> Self {
        Self {
            inner: ManuallyDrop::new(inner),
            clock,
            opened,
            timed: None,
            sleep: None,
        }
    }

    /// Polls the head timer of arm `armed`, starting it if this arm has none yet.
    fn overdue(&mut self, cx: &mut Context<'_>, armed: u32) -> bool {
        if self.timed != Some(armed) {
            let start = if armed & STATE == FROM_OPEN {
                self.opened
            } else {
                Instant::now()
            };
            let deadline = start + self.clock.timeout;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.timed = Some(armed);
        }
        self.sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

impl AsyncRead for TimedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let armed = this.clock.state.load(Ordering::Acquire);
        if armed & STATE == DISARMED {
            return Pin::new(&mut *this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(_) if armed & STATE == ON_FIRST_BYTE => {
                if buf.filled().len() == before {
                    // End of stream or a failed read: nothing worth handing back.
                    this.clock.keep_nothing(armed);
                } else {
                    // The first byte of the next head: its clock runs from now on (the
                    // timer starts with the first wait, a few microseconds later at most).
                    let running = (armed & !FLAGS) | RUNNING;
                    let _ = this.clock.state.compare_exchange(
                        armed,
                        running,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                polled
            }
            Poll::Ready(_) => polled,
            // Idle between requests: the keep-alive timeout governs this wait.
            Poll::Pending if armed & STATE == ON_FIRST_BYTE => Poll::Pending,
            Poll::Pending => {
                if this.overdue(cx, armed) {
                    this.clock.stop();
                    DOWNSTREAM_TIMEOUTS
                        .with_label_values(&["request_head"])
                        .inc();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within server.limits.header_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for TimedStream {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken here, once, and the stream is not used afterwards.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        let armed = self.clock.state.load(Ordering::Acquire);
        if armed & FLAGS == ON_FIRST_BYTE | HAND_BACK {
            *self.clock.slot() = Some(inner);
        }
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(timeout: Duration) -> (TimedStream, tokio::net::TcpStream, Arc<HeadClock>) {
        let (server, client) = super::super::test_pair::pair().await;
        let clock = HeadClock::new(timeout);
        let stream: Stream = Box::new(server);
        (
            TimedStream::new(stream, clock.clone(), Instant::now()),
            client,
            clock,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_fails_at_the_deadline_however_often_bytes_arrive() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(10)).await;
        clock.start_from_open();
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            client.write_all(b"X-a: b\r\n").await.unwrap();
            assert!(stream.read(&mut buf).await.unwrap() > 0);
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        // 11 s after the stream was opened, the next wait for a byte ends at once.
        let start = Instant::now();
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_clock_lets_slow_reads_through() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(1)).await;
        clock.start_from_open();
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
        clock.start_on_first_byte(false);
        tokio::time::advance(Duration::from_secs(60)).await;
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            stream.read(&mut buf).await.unwrap(),
            3,
            "idle time is not head time"
        );
        // The rest of the head never comes: the wait ends 5 s after the first byte.
        let start = Instant::now();
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_arm_never_reuses_the_previous_heads_deadline() {
        let (mut stream, mut client, clock) = pair(Duration::from_secs(5)).await;
        clock.start_from_open();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(stream.read(&mut buf).await.unwrap() > 0);
        // A wait starts the first head's timer; then the head completes and a response goes.
        assert!(
            tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf))
                .await
                .is_err()
        );
        clock.stop();
        clock.start_on_first_byte(false);
        client.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3);
        // Past the first head's deadline but inside this one's: still waiting, not failed.
        assert!(
            tokio::time::timeout(Duration::from_secs(4), stream.read(&mut buf))
                .await
                .is_err()
        );
    }
}
