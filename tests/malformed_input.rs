//! Malformed input never panics: random and mutated configuration files go through the loader,
//! random paths and hosts through normalisation, matching and rewriting. The same properties
//! are `cargo fuzz` targets in fuzz/ (nightly); this runs a bounded number of cases on stable.

use portico::hardening::normalize_path;
use portico::router::RequestFacts;
use portico::snapshot::compile_str;

const SEED_CONFIG: &str = include_str!("../conf/portico.yaml");
const CASES: usize = 3_000;

/// Random bytes drawn mostly from YAML and path punctuation, so inputs get past the first check.
fn noise(rng: &mut fastrand::Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abc/%.2eE:{}[]-, \n\t\"'#$&*!|>?@`\\0123456789_=";
    (0..len)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect()
}

#[test]
fn mutated_configuration_files_give_errors_not_panics() {
    let mut rng = fastrand::Rng::with_seed(0x0904_71c0);
    let base: Vec<char> = SEED_CONFIG.chars().collect();
    for _ in 0..CASES {
        let mut text = base.clone();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(..text.len());
            match rng.u8(..3) {
                0 => {
                    text.remove(at);
                }
                1 => text.insert(at, noise(&mut rng, 1).chars().next().unwrap()),
                _ => {
                    let end = (at + rng.usize(1..40)).min(text.len());
                    text.drain(at..end);
                }
            }
        }
        let text: String = text.into_iter().collect();
        let _ = compile_str("mutated.yaml", &text);
    }
    for _ in 0..CASES {
        let len = rng.usize(0..300);
        let _ = compile_str("noise.yaml", &noise(&mut rng, len));
    }
}

#[test]
fn random_paths_and_hosts_route_without_panics() {
    let plan = compile_str(
        "r.yaml",
        "routes:\n  - {name: a, match: {hosts: [\"*.example.com\"], path_prefix: /api}, service: s, strip_prefix: true}\n  - {name: b, match: {path_prefix: /}, service: s, rewrite: {regex: \"^/(.*)$\", to: \"/x/$1\"}}\nservices:\n  s: {instances: [\"127.0.0.1:1\"]}\n",
    )
    .unwrap();
    let router = &plan.router;
    let headers = http::HeaderMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..CASES * 10 {
        let len = rng.usize(0..120);
        let path = format!("/{}", noise(&mut rng, len));
        let host_len = rng.usize(0..30);
        let host = noise(&mut rng, host_len);
        let Some(p) = normalize_path(&path) else {
            continue;
        };
        assert!(p.starts_with('/'), "{path:?} -> {p:?}");
        assert!(
            !p.contains("/../") && !p.contains("//"),
            "{path:?} -> {p:?}"
        );
        let facts = RequestFacts {
            host: &host,
            path: &p,
            method: &http::Method::GET,
            headers: &headers,
        };
        if let Some(i) = router.find(&facts) {
            let _ = router.route(i).rewrite.apply(&p, Some("q=1"));
        }
    }
}
