//! A cleartext client connection taken apart to its socket while it is dormant
//! (`super::dormant`), and built back into a stream like the listener's when it wakes.

use crate::log_throttle::{self, Throttled};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use std::io;
use std::net::SocketAddr as InetAddr;
use std::os::fd::{AsRawFd, OwnedFd};

/// A connection's socket and the addresses its stream knew.
pub struct Taken {
    pub socket: OwnedFd,
    pub peer: InetAddr,
    /// Kept when the stream had looked it up, so waking does not look it up again.
    pub local: Option<InetAddr>,
}

/// `stream`'s socket under a descriptor of its own, with the stream dropped: that takes its
/// descriptor out of tokio's set and closes it, while the connection lives on in the returned
/// one. The stream comes back untouched when it is not a TCP stream of its own (TLS, a Unix
/// socket) or the descriptor cannot be duplicated.
pub fn take(mut stream: Stream) -> Result<Taken, Stream> {
    let Some(digest) = stream.get_socket_digest() else {
        return Err(stream);
    };
    let Some(SocketAddr::Inet(peer)) = digest.peer_addr().cloned() else {
        return Err(stream);
    };
    let local = match digest.local_addr.get() {
        Some(Some(SocketAddr::Inet(local))) => Some(*local),
        _ => None,
    };
    let Some(l4) = stream.as_any_mut().downcast_mut::<L4Stream>() else {
        return Err(stream);
    };
    match super::dormant::duplicate(l4.as_raw_fd()) {
        Ok(socket) => Ok(Taken {
            socket,
            peer,
            local,
        }),
        Err(e) => {
            static NO_DUP: Throttled = Throttled::new(log_throttle::STORM);
            NO_DUP.warn(format_args!(
                "an idle connection stays awake: its socket cannot be duplicated: {e}"
            ));
            Err(stream)
        }
    }
}

/// A stream on `socket` as the listener makes one: its addresses recorded, no L4 buffers yet
/// (the connection loop gives them when a request comes). Registered with the current runtime.
pub fn rebuild(
    socket: std::net::TcpStream,
    peer: InetAddr,
    local: Option<InetAddr>,
) -> io::Result<Stream> {
    let mut l4 = L4Stream::from(tokio::net::TcpStream::from_std(socket)?);
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    let _ = digest.peer_addr.set(Some(SocketAddr::Inet(peer)));
    if let Some(local) = local {
        let _ = digest.local_addr.set(Some(SocketAddr::Inet(local)));
    }
    l4.set_socket_digest(digest);
    Ok(Box::new(l4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_taken_socket_outlives_its_stream_and_rebuilds_with_its_addresses() {
        let (mut l4, mut client) = super::super::test_pair::pair().await;
        let peer = client.local_addr().unwrap();
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(SocketAddr::Inet(peer)));
        l4.set_socket_digest(digest);
        let Ok(taken) = take(Box::new(l4)) else {
            panic!("a TCP stream was not taken");
        };
        assert_eq!((taken.peer, taken.local), (peer, None));
        // The stream is gone; the connection is not.
        client.write_all(b"ping").await.unwrap();
        let socket = std::net::TcpStream::from(taken.socket);
        let mut stream = rebuild(socket, taken.peer, Some(client.peer_addr().unwrap())).unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        stream.write_all(b"pong").await.unwrap();
        stream.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        let digest = stream.get_socket_digest().unwrap();
        assert_eq!(digest.peer_addr(), Some(&SocketAddr::Inet(peer)));
        assert_eq!(
            digest.local_addr(),
            Some(&SocketAddr::Inet(client.peer_addr().unwrap()))
        );
    }

    #[tokio::test]
    async fn a_stream_without_its_socket_record_is_given_back() {
        let (l4, _client) = super::super::test_pair::pair().await;
        assert!(take(Box::new(l4)).is_err());
    }
}
