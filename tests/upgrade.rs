//! Zero-downtime binary upgrade: under steady load — clients opening a connection per request
//! and a client keeping its connection — a new process started with `--upgrade` takes over the
//! listeners when the old one gets SIGQUIT; no request fails.

mod support;
use std::process::{Command, Stdio};
use std::time::Duration;
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
            "  upgrade_sock: \"{}\"\n  grace_period: 1s\n",
            sock.display()
        ),
    );
    let load = SteadyLoad::start(gw.addr, Duration::ZERO);
    let kept = KeepAliveLoad::start(gw.addr);
    std::thread::sleep(Duration::from_millis(300));

    let mut new = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["run", "--upgrade", "-c"])
        .arg(&gw.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The new process waits on the upgrade socket; the old one hands over on SIGQUIT.
    std::thread::sleep(Duration::from_millis(500));
    let before = load.ok();
    let kept_before = kept.ok();
    gw.signal("QUIT");
    let old_gone = gw.eventually(Duration::from_secs(15), || !gw.is_running());
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed) = load.finish();
    let (kept_ok, kept_failed, kept_connections) = kept.finish();
    eprintln!("upgrade under load: {ok} ok, {failed} failed");
    eprintln!(
        "keep-alive client: {kept_ok} ok, {kept_failed} failed over {kept_connections} connections"
    );
    assert!(old_gone, "the old process exits after handing over");
    assert!(
        ok > before + 20,
        "traffic continued after the handover: {before} -> {ok}"
    );
    assert_eq!(failed, 0, "no request failed during the upgrade");
    assert_eq!(
        kept_failed, 0,
        "the keep-alive client lost no request: its connection was closed after a response"
    );
    assert!(
        kept_ok > kept_before + 20 && kept_connections >= 2,
        "the keep-alive client moved to the new process: {kept_before} -> {kept_ok} over {kept_connections} connections"
    );
    let r = get(gw.addr, "/", &[]);
    assert_eq!(r.status, 200, "the new process serves");
    let _ = new.kill();
    let _ = new.wait();
}
