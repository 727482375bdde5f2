//! Lots with real loopback sockets: what wakes a connection, what ends it, what a hang-up and a
//! close do, and that every wake hands back the connection parked on that socket.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What the hooks saw: a wake with the socket, or an expiry.
#[derive(Debug)]
enum Seen {
    Woken(u32, std::net::TcpStream),
    Expired(u32),
    Settled,
}

struct Report(mpsc::UnboundedSender<Seen>);

impl Hooks<u32> for Report {
    fn wake(&self, conn: u32, socket: std::net::TcpStream) {
        let _ = self.0.send(Seen::Woken(conn, socket));
    }
    fn expire(&self, conn: u32) {
        let _ = self.0.send(Seen::Expired(conn));
    }
    fn settled(&self) {
        let _ = self.0.send(Seen::Settled);
    }
}

fn lot() -> (Lot<u32>, mpsc::UnboundedReceiver<Seen>, IntGauge) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gauge = IntGauge::new("dormant", "test").unwrap();
    let lot = Lot::start(Box::new(Report(tx)), gauge.clone()).unwrap();
    (lot, rx, gauge)
}

/// The server's socket (non-blocking, as a listener's are) and the client's.
async fn pair() -> (OwnedFd, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server.into_std().unwrap().into(), client)
}

/// The next wake or expiry (a slow machine may let a lot settle in between).
async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    loop {
        match next_seen(rx).await {
            Seen::Settled => continue,
            seen => return seen,
        }
    }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the lot reported nothing within 5 s")
        .expect("the hooks are kept")
}

/// Whether the client sees the connection closed (bounded).
async fn closed(client: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await,
        Ok(Ok(0))
    )
}

async fn read_all_ready(socket: std::net::TcpStream) -> (Vec<u8>, TcpStream) {
    let mut socket = TcpStream::from_std(socket).unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    (buf, socket)
}

#[tokio::test]
async fn a_request_wakes_its_connection_with_the_bytes_unread() {
    let (lot, mut rx, gauge) = lot();
    let (server, mut client) = pair().await;
    lot.park(server, 7, None).map_err(|_| "refused").unwrap();
    assert_eq!((lot.count(), gauge.get()), (1, 1));
    client.write_all(b"GET").await.unwrap();
    let Seen::Woken(7, socket) = next(&mut rx).await else {
        panic!("not woken");
    };
    assert_eq!((lot.count(), gauge.get()), (0, 0));
    let (got, socket) = read_all_ready(socket).await;
    assert_eq!(got, b"GET");
    // Out of the set: parked again, it wakes again, under its new record.
    lot.park(socket.into_std().unwrap().into(), 8, None)
        .map_err(|_| "refused")
        .unwrap();
    client.write_all(b" /").await.unwrap();
    let Seen::Woken(8, socket) = next(&mut rx).await else {
        panic!("not woken again");
    };
    assert_eq!(read_all_ready(socket).await.0, b" /");
}

#[tokio::test]
async fn a_request_that_arrived_before_the_park_wakes_it_at_once() {
    let (lot, mut rx, _) = lot();
    let (server, mut client) = pair().await;
    client.write_all(b"GET").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    lot.park(server, 1, None).map_err(|_| "refused").unwrap();
    assert!(matches!(next(&mut rx).await, Seen::Woken(1, _)));
}

#[tokio::test]
async fn a_deadline_closes_the_connection_after_the_hook_saw_it() {
    let (lot, mut rx, gauge) = lot();
    let (server, mut client) = pair().await;
    let (other, mut other_client) = pair().await;
    let now = Instant::now();
    lot.park(server, 3, Some(now + Duration::from_millis(300)))
        .map_err(|_| "refused")
        .unwrap();
    // A later park with an earlier deadline: the task waits for the earlier one.
    lot.park(other, 4, Some(now + Duration::from_millis(100)))
        .map_err(|_| "refused")
        .unwrap();
    assert!(matches!(next(&mut rx).await, Seen::Expired(4)));
    assert!(closed(&mut other_client).await);
    assert!(matches!(next(&mut rx).await, Seen::Expired(3)));
    assert!(now.elapsed() >= Duration::from_millis(300));
    assert!(closed(&mut client).await);
    assert_eq!((lot.count(), gauge.get()), (0, 0));
}

#[tokio::test]
async fn a_deadline_of_an_earlier_stay_does_not_end_the_next_one() {
    let (lot, mut rx, _) = lot();
    let (server, mut client) = pair().await;
    lot.park(server, 1, Some(Instant::now() + Duration::from_millis(200)))
        .map_err(|_| "refused")
        .unwrap();
    client.write_all(b"a").await.unwrap();
    let Seen::Woken(1, socket) = next(&mut rx).await else {
        panic!("not woken");
    };
    let (_, socket) = read_all_ready(socket).await;
    // The same slot, no deadline: the first stay's deadline must find nothing to end.
    lot.park(socket.into_std().unwrap().into(), 2, None)
        .map_err(|_| "refused")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing happened to the second stay"
    );
    assert_eq!(lot.count(), 1);
    client.write_all(b"b").await.unwrap();
    assert!(matches!(next(&mut rx).await, Seen::Woken(2, _)));
}

#[tokio::test]
async fn a_client_that_hangs_up_is_closed_without_a_wake_unless_it_sent_a_request() {
    let (lot, mut rx, gauge) = lot();
    let (server, client) = pair().await;
    lot.park(server, 1, None).map_err(|_| "refused").unwrap();
    drop(client);
    let gone = async {
        while gauge.get() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the hung-up connection left the lot");
    assert_eq!(lot.count(), 0);
    assert!(
        !matches!(rx.try_recv(), Ok(Seen::Woken(..) | Seen::Expired(_))),
        "neither woken nor expired"
    );

    // A request followed by a half-close is served.
    let (server, mut client) = pair().await;
    lot.park(server, 2, None).map_err(|_| "refused").unwrap();
    client.write_all(b"GET").await.unwrap();
    client.shutdown().await.unwrap();
    assert!(matches!(next(&mut rx).await, Seen::Woken(2, _)));
}

#[tokio::test]
async fn closing_ends_every_connection_and_refuses_later_ones() {
    let (lot, _rx, gauge) = lot();
    let mut clients = Vec::new();
    for id in 0..5 {
        let (server, client) = pair().await;
        lot.park(server, id, None).map_err(|_| "refused").unwrap();
        clients.push(client);
    }
    lot.close();
    assert_eq!((lot.count(), gauge.get()), (0, 0));
    for client in &mut clients {
        assert!(closed(client).await);
    }
    let (server, _client) = pair().await;
    let raw = server.as_raw_fd();
    let Err((back, 9)) = lot.park(server, 9, None) else {
        panic!("a closed lot took a connection");
    };
    assert_eq!(back.as_raw_fd(), raw, "the socket came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wake_hands_back_the_connection_parked_on_that_socket() {
    let (lot, mut rx, gauge) = lot();
    let mut clients = Vec::new();
    for id in 0..300u32 {
        let (server, client) = pair().await;
        // Some with deadlines far off, some without: both kinds of entries share the slots.
        let deadline = (id % 3 == 0).then(|| Instant::now() + Duration::from_secs(60));
        lot.park(server, id, deadline)
            .map_err(|_| "refused")
            .unwrap();
        clients.push(client);
    }
    // Woken in an order unrelated to the parking, each client sending its own id.
    for round in 0..2 {
        for i in 0..300usize {
            let id = (i * 7 + round * 13) % 300;
            clients[id]
                .write_all(format!("{id};").as_bytes())
                .await
                .unwrap();
            let Seen::Woken(conn, socket) = next(&mut rx).await else {
                panic!("expired");
            };
            let (got, socket) = read_all_ready(socket).await;
            assert_eq!(got, format!("{conn};").as_bytes(), "round {round}");
            assert_eq!(conn as usize, id);
            lot.park(socket.into_std().unwrap().into(), conn, None)
                .map_err(|_| "refused")
                .unwrap();
        }
    }
    assert_eq!((lot.count(), gauge.get()), (300, 300));
}

#[tokio::test]
async fn lots_park_on_the_current_threads_lot_and_close_together() {
    let gauge = IntGauge::new("dormant", "test").unwrap();
    let lots: Lots<u32> = Lots::new(gauge.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut started = 0;
    let (a, mut ca) = pair().await;
    let (b, mut cb) = pair().await;
    for (socket, id) in [(a, 1), (b, 2)] {
        lots.park(socket, id, None, || {
            started += 1;
            Box::new(Report(tx.clone()))
        })
        .map_err(|_| "refused")
        .unwrap();
    }
    assert_eq!((started, gauge.get()), (1, 2), "one lot for the thread");
    ca.write_all(b"x").await.unwrap();
    assert!(matches!(next(&mut rx).await, Seen::Woken(1, _)));
    lots.close();
    assert!(closed(&mut cb).await);
    let (c, _cc) = pair().await;
    assert!(lots.park(c, 3, None, || unreachable!()).is_err());
    assert_eq!(gauge.get(), 0);
}

#[tokio::test]
async fn a_lot_settles_once_a_second_after_connections_join_or_leave() {
    let (lot, mut rx, _) = lot();
    let (server, mut client) = pair().await;
    let parked = Instant::now();
    lot.park(server, 1, None).map_err(|_| "refused").unwrap();
    assert!(matches!(next_seen(&mut rx).await, Seen::Settled));
    assert!(parked.elapsed() >= SETTLE);
    // Once: nothing more while nothing moves.
    tokio::time::sleep(SETTLE + Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "settled again with nothing moving");
    // A wake stirs it again.
    client.write_all(b"x").await.unwrap();
    assert!(matches!(next_seen(&mut rx).await, Seen::Woken(1, _)));
    assert!(matches!(next_seen(&mut rx).await, Seen::Settled));
}
