//! What an orchestrator sees: a listener that cannot start ends the process (exit 2, never
//! ready), a bad TLS pair is refused before anything listens, SIGTERM ends an idle gateway at
//! once and a busy one as soon as its requests are done.

mod support;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A child process killed when the test ends, whatever happens.
/// Waits up to `timeout` for the process to exit; its status code.
fn exit_code(p: &mut Process, timeout: Duration) -> Option<i32> {
    p.exit_code(timeout)
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("portico.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn body(upstream: SocketAddr) -> String {
    format!(
        "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{upstream}\"]}}\n"
    )
}

#[test]
fn a_proxy_port_in_use_ends_the_process_with_exit_2_and_it_is_never_ready() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &Gateway::config_text(addr, admin, "", &body("127.0.0.1:1".parse().unwrap())),
    );
    let mut p = Process(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ready_seen = false;
    while Instant::now() < deadline && p.0.try_wait().unwrap().is_none() {
        if TcpStream::connect(admin).is_ok() {
            ready_seen |= get(admin, "/readyz", &[]).status == 200;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(exit_code(&mut p, Duration::from_secs(1)), Some(2));
    assert!(
        !ready_seen,
        "/readyz said ready while the proxy port was taken"
    );
    let mut stderr = String::new();
    p.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(
        errors[0].contains(&format!("cannot listen on {addr}")) && errors[0].contains("in use"),
        "{}",
        errors[0]
    );
    assert!(
        !stderr.contains("portico proxy listening on"),
        "listening is logged only after the bind: {stderr}"
    );
    drop(taken);
}

#[test]
fn readyz_turns_ready_once_the_listeners_are_bound() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start(&body(up.addr));
    let r = gw.admin("GET", "/readyz", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ready"], true);
}

/// A self-signed pair, and the key of a second pair that does not match it.
fn tls_files(dir: &std::path::Path) -> (String, String, String) {
    let (cert, key) = support::tls::self_signed(dir, "a");
    let (_, other_key) = support::tls::self_signed(dir, "b");
    (cert, key, other_key)
}

#[test]
fn a_key_that_does_not_match_its_certificate_fails_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key, other_key) = tls_files(dir.path());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls_port = free_port();
    let extra = format!(
        "  tls:\n    - {{listen: \"127.0.0.1:{tls_port}\", cert: \"{cert}\", key: \"{other_key}\"}}\n"
    );
    let config = write_config(
        &dir,
        &Gateway::config_text(addr, admin, &extra, &body("127.0.0.1:1".parse().unwrap())),
    );
    let validate = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert!(
        stderr.contains("portico.yaml:7:") && stderr.contains("server.tls[0].key: key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not belong to certificate"),
        "{stderr}"
    );

    let mut run = Process(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(exit_code(&mut run, Duration::from_secs(10)), Some(1));
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing was left listening"
    );
}

#[test]
fn sigterm_ends_an_idle_gateway_well_inside_its_grace_period() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(&body(up.addr), "  grace_period: 10s\n");
    assert_eq!(gw.get("/").status, 200);
    let start = Instant::now();
    gw.signal("TERM");
    assert!(gw.eventually(Duration::from_secs(5), || !gw.is_running()));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "idle shutdown took {took:?}");
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits() {
    let up = EchoServer::start("a").unwrap();
    let gw = Gateway::start_with_server(&body(up.addr), "  grace_period: 10s\n");
    let addr = gw.addr;
    let slow = std::thread::spawn(move || get(addr, "/delay/1500", &[]));
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    gw.signal("TERM");
    let r = slow.join().unwrap();
    assert_eq!(
        r.status, 200,
        "the request in flight was finished: {}",
        r.body
    );
    assert!(gw.eventually(Duration::from_secs(5), || !gw.is_running()));
    let took = start.elapsed();
    assert!(
        took > Duration::from_millis(1000) && took < Duration::from_millis(3500),
        "exit follows the last request, not the grace period: {took:?}"
    );
}
