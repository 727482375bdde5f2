//! The operational log's filter changes while the gateway runs: `log.level` applies at start
//! when `RUST_LOG` is unset, `PUT /admin/log-level` swaps it (a bad filter is a 400 that
//! changes nothing), and a reload that changes `log.level` applies the new one.

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// DEBUG lines in the log written so far.
fn debug_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"level\":\"DEBUG\""))
        .count()
}

#[test]
fn the_log_filter_changes_at_runtime_and_on_reload() {
    let echo = EchoServer::start("a").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, admin) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let body = |level: &str| {
        format!(
            "log: {{level: \"{level}\"}}\nroutes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
            echo.addr
        )
    };
    let config = dir.path().join("portico.yaml");
    std::fs::write(
        &config,
        Gateway::config_text(addr, admin, "", &body("warn")),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let _gateway = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && !(std::net::TcpStream::connect(admin).is_ok()
            && get(admin, "/readyz", &[]).status == 200)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let level = || get(admin, "/admin/log-level", &[]).json()["level"].clone();
    assert_eq!(level(), "warn", "log.level applies when RUST_LOG is unset");
    assert_eq!(get(addr, "/x", &[]).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(debug_lines(&log), 0, "nothing below warn yet");

    // A bad filter is refused whole and changes nothing.
    for bad in ["portico=loud", "", "info/secret"] {
        let r = request(admin, "PUT", "/admin/log-level", &[], bad);
        assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    assert_eq!(level(), "warn");

    let r = request(
        admin,
        "PUT",
        "/admin/log-level",
        &[],
        "{\"level\": \"debug\"}",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["previous"], "warn");
    assert_eq!(get(addr, "/x", &[]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while debug_lines(&log) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(debug_lines(&log) > 0, "debug lines once the filter says so");

    // Text bodies work too; a reload that changes log.level wins over the runtime change.
    let r = request(
        admin,
        "PUT",
        "/admin/log-level",
        &[],
        "info,portico::proxy=debug",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(level(), "info,portico::proxy=debug");
    std::fs::write(
        &config,
        Gateway::config_text(addr, admin, "", &body("error")),
    )
    .unwrap();
    assert_eq!(request(admin, "POST", "/admin/reload", &[], "").status, 200);
    assert_eq!(level(), "error");
    let quiet = debug_lines(&log);
    assert_eq!(get(addr, "/x", &[]).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(debug_lines(&log), quiet, "no debug lines at error level");

    // A reload that leaves log.level alone keeps whatever is in force.
    assert_eq!(
        request(admin, "PUT", "/admin/log-level", &[], "warn").status,
        200
    );
    assert_eq!(request(admin, "POST", "/admin/reload", &[], "").status, 200);
    assert_eq!(level(), "warn");
}

#[test]
fn validate_locates_a_bad_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portico.yaml");
    std::fs::write(
        &config,
        "log: {level: \"portico=chatty\"}\nroutes: [{name: api, service: web}]\nservices: {web: {instances: [\"127.0.0.1:1\"]}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("log.level") && text.contains("chatty"),
        "{text}"
    );
    assert!(text.contains(":1:"), "located: {text}");
}
