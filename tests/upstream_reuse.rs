//! Upstream connection reuse with Pingora's default no-steal workers (each worker thread its
//! own runtime): a pooled connection released on one worker is picked up by another without
//! being thrown away. Pingora 0.9.1 lost a race there (vendor/README.md) and closed about one
//! good connection in 3,000 reuses, logging `failed to acquire reusable stream`.

mod support;
use std::net::TcpStream;
use std::time::Duration;
use support::keepalive::Connection;
use support::*;

/// Client connections, each sending this many requests back to back.
const CLIENTS: u64 = 16;
const REQUESTS: u64 = 2_000;

#[test]
fn keep_alive_load_on_two_workers_reuses_every_pooled_connection() {
    let [origin] = echoes(["origin"]);
    let gw = Gateway::start_logged(
        &format!(
            "routes: [{{name: all, service: origin}}]\nservices:\n  origin: {{instances: [\"{}\"]}}\n",
            origin.addr
        ),
        "  threads: 2\n  work_stealing: false",
    );
    let addr = gw.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut conn = Connection::new(stream);
                (0..REQUESTS)
                    .filter(|_| conn.get("/") == Some((200, true)))
                    .count() as u64
            })
        })
        .collect();
    let ok: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(
        ok,
        CLIENTS * REQUESTS,
        "every request answered on its connection"
    );

    let opened = origin.connections();
    let new = gw.metric("portico_upstream_connections_total{kind=\"new\",service=\"origin\"}");
    eprintln!(
        "{ok} requests over {CLIENTS} client connections: {opened} upstream connections opened"
    );
    assert_eq!(
        new as u64, opened,
        "the gateway counts what the origin accepted"
    );
    assert!(
        opened <= CLIENTS * 2,
        "{opened} upstream connections for {CLIENTS} clients on 2 workers"
    );
    let log = gw.log();
    assert!(
        !log.contains("failed to acquire reusable stream"),
        "a pooled connection was thrown away:\n{log}"
    );
}
