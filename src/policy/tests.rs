//! The chain without sockets: rules decide on the in-process store, edits apply to Pingora's
//! header types.

use super::headers::HeaderEdits;
use super::ratelimit::RateLimit;
use super::*;
use crate::config::{HeaderRules, Problems, RateLimitConfig};
use crate::ratelimit::{Rule, RuleSpec};
use crate::telemetry::ratelimit::DECISIONS;
use std::sync::Arc;

fn rule(name: &str, yaml: &str) -> Arc<Rule> {
    let cfg: RateLimitConfig = serde_yaml::from_str(yaml).unwrap();
    let mut problems = Problems::default();
    let spec = RuleSpec::compile(name, &cfg, false, None, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    Arc::new(Rule::new(spec, None))
}

fn chain(route: &str, rules: &[Arc<Rule>]) -> Chain {
    let mut b = ChainBuilder::new(route);
    for r in rules {
        let p = RateLimit::new(route, r.clone());
        let mode = p.mode();
        b = b.admission(Admission::RateLimit(p), mode);
    }
    b.build()
}

fn request(headers: &HeaderMap) -> Request<'_> {
    static URI: std::sync::LazyLock<http::Uri> =
        std::sync::LazyLock::new(|| http::Uri::from_static("/"));
    Request {
        headers,
        method: &Method::GET,
        uri: &URI,
        host: "",
        tls: false,
        client_ip: "192.0.2.1".parse().unwrap(),
    }
}

fn refused(route: &str, policy: &str, mode: &str) -> u64 {
    refusal_counter(route, policy, mode).get()
}

#[tokio::test]
async fn every_rule_must_admit_and_the_first_refusal_answers_429_with_retry_after() {
    let loose = rule("chain-loose", "{limit: 10, per: 1m}");
    let tight = rule("chain-tight", "{limit: 2, per: 1m}");
    let c = chain("chain-route", &[loose, tight]);
    let headers = HeaderMap::new();
    for _ in 0..2 {
        let mut state = State::default();
        assert!(matches!(
            c.admit(&request(&headers), &mut state).await,
            Outcome::Continue
        ));
    }
    let mut state = State::default();
    let Outcome::Refuse(r) = c.admit(&request(&headers), &mut state).await else {
        panic!("the tight rule refuses the third request");
    };
    assert_eq!(r.code, ErrorCode::RateLimited);
    assert_eq!(r.headers.len(), 1);
    assert_eq!(r.headers[0].0, "Retry-After");
    assert_eq!(
        r.headers[0].1,
        HeaderValue::from(30u64),
        "one request per 30s comes back"
    );
    let shown = state.rate_headers.expect("both rules send headers");
    assert_eq!(
        (shown.limit, shown.remaining),
        (2, 0),
        "the most restrictive rule is shown"
    );
    assert_eq!(refused("chain-route", "rate_limit", "enforce"), 1);
    let limited = DECISIONS
        .with_label_values(&["chain-route", "chain-tight", "limited", "local"])
        .get();
    assert_eq!(limited, 1);
}

#[tokio::test]
async fn a_shadow_rule_counts_its_refusals_and_lets_the_request_through() {
    let shadow = rule("chain-shadow", "{limit: 1, per: 1m, shadow: true}");
    let c = chain("shadow-route", &[shadow]);
    let headers = HeaderMap::new();
    for _ in 0..3 {
        let mut state = State::default();
        assert!(matches!(
            c.admit(&request(&headers), &mut state).await,
            Outcome::Continue
        ));
    }
    assert_eq!(refused("shadow-route", "rate_limit", "shadow"), 2);
    assert_eq!(refused("shadow-route", "rate_limit", "enforce"), 0);
    let shadow_limited = DECISIONS
        .with_label_values(&["shadow-route", "chain-shadow", "shadow_limited", "local"])
        .get();
    assert_eq!(shadow_limited, 2);
}

#[tokio::test]
async fn a_missing_key_under_reject_answers_400_and_later_rules_are_not_consulted() {
    let keyed = rule(
        "chain-keyed",
        "{key: \"header:x-api-key\", on_missing_key: reject, limit: 5}",
    );
    let after = rule("chain-after", "{limit: 5}");
    let c = chain("keyed-route", &[keyed, after]);
    let headers = HeaderMap::new();
    let mut state = State::default();
    let Outcome::Refuse(r) = c.admit(&request(&headers), &mut state).await else {
        panic!("no key: refused");
    };
    assert_eq!(r.code, ErrorCode::BadRequest);
    let consulted = DECISIONS
        .with_label_values(&["keyed-route", "chain-after", "allowed", "local"])
        .get();
    assert_eq!(consulted, 0);
}

#[test]
fn header_edits_remove_then_set_and_empty_edits_are_left_out() {
    let mut problems = Problems::default();
    let rules: HeaderRules = serde_yaml::from_str(
        "{set: {x-gateway: portico, x-drop: kept}, remove: [x-drop, x-internal]}",
    )
    .unwrap();
    let edits = HeaderEdits::compile(&rules, "routes[0].request_headers", &mut problems);
    assert!(problems.is_empty());
    let c = ChainBuilder::new("edits")
        .upstream_request(RequestEdit::Headers(edits.clone()))
        .response(ResponseEdit::Headers(HeaderEdits::default()))
        .build();
    assert_eq!((c.upstream_request.len(), c.response.len()), (1, 0));
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    req.insert_header("x-internal", "secret").unwrap();
    req.insert_header("x-drop", "old").unwrap();
    c.edit_request(&mut req, &State::default()).unwrap();
    assert_eq!(req.headers.get("x-gateway").unwrap(), "portico");
    assert_eq!(
        req.headers.get("x-drop").unwrap(),
        "kept",
        "set runs after remove"
    );
    assert!(req.headers.get("x-internal").is_none());
}

#[test]
fn bad_header_edits_are_problems_at_their_field() {
    let mut problems = Problems::default();
    let rules: HeaderRules =
        serde_yaml::from_str("{set: {\"bad name\": x, ok: \"bad\\nvalue\"}, remove: [\"a b\"]}")
            .unwrap();
    HeaderEdits::compile(&rules, "routes[1].response_headers", &mut problems);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[1].response_headers.set.bad name",
            "routes[1].response_headers.set.ok",
            "routes[1].response_headers.remove[0]"
        ]
    );
}

#[test]
fn the_admission_future_stays_small() {
    // Every request's filter future embeds this one whatever its route's policies: a large
    // policy future (a connector call, say) inline makes every request copy it. Box such calls.
    let chain = Chain::default();
    let headers = HeaderMap::new();
    let req = request(&headers);
    let mut state = State::default();
    let admit = chain.admit(&req, &mut state);
    let size = std::mem::size_of_val(&admit);
    eprintln!("admission future: {size} bytes");
    assert!(size <= 1024, "the admission future is {size} bytes");
}
