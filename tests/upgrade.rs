//! Zero-downtime binary upgrade: under steady load — clients opening a connection per request
//! and a client keeping its connection — a new process started with `--upgrade` takes over the
//! listeners when the old one gets SIGQUIT; no request fails, and a slow request that was in
//! flight on the old process at the handover finishes there.

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn an_upgrade_under_load_loses_no_request() {
    let echo = EchoServer::start("a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let gw = Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
            echo.addr
        ),
        &format!(
            "  upgrade_sock: \"{}\"\n  grace_period: 3s\n",
            sock.display()
        ),
    );
    let load = SteadyLoad::start(gw.addr, Duration::ZERO);
    let kept = KeepAliveLoad::start(gw.addr);
    assert!(
        gw.eventually(Duration::from_secs(5), || load.ok() > 20 && kept.ok() > 20),
        "the load is running"
    );

    let _new = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "--upgrade", "-c"])
            .arg(&gw.config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    );
    // The new process listens on the upgrade socket for the old one's listeners.
    assert!(
        gw.eventually(Duration::from_secs(5), || sock.exists()),
        "the new process waits on {}",
        sock.display()
    );
    // A request that takes 1.5 s, in flight on the old process when it hands over.
    let addr = gw.addr;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        (get(addr, "/delay/1500", &[]).status, started.elapsed())
    });
    assert!(
        gw.eventually(Duration::from_secs(2), || echo.requests_in_flight() == 1),
        "the slow request reached the upstream"
    );
    let before = load.ok();
    let kept_before = kept.ok();
    gw.signal("QUIT");
    let old_gone = gw.eventually(Duration::from_secs(15), || !gw.is_running());
    assert!(old_gone, "the old process exits after handing over");
    let (slow_status, slow_took) = slow.join().unwrap();
    assert_eq!(
        slow_status, 200,
        "the request in flight at the handover finished"
    );
    assert!(slow_took >= Duration::from_millis(1500), "{slow_took:?}");
    assert!(
        gw.eventually(Duration::from_secs(5), || load.ok() > before + 20
            && kept.ok() > kept_before + 20),
        "traffic continued after the handover"
    );
    let (ok, failed) = load.finish();
    let (kept_ok, kept_failed, kept_connections) = kept.finish();
    eprintln!("upgrade under load: {ok} ok, {failed} failed");
    eprintln!(
        "keep-alive client: {kept_ok} ok, {kept_failed} failed over {kept_connections} connections"
    );
    assert_eq!(failed, 0, "no request failed during the upgrade");
    assert_eq!(
        kept_failed, 0,
        "the keep-alive client lost no request: its connection was closed after a response"
    );
    assert!(
        kept_connections >= 2,
        "the keep-alive client moved to the new process over {kept_connections} connections"
    );
    let r = get(gw.addr, "/", &[]);
    assert_eq!(r.status, 200, "the new process serves");
}
