//! Response compression through the real binary: negotiation with q-values, the three
//! algorithms decoded back to the upstream's bytes, and the responses that must pass as they
//! are (already encoded, small, other types, HEAD) — each with `Vary: Accept-Encoding` where a
//! cache needs it. A route without `compress` is untouched.

mod support;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::*;

/// The text every `/text` response carries: long and repetitive, so it compresses well.
fn page() -> String {
    "<p>Portico compresses this line.</p>\n".repeat(200)
}

/// An upstream with fixed answers per path, each on its own connection.
fn fixed_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = [0u8; 8192];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let body = page();
    let (headers, body): (&str, Vec<u8>) = match path {
        "/text" => (
            "Content-Type: text/html; charset=utf-8\r\nETag: \"v1\"\r\n",
            body.into_bytes(),
        ),
        "/encoded" => (
            "Content-Type: text/html\r\nContent-Encoding: gzip\r\n",
            b"not really gzip".to_vec(),
        ),
        "/small" => ("Content-Type: text/html\r\n", b"<p>tiny</p>".to_vec()),
        "/image" => ("Content-Type: image/png\r\n", body.into_bytes()),
        _ => ("Content-Type: text/plain\r\n", b"?".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn fetch(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Raw {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = all[split..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Raw {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn decode(algorithm: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match algorithm {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        other => panic!("{other}"),
    }
    out
}

fn gateway(upstream: SocketAddr) -> Gateway {
    Gateway::start(&format!(
        r#"routes:
  - name: assets
    match: {{path_prefix: /assets}}
    service: web
    strip_prefix: true
    compress: {{types: [text/*, application/json], min_size: 1KiB, algorithms: [br, zstd, gzip]}}
  - {{name: plain, match: {{path_prefix: /plain}}, service: web, strip_prefix: true}}
services:
  web: {{instances: ["{upstream}"]}}
"#
    ))
}

#[test]
fn each_algorithm_is_negotiated_and_decodes_to_the_upstream_bytes() {
    let gw = gateway(fixed_upstream());
    for (accept, want) in [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("zstd", "zstd"),
        ("br;q=0, *;q=0.3", "zstd"),
    ] {
        let r = fetch(gw.addr, "GET", "/assets/text", Some(accept));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(want), "{accept}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("etag"), Some("W/\"v1\""));
        assert!(r.header("content-length").is_none());
        assert!(
            r.body.len() < page().len() / 4,
            "{want}: {} bytes",
            r.body.len()
        );
        assert_eq!(decode(want, &r.body), page().as_bytes(), "{want}");
    }
    assert_eq!(
        gw.metric(r#"portico_compression_responses_total{algorithm="br",route="assets"}"#),
        1.0
    );
    let bytes_in = gw.metric(r#"portico_compression_bytes_total{route="assets",side="in"}"#);
    let bytes_out = gw.metric(r#"portico_compression_bytes_total{route="assets",side="out"}"#);
    assert_eq!(bytes_in, 4.0 * page().len() as f64);
    assert!(bytes_out < bytes_in / 4.0, "{bytes_out} of {bytes_in}");
}

#[test]
fn encoded_small_other_types_head_and_unwilling_clients_pass_as_they_are() {
    let gw = gateway(fixed_upstream());
    let r = fetch(gw.addr, "GET", "/assets/encoded", Some("gzip, br"));
    assert_eq!(r.header("content-encoding"), Some("gzip"), "never twice");
    assert_eq!(r.body, b"not really gzip");
    let r = fetch(gw.addr, "GET", "/assets/small", Some("gzip, br"));
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.body, b"<p>tiny</p>");
    let r = fetch(gw.addr, "GET", "/assets/image", Some("gzip, br"));
    assert!(r.header("content-encoding").is_none());
    assert!(
        r.header("vary").is_none(),
        "a type never compressed does not vary"
    );
    let r = fetch(gw.addr, "GET", "/assets/text", None);
    assert!(r.header("content-encoding").is_none());
    assert_eq!(
        r.header("vary"),
        Some("Accept-Encoding"),
        "a cache must know"
    );
    assert_eq!(r.body, page().as_bytes());
    let r = fetch(gw.addr, "GET", "/assets/text", Some("gzip;q=0, identity"));
    assert!(r.header("content-encoding").is_none());
    let r = fetch(gw.addr, "HEAD", "/assets/text", Some("gzip"));
    assert_eq!(r.status, 200);
    assert!(r.header("content-encoding").is_none());
    let r = fetch(gw.addr, "GET", "/plain/text", Some("gzip, br"));
    assert!(
        r.header("content-encoding").is_none(),
        "a route without compress"
    );
    assert!(r.header("vary").is_none());
    assert_eq!(
        r.header("content-length"),
        Some(page().len().to_string().as_str())
    );
}

#[test]
fn a_compressed_response_keeps_the_connection_alive() {
    let gw = gateway(fixed_upstream());
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let one = "GET /assets/text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
    let last = "GET /assets/text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
    write!(s, "{one}{last}").unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(text.matches("Transfer-Encoding: chunked").count(), 2);
}
