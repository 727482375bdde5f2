//! Zero-downtime binary upgrade: under steady load, a new process started with `--upgrade`
//! takes over the listeners when the old one gets SIGQUIT; no request fails.

mod support;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
            "  upgrade_sock: \"{}\"\n  grace_period: 1s\n",
            sock.display()
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), gw.addr);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = get(addr, "/", &[]);
                if r.status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
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
    let before = ok.load(Ordering::Relaxed);
    gw.signal("QUIT");
    let old_gone = gw.eventually(Duration::from_secs(15), || !gw.is_running());
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("upgrade under load: {ok} ok, {failed} failed");
    assert!(old_gone, "the old process exits after handing over");
    assert!(
        ok > before + 20,
        "traffic continued after the handover: {before} -> {ok}"
    );
    assert_eq!(failed, 0, "no request failed during the upgrade");
    let r = get(gw.addr, "/", &[]);
    assert_eq!(r.status, 200, "the new process serves");
    let _ = new.kill();
    let _ = new.wait();
}
