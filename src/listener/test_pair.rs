//! A loopback connection for the listener's unit tests: the server side as Pingora's L4 stream
//! (no buffers, as `From<TcpStream>` makes it), and the client's socket.

use pingora::protocols::l4::stream::Stream as L4Stream;

/// A connected pair on 127.0.0.1.
pub async fn pair() -> (L4Stream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (L4Stream::from(server), client)
}
