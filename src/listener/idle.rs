//! Idle HTTP/1 connections without their request state. What serves a request (Pingora's
//! session with its 4 KiB header buffer, and the proxy's future, sized for the largest state a
//! proxied request goes through: ~16 KiB) is only needed while a request is on the connection.
//! A keep-alive connection idle for [`SHED_AFTER_SECS`] gives it up: Pingora's keep-alive timer
//! is set to that, the stream hands its socket back to the connection's `HeadClock` when the
//! timer ends the wait, and the connection loop waits here for the next request, holding the
//! socket (its L4 buffers parked: `super::buffers`) and a one-byte read, for the rest of
//! `keepalive_timeout`. A new connection waits here for its first request too. A cleartext
//! connection does not stay: the wait ends at its dormant time ([`Wake::Dormant`]) and the
//! connection loop hands the socket to a dormant lot (`super::dormant`), once it has been idle
//! for `limits.dormant_after` since its last response (or since the accept, for a new one).
//!
//! A connection whose client sends its next request within a second keeps its state, so a busy
//! connection costs nothing more per request; the request state is allocated once per busy
//! period instead of once per connection.

use bytes::BytesMut;
use futures_util::FutureExt;
use pingora::protocols::Stream;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Seconds a keep-alive connection waits for its next request with its request state kept.
/// Whole seconds: Pingora's keep-alive timer counts in seconds.
pub const SHED_AFTER_SECS: u64 = 1;

/// Pingora's own first allocation for a request head.
const HEAD_BUFFER: usize = 4096;

/// How an idle wait ended.
#[derive(Debug)]
pub enum Wake {
    /// The first bytes of a request, in a buffer with room for the rest of its head.
    Request(BytesMut),
    /// Nothing came before the deadline.
    TimedOut,
    /// Nothing came before the time to hand the connection to its dormant lot.
    Dormant,
    /// The client closed the connection, the socket failed, or the listener is closing.
    Closed,
}

/// Waits for the first bytes of the next request on `stream` until `deadline` (`None`: no
/// limit), until `closing` begins, or until `dormant` (`None`: never). A request already
/// arriving wins over the rest.
pub async fn wait_for_request(
    stream: &mut Stream,
    deadline: Option<Instant>,
    dormant: Option<Instant>,
    closing: &Closing,
) -> Wake {
    // One byte: what the wait holds is held by every idle connection (a read buffer here would
    // sit in the connection's future). The rest of what has arrived is read once it is known
    // to be there.
    let mut first = [0u8; 1];
    // One timer for both ends: the earlier decides.
    let sleeps_first = match (dormant, deadline) {
        (Some(d), Some(end)) => d < end,
        (d, _) => d.is_some(),
    };
    let wait_end = if sleeps_first { dormant } else { deadline };
    let woken = tokio::select! {
        biased;
        read = stream.read(&mut first) => matches!(read, Ok(1)),
        () = closing.wait() => return Wake::Closed,
        () = until(wait_end) => {
            return if sleeps_first { Wake::Dormant } else { Wake::TimedOut };
        }
    };
    if !woken {
        return Wake::Closed;
    }
    let mut head = BytesMut::with_capacity(HEAD_BUFFER);
    head.extend_from_slice(&first);
    // Whatever else is already there, without waiting (Pingora's parser reads on). Unconstrained:
    // tokio's cooperative budget could otherwise make a ready read look pending.
    let _ = tokio::task::unconstrained(stream.read_buf(&mut head)).now_or_never();
    Wake::Request(head)
}

/// Returns at `at`; never if `None`.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The end of idle waits: set once the listener's drain window is over.
#[derive(Debug, Default)]
pub struct Closing {
    begun: AtomicBool,
    notify: Notify,
}

impl Closing {
    /// Ends every idle wait, current and future.
    pub fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Returns once closing has begun.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `begin` in between is not missed.
        notified.as_mut().enable();
        if self.begun.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let (l4, client) = super::super::test_pair::pair().await;
        (Box::new(l4), client)
    }

    #[tokio::test]
    async fn the_first_bytes_come_back_with_room_for_the_rest_of_the_head() {
        let (mut stream, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let Wake::Request(head) =
            wait_for_request(&mut stream, None, None, &Closing::default()).await
        else {
            panic!("no request");
        };
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\n");
        assert!(head.capacity() >= HEAD_BUFFER);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_before_the_deadline_is_a_timeout_and_a_close_is_a_close() {
        let (mut stream, client) = pair().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let wake = wait_for_request(&mut stream, Some(deadline), None, &Closing::default()).await;
        assert!(matches!(wake, Wake::TimedOut), "{wake:?}");
        assert_eq!(Instant::now(), deadline);
        drop(client);
        let wake = wait_for_request(&mut stream, None, None, &Closing::default()).await;
        assert!(matches!(wake, Wake::Closed), "{wake:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_dormant_time_ends_a_wait_before_its_deadline_but_not_a_request() {
        let (mut stream, mut client) = pair().await;
        let start = Instant::now();
        let (dormant, deadline) = (
            start + Duration::from_secs(1),
            start + Duration::from_secs(5),
        );
        let wake = wait_for_request(
            &mut stream,
            Some(deadline),
            Some(dormant),
            &Closing::default(),
        )
        .await;
        assert!(matches!(wake, Wake::Dormant), "{wake:?}");
        assert_eq!(Instant::now(), dormant);
        client.write_all(b"G").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let wake = wait_for_request(
            &mut stream,
            Some(deadline),
            Some(start),
            &Closing::default(),
        )
        .await;
        assert!(matches!(wake, Wake::Request(_)), "{wake:?}");
    }

    #[tokio::test]
    async fn closing_ends_waits_begun_before_and_after_it_but_not_a_request_on_the_wire() {
        let (mut stream, mut client) = pair().await;
        let closing = Closing::default();
        let waiting = async {
            let wake = wait_for_request(&mut stream, None, None, &closing).await;
            assert!(matches!(wake, Wake::Closed), "{wake:?}");
        };
        tokio::join!(waiting, async { closing.begin() });
        let wake = wait_for_request(&mut stream, None, None, &closing).await;
        assert!(matches!(wake, Wake::Closed), "{wake:?}");
        client.write_all(b"GET").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let wake = wait_for_request(&mut stream, None, None, &closing).await;
        assert!(matches!(wake, Wake::Request(_)), "{wake:?}");
    }
}
