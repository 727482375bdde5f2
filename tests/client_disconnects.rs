//! A client that goes away is normal on the internet: the gateway counts it and logs it at
//! debug level, not as an ERROR line per closed browser tab (Pingora's default).

mod support;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn a_client_closing_early_is_counted_not_logged_as_an_error() {
    let [echo] = echoes(["a"]);
    let (addr, admin) = (free_port(), free_port());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portico.yaml");
    let body = format!(
        "routes: [{{name: api, service: web}}]\nservices: {{web: {{instances: [\"{}\"]}}}}\n",
        echo.addr
    );
    std::fs::write(&config, Gateway::config_text(addr, admin, "", &body)).unwrap();
    let log = dir.path().join("stderr.log");
    let _gw = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    wait_until(Duration::from_secs(10), "the gateway listens", || {
        std::net::TcpStream::connect(addr).is_ok() && std::net::TcpStream::connect(admin).is_ok()
    });
    let metric = || {
        sample(
            &get(admin, "/metrics", &[]).body,
            r#"portico_downstream_disconnects_total{phase="before_response"}"#,
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(metric(), 0.0, "made at zero");
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /delay/400 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    }
    wait_until(Duration::from_secs(3), "three disconnects counted", || {
        metric() == 3.0
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("\"ERROR\"") && l.contains("Downstream")),
        "{text}"
    );
}
