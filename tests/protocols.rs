//! TLS (self-signed certificate made by the test), HTTP/2 via ALPN and h2c, TLS to upstreams
//! with verification on by default, WebSocket pass-through, and a TLS connection's idle wait.

mod support;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::*;

/// A self-signed certificate for `localhost` and 127.0.0.1, as (dir, cert, key).
fn certificate() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::tls::self_signed(dir.path(), "cert");
    (dir, cert, key)
}

/// `curl` printing "<http version> <status>".
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Portico with a TLS listener (a self-signed certificate for `localhost`) in front of `echo`.
struct TlsGateway {
    gw: Gateway,
    port: u16,
    cert: String,
    _dir: tempfile::TempDir,
}

impl TlsGateway {
    fn start(echo: &EchoServer, server_extra: &str) -> Self {
        let (dir, cert, key) = certificate();
        let port = free_port();
        let gw = Gateway::start_with_server(
            &routes(echo),
            &format!(
                "  tls: [{{listen: \"127.0.0.1:{port}\", cert: \"{cert}\", key: \"{key}\"}}]\n{server_extra}"
            ),
        );
        Self {
            gw,
            port,
            cert,
            _dir: dir,
        }
    }

    /// curl arguments that reach `path` over TLS and trust the test certificate.
    fn curl_args(&self, path: &str) -> [String; 5] {
        [
            "--cacert".into(),
            self.cert.clone(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.port),
            format!("https://localhost:{}{path}", self.port),
        ]
    }
}

fn routes(echo: &EchoServer) -> String {
    format!(
        "routes:\n  - {{name: all, service: s}}\nservices:\n  s: {{instances: [\"{}\"]}}\n",
        echo.addr
    )
}

#[test]
fn tls_listeners_speak_http2_and_http1_and_h2c_is_optional() {
    let echo = EchoServer::start("a").unwrap();
    let tls = TlsGateway::start(&echo, "  h2c: true\n");
    let [c, cert, r, resolve, url] = tls.curl_args("/x");
    assert_eq!(curl(&["--http2", &c, &cert, &r, &resolve, &url]), "2 200");
    assert_eq!(
        curl(&["--http1.1", &c, &cert, &r, &resolve, &url]),
        "1.1 200"
    );
    let plain = format!("http://{}/y", tls.gw.addr);
    assert_eq!(curl(&["--http2-prior-knowledge", &plain]), "2 200", "h2c");
    assert_eq!(curl(&[&plain]), "1.1 200");
    // Connections and requests by listener and protocol: one of each kind on each listener.
    let (gw, tls_listener) = (&tls.gw, format!("listener=\"127.0.0.1:{}\"", tls.port));
    let plain_listener = format!("listener=\"{}\"", gw.addr);
    for (listener, protocol) in [
        (&tls_listener, "protocol=\"h2\""),
        (&tls_listener, "protocol=\"h1\""),
        (&plain_listener, "protocol=\"h2\""),
        (&plain_listener, "protocol=\"h1\""),
    ] {
        let accepted = gw.metric_sum(
            "portico_downstream_connections_accepted_total",
            &[listener, protocol],
        );
        assert_eq!(accepted, 1.0, "{listener} {protocol}");
    }
    let requests = |p: &str| gw.metric_sum("portico_http_requests_total", &[p]);
    assert_eq!(requests("protocol=\"h2\""), 2.0);
    assert_eq!(requests("protocol=\"h1\""), 2.0);
    assert!(gw.eventually(Duration::from_secs(3), || {
        gw.metric_sum("portico_downstream_connections", &[]) == 0.0
    }));
    // Without `h2c: true` the HTTP/2 preface is not a request Portico accepts in clear.
    let no_h2c = Gateway::start(&routes(&echo));
    let plain = format!("http://{}/y", no_h2c.addr);
    assert_eq!(
        curl(&["--http2-prior-knowledge", &plain]),
        "0 000",
        "h2c is off"
    );
    assert_eq!(curl(&[&plain]), "1.1 200");
}

#[test]
fn upstream_tls_verifies_certificates_unless_told_not_to() {
    let echo = EchoServer::start("a").unwrap();
    // A TLS front (Portico itself) standing in for a TLS upstream.
    let front = TlsGateway::start(&echo, "");
    let tls_port = front.port;
    let via = |extra: &str| {
        Gateway::start(&format!(
            "routes:\n  - {{name: all, service: t}}\nservices:\n  t:\n    instances: [\"127.0.0.1:{tls_port}\"]\n    tls: true\n    sni: localhost\n{extra}"
        ))
    };
    let verified = via("");
    let r = verified.get("/z");
    assert_eq!(
        r.status, 502,
        "a self-signed upstream certificate is refused by default: {}",
        r.body
    );
    let unverified = via("    tls_verify: false\n");
    let r = unverified.get("/z");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.instance().as_deref(), Some("a"));
}

/// A minimal WebSocket upstream: answers the upgrade, then echoes bytes back.
fn websocket_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !text.contains("upgrade: websocket") {
                    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn websocket_upgrades_pass_through() {
    let upstream = websocket_upstream();
    let gw = Gateway::start(&format!(
        "routes:\n  - {{name: ws, service: w}}\nservices:\n  w: {{instances: [\"{upstream}\"]}}\n"
    ));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Frames are opaque to the gateway: any bytes must come back unchanged.
    let frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    s.write_all(frame).unwrap();
    let mut back = [0u8; 11];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, frame);
}

#[test]
fn x_forwarded_proto_names_the_scheme_the_client_used() {
    let echo = EchoServer::start("a").unwrap();
    let tls = TlsGateway::start(&echo, "");
    let body = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(tls.curl_args("/x"))
        .output()
        .expect("curl must be installed")
        .stdout;
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON over TLS");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    let plain = tls.gw.get("/x").json();
    assert_eq!(plain["headers"]["x-forwarded-proto"], "http");
}

/// How long until the gateway closes `s`, which sends nothing more (bounded by 10 s).
fn time_to_close(mut s: std::net::TcpStream) -> Duration {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    // Frames the server sends first (h2 SETTINGS, GOAWAY) are read past until the close.
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    start.elapsed()
}

#[test]
fn a_tls_handshake_that_never_completes_is_closed_at_the_header_deadline() {
    let echo = EchoServer::start("e").unwrap();
    let tls = TlsGateway::start(&echo, "  limits: {header_timeout: 1s}\n");
    let failures = |reason: &str| {
        tls.gw.metric(&format!(
            "portico_downstream_tls_handshake_failures_total{{listener=\"127.0.0.1:{}\",reason=\"{reason}\"}}",
            tls.port
        ))
    };
    assert_eq!((failures("error"), failures("timeout")), (0.0, 0.0));
    let s = std::net::TcpStream::connect(("127.0.0.1", tls.port)).unwrap();
    let took = time_to_close(s);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // Plain HTTP to the TLS port, as a scanner or a misconfigured client sends it.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", tls.port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(time_to_close(s) < Duration::from_secs(3));
    assert!(tls
        .gw
        .eventually(Duration::from_secs(2), || failures("error") == 1.0));
    assert_eq!(
        failures("timeout"),
        1.0,
        "each failure counted once, by its kind"
    );
    let [c, cert, r, resolve, url] = tls.curl_args("/");
    assert_eq!(
        curl(&["--http1.1", &c, &cert, &r, &resolve, &url]),
        "1.1 200",
        "handshakes that complete are served"
    );
}

#[test]
fn an_h2c_listener_closes_a_connection_that_never_sends_its_preface() {
    let echo = EchoServer::start("e").unwrap();
    let gw = Gateway::start_with_server(
        &routes(&echo),
        "  h2c: true\n  limits: {header_timeout: 1s}\n",
    );
    let s = std::net::TcpStream::connect(gw.addr).unwrap();
    let took = time_to_close(s);
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(
        gw.metric("portico_downstream_slow_client_timeouts_total{phase=\"h2_preface\"}"),
        1.0
    );
}

#[test]
fn a_tls_connection_sheds_its_request_state_when_idle_and_serves_the_next_request() {
    let echo = EchoServer::start("e").unwrap();
    let tls = TlsGateway::start(&echo, "");
    let [c, cert, r, resolve, url] = tls.curl_args("/first");
    let second = format!("https://localhost:{}/second", tls.port);
    // The second request uploads 1 MiB: the idle wait parked the connection's L4 buffers
    // (`src/listener/buffers.rs`), which must be back, and lose nothing, for a body this size.
    let dir = std::env::temp_dir().join(format!("portico-tls-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (upload, answer) = (dir.join("upload"), dir.join("answer.json"));
    std::fs::write(&upload, vec![b'x'; 1 << 20]).unwrap();
    // Two requests on one HTTP/1.1 connection, 2 s apart (curl's --rate: 30 a minute).
    let child = Command::new("curl")
        .args(["-s", "--rate", "30/m", "--max-time", "10"])
        .args(["--http1.1", "-o", "/dev/null"])
        .args(["-w", "%{num_connects} %{http_code}\n"])
        .args([&c, &cert, &r, &resolve, &url])
        .arg("--next")
        .args(["--http1.1", "-o", answer.to_str().unwrap()])
        .args(["-w", "%{num_connects} %{http_code}\n"])
        .args([&c, &cert, &r, &resolve])
        .args(["--data-binary", &format!("@{}", upload.display()), &second])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl must be installed");
    // Past the first second of idleness, before the second request: the connection waits in
    // the idle loop, reading through TLS there.
    std::thread::sleep(Duration::from_millis(1300));
    let listener = format!("listener=\"127.0.0.1:{}\"", tls.port);
    let shed = tls.gw.eventually(Duration::from_millis(500), || {
        tls.gw
            .metric_sum("portico_downstream_connections_idle", &[&listener])
            == 1.0
    });
    let out = child.wait_with_output().unwrap();
    let echoed = std::fs::read_to_string(&answer).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(shed, "the TLS connection never went idle");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 200\n0 200\n",
        "both answered, the second on the same connection"
    );
    assert!(
        echoed.contains("\"body_bytes\":1048576"),
        "the upload arrived whole: {echoed}"
    );
}

#[test]
fn an_idle_http2_connection_is_closed_after_the_keepalive_timeout() {
    use std::io::Write;
    let echo = EchoServer::start("e").unwrap();
    let gw = Gateway::start_with_server(
        &routes(&echo),
        "  h2c: true\n  limits: {keepalive_timeout: 1s}\n",
    );
    let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
    // The client preface and an empty SETTINGS frame, then silence.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let took = time_to_close(s);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "an idle h2 connection lived {took:?}"
    );
}

/// An h2c (prior-knowledge HTTP/2) upstream answering like a gRPC server: 200, a body, then
/// trailers with `grpc-status: 0`. Serves for at most 30 s.
fn grpc_upstream(rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let serve = async {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .header("x-upstream-version", format!("{:?}", request.version()))
                            .body(())
                            .unwrap();
                        let Ok(mut body) = respond.send_response(response, false) else {
                            continue;
                        };
                        let _ =
                            body.send_data(bytes::Bytes::from_static(b"\0\0\0\0\x05hello"), false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let _ = body.send_trailers(trailers);
                    }
                });
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(30), serve).await;
    });
    addr
}

#[test]
fn grpc_passes_through_over_http2_on_both_sides_with_its_trailers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = grpc_upstream(&rt);
    let gw = Gateway::start_with_server(
        &format!(
            "routes:\n  - {{name: grpc, service: g}}\nservices:\n  g:\n    instances: [\"{upstream}\"]\n    http2: true\n"
        ),
        "  h2c: true\n",
    );
    let addr = gw.addr;
    let (status, version, body, trailers) = rt.block_on(async move {
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(socket).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/pkg.Service/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(request, false).unwrap();
        send.send_data(bytes::Bytes::from_static(b"\0\0\0\0\x02hi"), true)
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("a response in time")
            .unwrap();
        let status = response.status().as_u16();
        let version = response
            .headers()
            .get("x-upstream-version")
            .map(|v| v.to_str().unwrap().to_string());
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            data.extend_from_slice(&chunk.unwrap());
        }
        let trailers = body.trailers().await.unwrap();
        (status, version, data, trailers)
    });
    assert_eq!(status, 200);
    assert_eq!(
        version.as_deref(),
        Some("HTTP/2.0"),
        "the upstream was spoken to in HTTP/2"
    );
    assert_eq!(&body[5..], b"hello");
    let trailers = trailers.expect("the gRPC trailers reach the client");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
}
