//! Admin API, reload, CLI validation and the demo, through the real binary.

mod support;
use std::process::Command;
use std::time::Duration;
use support::*;

fn config(up: &EchoServer, route_name: &str) -> String {
    format!("routes:\n  - {{name: {route_name}, service: echo, match: {{path_prefix: /api}}}}\nservices:\n  echo:\n    instances: [\"{}\"]\n", up.addr)
}

fn rewrite_config(gw: &Gateway, body: &str) {
    let text = Gateway::config_text(gw.addr, gw.admin, "", body);
    std::fs::write(&gw.config_path, text).unwrap();
}

#[test]
fn reload_swaps_a_valid_file_and_keeps_the_old_config_on_an_invalid_one() {
    let up = EchoServer::start("e").unwrap();
    let gw = Gateway::start(&config(&up, "first"));
    let hash_before = gw.admin("GET", "/admin/config", &[]).json()["hash"].clone();

    rewrite_config(&gw, &config(&up, "second").replace("/api", "/v2"));
    let r = gw.admin("POST", "/admin/reload", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gw.get("/v2/x").status, 200);
    assert_eq!(gw.get("/api/x").status, 404);
    let cfg = gw.admin("GET", "/admin/config", &[]).json();
    assert_ne!(cfg["hash"], hash_before);
    assert_eq!(cfg["last_reload"]["ok"], true);
    assert_eq!(gw.metric("portico_config_last_reload_successful"), 1.0);

    rewrite_config(
        &gw,
        &config(&up, "third").replace("service: echo", "service: ecko"),
    );
    let r = gw.admin("POST", "/admin/reload", &[]);
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("routes[0].service: unknown service \"ecko\""),
        "{}",
        r.body
    );
    assert_eq!(
        gw.get("/v2/x").status,
        200,
        "the previous config must keep serving"
    );
    let cfg = gw.admin("GET", "/admin/config", &[]).json();
    assert_eq!(cfg["last_reload"]["ok"], false);
    assert!(
        cfg["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains(":8:28: routes[0].service"),
        "error names the line: {cfg}"
    );
    assert_eq!(gw.metric("portico_config_last_reload_successful"), 0.0);
    assert_eq!(
        gw.metric("portico_config_reloads_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("portico_config_reloads_total{result=\"success\"}"),
        1.0
    );
}

#[test]
fn sighup_reloads_the_file() {
    let up = EchoServer::start("e").unwrap();
    let gw = Gateway::start(&config(&up, "first"));
    rewrite_config(&gw, &config(&up, "first").replace("/api", "/hup"));
    gw.signal("HUP");
    assert!(gw.eventually(Duration::from_secs(5), || gw.get("/hup/x").status == 200));
}

#[test]
fn reload_keeps_health_state_of_unchanged_services() {
    let [a, b] = echoes(["a", "b"]);
    let body = format!(
        "routes:\n  - {{name: r, service: svc}}\nservices:\n  svc:\n    instances: [\"{}\", \"{}\"]\n    health_check: {{interval: 30s, timeout: 200ms, rise: 1, fall: 1}}\n",
        a.addr, b.addr
    );
    b.state
        .healthy
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let gw = Gateway::start(&body);
    let gauge = format!(
        "portico_upstream_instance_healthy{{address=\"{}\",service=\"svc\"}}",
        b.addr
    );
    assert!(gw.eventually(Duration::from_secs(3), || gw.metric(&gauge) == 0.0));
    rewrite_config(&gw, &body.replace("name: r,", "name: renamed,"));
    assert_eq!(gw.admin("POST", "/admin/reload", &[]).status, 200);
    // With a 30 s interval no new probe runs: only kept state can keep b out.
    for _ in 0..6 {
        assert_eq!(gw.get("/").instance().as_deref(), Some("a"));
    }
}

#[test]
fn reload_removes_the_series_of_instances_and_routes_that_left() {
    let [a, b] = echoes(["a", "b"]);
    let body = format!("routes:\n  - {{name: old-route, service: svc}}\nservices:\n  svc:\n    instances: [\"{}\", \"{}\"]\n", a.addr, b.addr);
    let gw = Gateway::start(&body);
    assert_eq!(gw.get("/").status, 200);
    let gauge = format!(
        "portico_upstream_instance_healthy{{address=\"{}\",service=\"svc\"}}",
        b.addr
    );
    assert!(gw.admin("GET", "/metrics", &[]).body.contains(&gauge));
    let next = body
        .replace(&format!(", \"{}\"", b.addr), "")
        .replace("old-route", "new-route");
    rewrite_config(&gw, &next);
    assert_eq!(gw.admin("POST", "/admin/reload", &[]).status, 200);
    let metrics = gw.admin("GET", "/metrics", &[]).body;
    assert!(
        !metrics.contains(&gauge),
        "series of the removed instance remains"
    );
    assert!(
        !metrics.contains("route=\"old-route\""),
        "series of the removed route remain"
    );
    assert!(
        metrics.contains("portico_upstream_instances{service=\"svc\"} 1"),
        "{metrics}"
    );
}

#[test]
fn admin_api_requires_the_bearer_token_when_configured() {
    let up = EchoServer::start("e").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        format!("server:\n  listen: [\"{addr}\"]\n  admin: {{listen: \"{admin}\", token: \"${{TEST_ADMIN_TOKEN}}\"}}\n{}", config(&up, "r")),
    )
    .unwrap();
    let _child = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&path)
            .env("TEST_ADMIN_TOKEN", "s3cret"),
    );
    let admin: std::net::SocketAddr = admin.parse().unwrap();
    let mut up_now = false;
    for _ in 0..300 {
        if std::net::TcpStream::connect(admin).is_ok() {
            up_now = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(up_now);
    assert_eq!(request(admin, "GET", "/admin/routes", &[], "").status, 401);
    assert_eq!(
        request(
            admin,
            "GET",
            "/admin/routes",
            &[("Authorization", "Bearer wrong")],
            ""
        )
        .status,
        401
    );
    assert_eq!(request(admin, "POST", "/admin/reload", &[], "").status, 401);
    let ok = request(
        admin,
        "GET",
        "/admin/routes",
        &[("Authorization", "Bearer s3cret")],
        "",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()[0]["name"], "r");
    let cfg = request(
        admin,
        "GET",
        "/admin/config",
        &[("Authorization", "Bearer s3cret")],
        "",
    )
    .json();
    assert_eq!(cfg["config"]["server"]["admin"]["token"], "<redacted>");
    assert_eq!(
        request(admin, "GET", "/healthz", &[], "").status,
        200,
        "probes need no token"
    );
    assert_eq!(
        request(admin, "GET", "/metrics", &[], "").status,
        200,
        "scrapes need no token"
    );
}

#[test]
fn validate_prints_every_mistake_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "routes:\n  - name: orders\n    service: tradng\n    match: {path_prefix: api}\nservices:\n  trading:\n    instances: [\"10.0.0.1\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:3:14: routes[0].service: unknown service \"tradng\"; did you mean \"trading\"?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:4:26: routes[0].match.path_prefix: must start with '/'"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:7:17: services.trading.instances[0]: bad address"
        )),
        "{err}"
    );

    std::fs::write(
        &path,
        "routes:\n  - {name: a, service: s}\nservices:\n  s:\n    instances: [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_an_unknown_key_a_bad_reference_address_and_duration_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("four.yaml");
    // Before one compile step, the unknown key stopped everything else from being seen.
    std::fs::write(
        &path,
        "server:
  listen: [\"127.0.0.1:8080\"]
  treads: 2
routes:
  - name: orders
    service: tradng
services:
  trading:
    instances: [\"10.0.0.1:80\", \"nonsense\"]
    connect_timeout: soon
",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}:3:3: server.treads: unknown field `treads`, expected one of `listen`, `tls`, `h2c`, `threads`, `work_stealing`, `admin`, `trusted_proxies`, `grace_period`, `shutdown_timeout`, `limits`, `upgrade_sock` (did you mean `threads`?)"),
            format!("{file}:6:14: routes[0].service: unknown service \"tradng\"; did you mean \"trading\"?"),
            format!("{file}:9:32: services.trading.instances[1]: bad address \"nonsense\": expected HOST:PORT"),
            format!("{file}:10:22: services.trading.connect_timeout: invalid duration \"soon\" (expected number at 0); use e.g. \"250ms\", \"10s\", \"2m\""),
        ],
        "{err}"
    );
}

#[test]
fn the_demo_serves_both_upstreams_and_counts_requests() {
    let (addr, admin) = (free_port(), free_port());
    let _child = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "--demo"])
            .env("PORTICO_DEMO_LISTEN", format!("127.0.0.1:{addr}"))
            .env("PORTICO_DEMO_ADMIN", format!("127.0.0.1:{admin}"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null()),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{addr}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let mut instances = std::collections::HashSet::new();
    for _ in 0..300 {
        if std::net::TcpStream::connect(addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..4 {
        let r = get(addr, "/api/hello", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], "/hello");
        instances.insert(r.instance().unwrap());
    }
    let limited: Vec<u16> = (0..6).map(|_| get(addr, "/limited", &[]).status).collect();
    assert_eq!(
        limited,
        [200, 200, 200, 200, 200, 429],
        "the demo's 5 per 10 s limit"
    );
    let metrics = request(admin, "GET", "/metrics", &[], "").body;
    assert_eq!(instances.len(), 2, "both demo upstreams answer in turn");
    assert!(
        metrics.contains("portico_http_requests_total{code=\"200\",method=\"GET\",protocol=\"h1\",route=\"demo-api\",source=\"upstream\"} 4"),
        "{metrics}"
    );
}

#[test]
fn a_sighup_while_starting_does_not_end_the_process() {
    let up = EchoServer::start("e").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, admin): (std::net::SocketAddr, std::net::SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let path = dir.path().join("portico.yaml");
    std::fs::write(
        &path,
        Gateway::config_text(addr, admin, "", &config(&up, "first")),
    )
    .unwrap();
    let mut p = Process::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null()),
    );
    // Reload signals from the moment the process ignores SIGHUP (per /proc; before that the
    // dynamic loader is still running and no program can help it) until the gateway answers.
    // Polled every millisecond: the window before the reloader's handler replaces the
    // disposition is a few milliseconds at least (compile, bootstrap, bind).
    let status = format!("/proc/{}/status", p.0.id());
    let ignores_hup = || {
        std::fs::read_to_string(&status).is_ok_and(|s| {
            s.lines().filter(|l| l.starts_with("SigIgn:")).any(|l| {
                let mask = l.split_whitespace().nth(1).unwrap_or("0");
                u64::from_str_radix(mask, 16).unwrap_or(0) & 1 == 1
            })
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ignores_hup() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never ignored SIGHUP while starting"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ready = false;
    while !ready && std::time::Instant::now() < deadline {
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &p.0.id().to_string()])
            .status();
        assert!(
            p.0.try_wait().unwrap().is_none(),
            "a SIGHUP during start ended the gateway"
        );
        ready =
            std::net::TcpStream::connect(admin).is_ok() && get(admin, "/readyz", &[]).status == 200;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(ready);
    assert_eq!(get(addr, "/api/x", &[]).status, 200);
    assert!(p.0.try_wait().unwrap().is_none());
}
