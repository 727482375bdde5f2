//! Idle HTTP/1 connections give up their request state after a second and keep everything a
//! client can see: the next request on the connection is answered, the keep-alive timeout
//! still counts the whole idle time, bytes of a pipelined request already read survive the
//! idle second, a request head that stalls after waking the connection is still cut at the
//! header deadline, and at shutdown an idle connection may still send one more request. A
//! keep-alive of `0s` turns keep-alive off; one under a second is a second, never unlimited.
//! A cleartext connection idle for `limits.dormant_after` goes dormant (its socket alone, no
//! task): it is served when its request comes, cut at its deadline, counted under the
//! connection limits until it closes, closed at shutdown, and forgotten when its client hangs
//! up. `0s` keeps every connection in its task. Without free descriptors a connection stays
//! awake and is served, and the warning is written once for all of them.

mod support;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::keepalive::Connection;
use support::*;

/// Longer than the second after which an idle connection sheds its request state.
const PAST_SHEDDING: Duration = Duration::from_millis(1600);

fn connect(addr: SocketAddr) -> Connection {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Connection::new(s)
}

fn one_route(upstream: SocketAddr) -> String {
    format!(
        "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{upstream}\"]}}\n"
    )
}

fn idle(gw: &Gateway) -> f64 {
    gw.metric_sum("portico_downstream_connections_idle", &[])
}

fn dormant(gw: &Gateway) -> f64 {
    gw.metric("portico_downstream_connections_dormant")
}

fn open(gw: &Gateway) -> f64 {
    gw.metric_sum("portico_downstream_connections", &[])
}

/// The echoed path of a response from the echo upstream.
fn echoed_path(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["path"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_idle_connection_sheds_its_request_state_and_serves_the_next_request() {
    let up = EchoServer::start("a").unwrap();
    let gw =
        Gateway::start_with_server(&one_route(up.addr), "  limits: {keepalive_timeout: 30s}\n");
    let mut conn = connect(gw.addr);
    for round in 0..3 {
        let path = format!("/round/{round}");
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = conn
            .read_response()
            .unwrap_or_else(|| panic!("round {round}: the connection was closed"));
        assert_eq!((r.status, r.keeps_alive()), (200, true), "round {round}");
        assert_eq!(echoed_path(&r.body), path);
        assert!(
            gw.eventually(Duration::from_secs(5), || idle(&gw) == 1.0),
            "round {round}: the connection never went idle: {}",
            idle(&gw)
        );
        assert_eq!(dormant(&gw), 0.0, "round {round}: dormant before 5 s");
        std::thread::sleep(PAST_SHEDDING - Duration::from_secs(1));
    }
    drop(conn);
    assert!(gw.eventually(Duration::from_secs(3), || idle(&gw) == 0.0
        && gw.metric_sum("portico_downstream_connections", &[]) == 0.0));
}

/// Reads until the server closes the connection; how long that took from now.
/// Asserts that the gateway closes `conn`, without another response, within `window` of now
/// (`what` names the case in the failure message).
fn assert_closed_within(conn: &mut Connection, window: std::ops::Range<Duration>, what: &str) {
    let start = Instant::now();
    assert!(
        conn.read_response().is_none(),
        "{what}: an unexpected response"
    );
    let took = start.elapsed();
    assert!(
        window.contains(&took),
        "{what}: closed after {took:?}, expected {window:?}"
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_refused_request_gets_the_configured_keepalive_whatever_the_client_asks() {
    let up = EchoServer::start("a").unwrap();
    // Only /api is routed: other paths get a gateway-made 404 before the route is known.
    let gw = Gateway::start_with_server(
        &format!("routes:\n  - {{name: api, match: {{path_prefix: /api}}, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n", up.addr),
        "  limits: {keepalive_timeout: 2s}\n",
    );
    // Pingora sets an HTTP/1.1 request's keep-alive to no limit, or to the client's own
    // `Keep-Alive: timeout=`, as it parses the head; a refused request must not keep that.
    for ask in ["", "Keep-Alive: timeout=3600\r\n"] {
        let mut conn = connect(gw.addr);
        assert_eq!(conn.get("/api"), Some((200, true)));
        conn.send(format!("GET /nowhere HTTP/1.1\r\nHost: t\r\n{ask}\r\n").as_bytes())
            .unwrap();
        let r = conn.read_response().expect("the 404");
        assert_eq!((r.status, r.keeps_alive()), (404, true));
        assert_closed_within(&mut conn, ms(1800)..ms(3500), &format!("asking {ask:?}"));
    }
}

#[test]
fn the_keepalive_timeout_counts_the_whole_idle_time_across_the_shedding() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(&one_route(up.addr), "  limits: {keepalive_timeout: 3s}\n");
    let mut conn = connect(gw.addr);
    assert_eq!(conn.get("/"), Some((200, true)));
    assert_closed_within(&mut conn, ms(2800)..ms(3700), "3 s keep-alive");
}

#[test]
fn a_zero_keepalive_closes_after_each_response_and_a_sub_second_one_still_ends() {
    let up = EchoServer::start("a").unwrap();
    let off =
        Gateway::start_with_server(&one_route(up.addr), "  limits: {keepalive_timeout: 0s}\n");
    let mut conn = connect(off.addr);
    assert_eq!(conn.get("/"), Some((200, false)), "Connection: close");
    assert!(conn.read_response().is_none(), "and closed");

    // Pingora counts whole seconds and takes 0 for no limit: 300ms is a second, not forever.
    let short = Gateway::start_with_server(
        &one_route(up.addr),
        "  limits: {keepalive_timeout: 300ms}\n",
    );
    let mut conn = connect(short.addr);
    assert_eq!(conn.get("/"), Some((200, true)));
    assert_closed_within(&mut conn, ms(0)..ms(2500), "300ms keep-alive");
}

#[test]
fn a_pipelined_request_read_with_the_previous_one_survives_an_idle_second() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&one_route(up.addr));
    let mut conn = connect(gw.addr);
    // The second request's first bytes arrive with the first request: they are read with it,
    // and must still be there when the rest comes after more than a second.
    conn.send(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /sec")
        .unwrap();
    let r = conn.read_response().expect("the first response");
    assert_eq!(echoed_path(&r.body), "/first");
    std::thread::sleep(PAST_SHEDDING);
    conn.send(b"ond HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = conn.read_response().expect("the second response");
    assert_eq!((r.status, echoed_path(&r.body).as_str()), (200, "/second"));
}

#[test]
fn a_head_that_wakes_an_idle_connection_is_read_whole_or_cut_at_the_header_deadline() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(up.addr),
        "  limits: {header_timeout: 1s, keepalive_timeout: 30s}\n",
    );
    let mut conn = connect(gw.addr);
    assert_eq!(conn.get("/"), Some((200, true)));
    std::thread::sleep(PAST_SHEDDING);
    // A head in three pieces, the first only a few bytes: read on after the idle wait's read.
    conn.send(b"GE").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.send(b"T /split HTTP/1.1\r\nHost: t\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.send(b"\r\n").unwrap();
    let r = conn.read_response().expect("the split request's response");
    assert_eq!((r.status, echoed_path(&r.body).as_str()), (200, "/split"));

    std::thread::sleep(PAST_SHEDDING);
    let before = gw.metric("portico_downstream_slow_client_timeouts_total{phase=\"request_head\"}");
    conn.send(b"GET /never-finished HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    // Cut at the 1 s header deadline from its first byte.
    assert_closed_within(&mut conn, ms(900)..ms(3000), "a stalled head");
    assert_eq!(
        gw.metric("portico_downstream_slow_client_timeouts_total{phase=\"request_head\"}"),
        before + 1.0
    );
}

#[test]
fn at_shutdown_an_idle_connection_may_send_one_more_request_and_the_rest_are_closed() {
    // Awake in their tasks, and dormant.
    for dormant_after in ["0s", "1s"] {
        let up = EchoServer::start("a").unwrap();
        let gw = Gateway::start_with_server(
            &one_route(up.addr),
            &format!(
                "  grace_period: 10s\n  limits: {{keepalive_timeout: 30s, dormant_after: {dormant_after}}}\n"
            ),
        );
        let asleep = if dormant_after == "0s" { 0.0 } else { 2.0 };
        let mut sender = connect(gw.addr);
        let mut silent = connect(gw.addr);
        assert_eq!(sender.get("/"), Some((200, true)));
        assert_eq!(silent.get("/"), Some((200, true)));
        assert!(gw.eventually(Duration::from_secs(5), || idle(&gw) == 2.0
            && dormant(&gw) == asleep));
        let start = Instant::now();
        gw.signal("TERM");
        std::thread::sleep(Duration::from_millis(200));
        sender
            .send(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = sender
            .read_response()
            .expect("the request sent in the drain window");
        assert_eq!(r.status, 200, "{dormant_after}");
        assert!(
            !r.keeps_alive(),
            "{dormant_after}: it says Connection: close: {:?}",
            r.headers
        );
        assert!(
            silent.read_response().is_none(),
            "{dormant_after}: the silent one is closed"
        );
        assert!(gw.eventually(Duration::from_secs(5), || !gw.is_running()));
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "{dormant_after}: exit took {took:?}"
        );
    }
}

#[test]
fn a_dormant_connection_is_served_when_its_request_comes_and_forgotten_when_its_client_leaves() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(up.addr),
        "  limits: {keepalive_timeout: 30s, dormant_after: 2500ms}\n",
    );
    let mut conn = connect(gw.addr);
    for round in 0..3 {
        let path = format!("/round/{round}");
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = conn.read_response().expect("answered");
        assert_eq!((r.status, r.keeps_alive()), (200, true), "round {round}");
        assert_eq!(echoed_path(&r.body), path);
        // Past its shedding second, idle in its task (a task woken from the lot after the
        // first round): counted once, not yet dormant.
        std::thread::sleep(PAST_SHEDDING);
        assert_eq!((idle(&gw), dormant(&gw)), (1.0, 0.0), "round {round}");
        assert!(
            gw.eventually(Duration::from_secs(5), || dormant(&gw) == 1.0),
            "round {round}: never dormant"
        );
        assert_eq!((idle(&gw), open(&gw)), (1.0, 1.0), "still idle and open");
    }
    drop(conn);
    assert!(
        gw.eventually(Duration::from_secs(5), || dormant(&gw) == 0.0
            && idle(&gw) == 0.0
            && open(&gw) == 0.0),
        "the hung-up connection was forgotten: dormant {}, idle {}, open {}",
        dormant(&gw),
        idle(&gw),
        open(&gw)
    );
}

#[test]
fn a_silent_new_connection_goes_dormant_and_is_still_cut_at_the_header_deadline() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(up.addr),
        "  limits: {header_timeout: 3s, dormant_after: 1s}\n",
    );
    let series = "portico_downstream_slow_client_timeouts_total{phase=\"request_head\"}";
    let before = gw.metric(series);
    let mut conn = connect(gw.addr);
    assert!(gw.eventually(Duration::from_secs(3), || dormant(&gw) == 1.0));
    assert_closed_within(&mut conn, ms(1000)..ms(3000), "a silent connection");
    assert_eq!(gw.metric(series), before + 1.0);
    assert!(gw.eventually(Duration::from_secs(3), || dormant(&gw) == 0.0
        && open(&gw) == 0.0));
    // Its first request, sent late but within the deadline, is served.
    let mut late = connect(gw.addr);
    assert!(gw.eventually(Duration::from_secs(3), || dormant(&gw) == 1.0));
    assert_eq!(late.get("/late"), Some((200, true)));
}

#[test]
fn a_dormant_connection_holds_its_place_under_the_limits_until_its_keepalive_ends() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(up.addr),
        "  limits: {max_connections_per_ip: 1, keepalive_timeout: 3s, dormant_after: 1s}\n",
    );
    let mut first = connect(gw.addr);
    assert_eq!(first.get("/"), Some((200, true)));
    assert!(gw.eventually(Duration::from_secs(5), || dormant(&gw) == 1.0));
    let mut second = connect(gw.addr);
    assert!(
        second.read_response().is_none(),
        "refused while the first sleeps"
    );
    assert_closed_within(
        &mut first,
        ms(0)..ms(3000),
        "the dormant one at its keep-alive",
    );
    assert!(gw.eventually(Duration::from_secs(3), || open(&gw) == 0.0));
    let mut third = connect(gw.addr);
    assert_eq!(
        third.get("/"),
        Some((200, true)),
        "its place was given back"
    );
}

#[test]
fn many_dormant_connections_each_wake_to_their_own_request() {
    many_dormant_connections("");
}

#[test]
fn dormant_connections_wake_on_the_work_stealing_runtime_too() {
    many_dormant_connections("  threads: 2\n  work_stealing: true\n");
}

/// 200 connections through a gateway with `server` lines added: each goes dormant after a
/// request, all send a second request before any is read, each gets its own answer.
fn many_dormant_connections(server: &str) {
    const N: usize = 200;
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(
        &one_route(up.addr),
        &format!("{server}  limits: {{keepalive_timeout: 30s, dormant_after: 2s}}\n"),
    );
    let mut conns: Vec<Connection> = (0..N).map(|_| connect(gw.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        assert_eq!(conn.get(&format!("/first/{i}")), Some((200, true)));
    }
    assert!(
        gw.eventually(Duration::from_secs(10), || dormant(&gw) == N as f64),
        "dormant: {}",
        dormant(&gw)
    );
    // All sent before any is read, in an order unrelated to the parking.
    let order: Vec<usize> = (0..N).map(|i| (i * 37 + 11) % N).collect();
    for &i in &order {
        conns[i]
            .send(format!("GET /second/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
    }
    for &i in &order {
        let r = conns[i].read_response().expect("answered");
        assert_eq!(
            (r.status, echoed_path(&r.body)),
            (200, format!("/second/{i}"))
        );
    }
    assert_eq!(open(&gw), N as f64);
}

/// Sets `pid`'s descriptor limit (soft and hard) to `n`.
fn set_descriptor_limit(pid: u32, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: plain system call on valid pointers; the old limit is not asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Descriptor exhaustion, as an operator may meet it: an idle connection whose socket cannot
/// be duplicated stays awake in its task and is served as before, and the warning is written
/// once for the storm, not once per connection.
#[test]
fn without_free_descriptors_idle_connections_stay_awake_and_the_log_is_not_flooded() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_logged(
        &one_route(up.addr),
        "  limits: {keepalive_timeout: 30s, dormant_after: 1s}\n",
    );
    let mut conns: Vec<Connection> = (0..30).map(|_| connect(gw.addr)).collect();
    for c in &mut conns {
        assert_eq!(c.get("/before").map(|r| r.0), Some(200));
    }
    // Below the limit only standard input, output and error: every `dup` fails (EMFILE), also
    // if the gateway closes some other descriptor meanwhile, and every descriptor already open
    // keeps working.
    set_descriptor_limit(gw.pid(), 3);
    std::thread::sleep(Duration::from_millis(2500));
    for c in &mut conns {
        assert_eq!(
            c.get("/after").map(|r| r.0),
            Some(200),
            "served though it could not go dormant"
        );
    }
    let log = gw.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot be duplicated"))
        .count();
    assert_eq!(
        warnings, 1,
        "one line for 30 connections that could not go dormant:\n{log}"
    );
}
