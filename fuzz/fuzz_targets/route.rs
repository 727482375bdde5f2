//! Any path, host and header bytes go through normalisation and route matching without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portico_fuzz_route(data);
});

fn portico_fuzz_route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (host, path) = text.split_once('\n').unwrap_or(("example.com", &text));
    let plan = portico::snapshot::compile_str(
        "r.yaml",
        "routes:\n  - {name: a, match: {hosts: [\"*.example.com\"], path_prefix: /api}, service: s, strip_prefix: true}\n  - {name: b, match: {path_prefix: /}, service: s, rewrite: {regex: \"^/(.*)$\", to: \"/x/$1\"}}\nservices:\n  s: {instances: [\"127.0.0.1:1\"]}\n",
    )
    .expect("fixed config");
    let router = &plan.router;
    if let Some(p) = portico::hardening::normalize_path(path) {
        let headers = http::HeaderMap::new();
        let facts = portico::router::RequestFacts {
            host,
            path: &p,
            method: &http::Method::GET,
            headers: &headers,
        };
        if let Some(i) = router.find(&facts) {
            let _ = router.route(i).rewrite.apply(&p, None);
        }
    }
}
