//! Micro-benchmarks of the request path's own work, one piece at a time: route match on a
//! 50-route table, instance selection with the breaker check, metrics recording, path rewrite
//! and normalisation, the header edits and the access-log line. (Rate-limit decisions:
//! `benches/ratelimit.rs`.)
//!
//! `cargo bench --bench hot_path`

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method};
use portico::hardening::normalize_path;
use portico::router::RequestFacts;
use portico::snapshot::{compile_str, Plan};
use portico::telemetry::access_log::Entry;
use portico::telemetry::metrics::{Protocol, RouteMetrics, Source};
use portico::upstream::health::{self, Verdicts};
use portico::upstream::{Pick, Resolved, Upstream};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// 50 routes: hosts, prefixes, methods and one header rule, the match near the end.
fn config() -> Plan {
    let mut text = String::from("routes:\n");
    for i in 0..49 {
        text.push_str(&format!(
            "  - {{name: r{i}, match: {{hosts: [\"api{i}.example.com\", \"*.svc{i}.example.com\"], path_prefix: /v1/area{i}, methods: [GET, POST]}}, service: s, strip_prefix: true}}\n"
        ));
    }
    text.push_str("  - {name: last, match: {path_prefix: /api/v1/orders, headers: {x-tenant: acme}}, service: s, rewrite: {regex: \"^/api/v1/(.*)\", to: \"/v2/$1\"}}\n");
    text.push_str("services:\n  s: {instances: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\"]}\n");
    compile_str("bench.yaml", &text).expect("valid bench config")
}

fn routing(c: &mut Criterion) {
    let plan = config();
    let router = &plan.router;
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "acme".parse().unwrap());
    let facts = RequestFacts {
        host: "gateway.example.com",
        path: "/api/v1/orders/42",
        method: &Method::GET,
        headers: &headers,
    };
    c.bench_function("route match, 50 routes, match at the end", |b| {
        b.iter(|| black_box(router.find(black_box(&facts))))
    });
    let i = router.find(&facts).unwrap();
    let route = router.route(i);
    c.bench_function("regex path rewrite", |b| {
        b.iter(|| {
            black_box(
                route
                    .rewrite
                    .apply(black_box("/api/v1/orders/42"), Some("q=1")),
            )
        })
    });
    c.bench_function("path normalisation (clean path)", |b| {
        b.iter(|| black_box(normalize_path(black_box("/api/v1/orders/42"))))
    });
    c.bench_function("path normalisation (dot segments)", |b| {
        b.iter(|| black_box(normalize_path(black_box("/api/v1/../v1/./orders//42"))))
    });
}

fn selection(c: &mut Criterion) {
    let registry = health::registry(Arc::new(Verdicts::default()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Round robin is the baseline of the load-aware balancers, measured in the same run.
    for (balance, extra) in [
        ("round_robin", ""),
        ("least_request", ""),
        ("ewma", ""),
        ("round_robin", ", zone_aware: {local_zone: a}"),
    ] {
        let plan = compile_str(
            "bench.yaml",
            &format!(
                "routes: [{{name: r, service: s}}]\nservices:\n  s: {{balance: {balance}{extra}, instances: [\"127.0.0.1:1 zone=a\", \"127.0.0.1:2 zone=a\", \"127.0.0.1:3 zone=b\", \"127.0.0.1:4 zone=b\"]}}\n"
            ),
        )
        .expect("valid bench config");
        let upstream = Upstream::new(&plan.services["s"], &registry, Vec::new(), Resolved::new());
        rt.block_on(upstream.refresh()).unwrap();
        let zones = if extra.is_empty() { "" } else { ", zone_aware" };
        let name = format!("instance selection with breaker check (4 instances, {balance}{zones})");
        c.bench_function(&name, |b| {
            b.iter(|| match upstream.select(b"", &[], Instant::now()) {
                Pick::Selected(s) => black_box(s.backend.weight),
                _ => 0,
            })
        });
    }
}

fn metrics(c: &mut Criterion) {
    portico::telemetry::init();
    let m = RouteMetrics::new("bench-route");
    c.bench_function(
        "request metrics (counter + histogram, cached handles)",
        |b| {
            b.iter(|| {
                m.record(
                    black_box(&Method::GET),
                    black_box(200),
                    Source::Upstream,
                    Protocol::H1,
                    0.0012,
                )
            })
        },
    );
}

fn headers(c: &mut Criterion) {
    let mut req = pingora::http::RequestHeader::build("GET", b"/api/v1/orders/42", None).unwrap();
    req.insert_header("host", "gateway.example.com").unwrap();
    req.insert_header("x-forwarded-for", "203.0.113.9").unwrap();
    c.bench_function("X-Forwarded-* headers on the upstream request", |b| {
        b.iter(|| {
            let mut r = req.clone();
            portico::forwarding::set_upstream_headers(
                &mut r,
                "10.0.0.1".parse().unwrap(),
                true,
                "http",
            )
            .unwrap();
            black_box(r)
        })
    });
    c.bench_function("baseline: clone of the upstream request header", |b| {
        b.iter(|| black_box(req.clone()))
    });
}

fn access_log(c: &mut Criterion) {
    let entry = Entry {
        time: std::time::SystemTime::now(),
        request_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        trace_id: Some([0x4b; 16]),
        span: Some(([0x3c; 8], true)),
        route: "orders",
        host: Some("api.example.com"),
        method: "GET",
        path: "/api/v1/orders/42",
        query: None,
        protocol: "HTTP/1.1",
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        status: 200,
        source: "upstream",
        reason: None,
        service: Some("orders"),
        consumer: None,
        instance: Some("10.0.3.7:8080".parse().unwrap()),
        attempts: 1,
        duration: std::time::Duration::from_micros(1_234),
        upstream: Some(std::time::Duration::from_micros(1_100)),
        bytes_in: 0,
        bytes_out: 256,
        client_ip: "203.0.113.9".parse().unwrap(),
    };
    let mut batch = Vec::with_capacity(64 * 1024);
    c.bench_function("access-log line (JSON, 22 fields)", |b| {
        b.iter(|| {
            batch.clear();
            black_box(&entry).encode_into(&mut batch);
            black_box(batch.len())
        })
    });
}

criterion_group!(benches, routing, selection, metrics, headers, access_log);
criterion_main!(benches);
