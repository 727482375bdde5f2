//! Micro-benchmarks of the edge policies, one check at a time, each beside its baseline in the
//! same run: the IP-set lookup at 10,000 entries against a linear scan of the same networks,
//! an IP rule, a CORS check (actual request and preflight), a concurrency slot taken and given
//! back, and compression negotiation.
//!
//! `cargo bench --bench edge`

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use portico::config::{
    CompressConfig, ConcurrencyConfig, CorsConfig, IpRuleConfig, OnDisallowed, Problems,
};
use portico::ip_set::{IpSet, Network};
use portico::policy::compress::Compress;
use portico::policy::concurrency::{Concurrency, ConcurrencySpec};
use portico::policy::cors::Cors;
use portico::policy::ip_rules::{IpRule, IpRuleSpec, SharedDeny};
use portico::policy::{Request, State};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// 10,000 random IPv4 networks (/16 to /32) and a few IPv6 ones.
fn networks() -> Vec<Network> {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut out: Vec<Network> = (0..10_000)
        .map(|_| {
            let len = rng.u32(16..=32);
            let ip = Ipv4Addr::from(rng.u32(..));
            Network::parse(&format!("{ip}/{len}"), false).unwrap()
        })
        .collect();
    out.push(Network::parse("2001:db8::/32", true).unwrap());
    out
}

fn ip_lookup(c: &mut Criterion) {
    let networks = networks();
    let set = IpSet::new(networks.iter().copied());
    let mut rng = fastrand::Rng::with_seed(3);
    let probes: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.u32(..))))
        .collect();
    let mut g = c.benchmark_group("ip_set_10k");
    let mut i = 0;
    g.bench_function("sorted_ranges", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            black_box(set.contains(black_box(probes[i])))
        })
    });
    // The baseline: what a list without merging and search would cost.
    g.bench_function("linear_scan", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            let IpAddr::V4(v4) = probes[i] else {
                unreachable!()
            };
            let x = u32::from(v4);
            black_box(
                networks
                    .iter()
                    .any(|n| matches!(n, Network::V4(a, z) if *a <= x && x <= *z)),
            )
        })
    });
    g.finish();
}

fn compile<T>(f: impl FnOnce(&mut Problems) -> T) -> T {
    let mut problems = Problems::default();
    let out = f(&mut problems);
    assert!(problems.is_empty(), "bench config is valid");
    out
}

fn policies(c: &mut Criterion) {
    let headers = {
        let mut h = HeaderMap::new();
        h.insert(
            "origin",
            HeaderValue::from_static("https://shop.example.com"),
        );
        h.insert(
            "accept-encoding",
            HeaderValue::from_static("gzip, deflate, br, zstd"),
        );
        h.insert("x-tenant", HeaderValue::from_static("acme"));
        h
    };
    let mut preflight = headers.clone();
    preflight.insert(
        "access-control-request-method",
        HeaderValue::from_static("POST"),
    );
    let uri = http::Uri::from_static("/");
    let req = |headers, method| Request {
        headers,
        method,
        uri: &uri,
        host: "api.example.com",
        tls: false,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
    };
    let mut g = c.benchmark_group("policy");
    g.bench_function("baseline_state_only", |b| {
        b.iter(|| black_box(State::default()))
    });

    let spec = compile(|p| {
        IpRuleSpec::compile(
            "office",
            &IpRuleConfig {
                allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
                deny: vec!["10.9.0.0/16".into()],
                ..IpRuleConfig::default()
            },
            false,
            p,
        )
    });
    let rule = IpRule::new(Arc::new(spec), &Arc::new(SharedDeny::default()));
    let get = Method::GET;
    g.bench_function("ip_rule", |b| {
        b.iter(|| black_box(rule.check(&req(&headers, &get))))
    });

    let cors = compile(|p| {
        Cors::compile(
            "web",
            &CorsConfig {
                origins: vec![
                    "https://app.example.com".into(),
                    "https://*.example.com".into(),
                ],
                methods: vec!["GET".into(), "POST".into()],
                headers: vec!["authorization".into()],
                credentials: true,
                on_disallowed: OnDisallowed::Pass,
                ..CorsConfig::default()
            },
            p,
        )
    });
    g.bench_function("cors_request", |b| {
        b.iter(|| {
            let mut state = State::default();
            black_box(cors.check(&req(&headers, &get), &mut state));
            state
        })
    });
    let options = Method::OPTIONS;
    g.bench_function("cors_preflight_answer", |b| {
        b.iter(|| {
            let mut state = State::default();
            black_box(cors.check(&req(&preflight, &options), &mut state));
        })
    });

    for per in ["route", "header:x-tenant"] {
        let spec = compile(|p| {
            ConcurrencySpec::compile(
                &ConcurrencyConfig {
                    max: 1_000_000,
                    per: per.into(),
                    shadow: false,
                },
                "c",
                p,
            )
        });
        let limit = Concurrency::new("bench", spec);
        g.bench_function(
            format!("concurrency_{}", per.split(':').next().unwrap()),
            |b| {
                b.iter(|| {
                    let mut state = State::default();
                    black_box(limit.check(&req(&headers, &get), &mut state));
                    state
                })
            },
        );
    }

    let compress = compile(|p| Compress::compile(&CompressConfig::default(), "c", p));
    g.bench_function("compress_negotiate", |b| {
        b.iter(|| black_box(compress.negotiate(headers.get("accept-encoding"))))
    });
    g.finish();
}

criterion_group!(benches, ip_lookup, policies);
criterion_main!(benches);
