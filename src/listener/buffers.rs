//! A client connection's L4 buffers: their sizes per listener kind, and their release while the
//! connection waits idle for its next request. Pingora gives every connection a write buffer
//! (1,460 bytes: a small response's head and body leave in one `write`) and, for TLS, a read
//! buffer, both allocated for the connection's whole life; an idle keep-alive connection has no
//! use for either, so they are parked (freed) while it waits and rebuilt when a request comes.
//! Measured in BENCHMARKS.md (fifth session): KiB per idle connection, cleartext and TLS.

use pingora::protocols::l4::stream::{L4BufferSettings, Stream as L4Stream};
use pingora::protocols::tls::TlsStream;
use pingora::protocols::Stream;

/// Socket buffers of a cleartext client connection: no L4 read buffer. Pingora's default puts a
/// 64 KiB read buffer in front of every connection for its whole life; the HTTP/1 parser and
/// the h2 codec read into buffers of their own, so for cleartext it only costs memory:
/// 101 KiB per idle keep-alive connection with it, 36.5 KiB without (`benches/idle_memory.py`,
/// 2,000 connections, debug build). TLS listeners keep one ([`TLS`]): rustls reads records in
/// small pieces, which that buffer turns into one syscall.
pub const PLAIN: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};

/// Socket buffers of a TLS client connection: a read buffer of one largest TLS record as rustls
/// may receive it (16 KiB of data, 2 KiB of expansion, the 5-byte header), so a record still
/// arrives in one read, instead of Pingora's 64 KiB. tokio zero-fills that buffer when it is
/// made, so all of it was resident for the connection's life: 111.8 KiB per idle TLS connection
/// before, 83.2 with the idle shedding, 40.4 with this buffer too; a bulk upload costs ~4% more
/// CPU (more reads), 0.68–0.72 against 0.66–0.68 ms per MiB (`python3
/// benches/tls_connections.py`, BENCHMARKS.md, fourth session).
pub const TLS: L4BufferSettings = L4BufferSettings {
    read: Some(16_384 + 2_048 + 5),
    write: None,
};

/// The L4 buffers an idle connection gave back: the sizes to rebuild them at, if it did.
#[derive(Debug)]
#[must_use = "parked buffers are restored before the connection serves a request"]
pub struct ParkedBuffers(Option<L4BufferSettings>);

impl ParkedBuffers {
    /// Frees `stream`'s L4 buffers if they hold nothing (otherwise they stay).
    pub fn park(stream: &mut Stream) -> Self {
        Self(transport(stream).and_then(|(l4, sizes)| l4.park_buffers().then_some(sizes)))
    }

    /// Puts them back, before the connection serves a request.
    pub fn restore(self, stream: &mut Stream) {
        if let (Some(sizes), Some((l4, _))) = (self.0, transport(stream)) {
            l4.restore_buffers(sizes);
        }
    }

    /// Whether buffers were parked.
    pub fn is_parked(&self) -> bool {
        self.0.is_some()
    }
}

/// The TCP stream of a cleartext or TLS client connection, and its listener's buffer sizes.
fn transport(stream: &mut Stream) -> Option<(&mut L4Stream, L4BufferSettings)> {
    let any = stream.as_any_mut();
    if any.is::<L4Stream>() {
        return any.downcast_mut().map(|l4| (l4, PLAIN));
    }
    let l4 = any.downcast_mut::<TlsStream<L4Stream>>()?.transport_mut()?;
    Some((l4, TLS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Stream, tokio::net::TcpStream) {
        let (mut l4, client) = super::super::test_pair::pair().await;
        l4.restore_buffers(PLAIN);
        (Box::new(l4), client)
    }

    #[tokio::test]
    async fn parked_buffers_come_back_and_the_stream_still_reads_and_writes() {
        let (mut stream, mut client) = pair().await;
        let parked = ParkedBuffers::park(&mut stream);
        assert!(parked.is_parked());
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).await.unwrap();
        parked.restore(&mut stream);
        stream.write_all(b"pong").await.unwrap();
        stream.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test]
    async fn buffers_holding_data_stay() {
        let (mut stream, mut client) = pair().await;
        // Written into the write buffer, not yet flushed: parking would lose it.
        stream.write_all(b"late").await.unwrap();
        let parked = ParkedBuffers::park(&mut stream);
        assert!(!parked.is_parked());
        parked.restore(&mut stream);
        stream.flush().await.unwrap();
        let mut got = [0u8; 4];
        // Bounded: bytes lost with a parked buffer would never come.
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got));
        read.await.expect("the buffered bytes arrive").unwrap();
        assert_eq!(&got, b"late");
    }
}
