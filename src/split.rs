//! Traffic splits: which of a route's services takes a request. An entry with `when` takes
//! every request it matches (and none other); the weighted entries share the rest by weight.
//! A side with no available instance (all unhealthy or cut off by open breakers) is skipped
//! while another has one — a canary scaled to zero must not turn its share into 503s. Sticky
//! assignment keeps a caller on one side: by a cookie Portico sets, or by hashing a header or
//! the consumer onto the weights (the same caller lands on the same side while the weights
//! and the sides' health stay as they are).
//!
//! A route with a plain `service` is a split of one side, which costs nothing to choose.

use crate::config::{Problems, SplitEntryConfig, SplitWhenConfig, StickyConfig};
use crate::request_values::{cookie, query_value};
use crate::telemetry::split as metrics;
use crate::upstream::Upstream;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use prometheus::IntCounter;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Most entries a split may have.
pub const MAX_SIDES: usize = 16;

/// A compiled `split` (or a plain `service`): what a route's [`Split`] is built from.
#[derive(Debug, Clone)]
pub struct SplitSpec {
    sides: Vec<SideSpec>,
    sticky: Option<Sticky>,
}

#[derive(Debug, Clone)]
struct SideSpec {
    service: String,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Weight(u32),
    When(When),
}

/// Values a request must carry, all of them, to be forced to a side.
#[derive(Debug, Clone, Default)]
struct When {
    headers: Vec<(HeaderName, String)>,
    cookies: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum Sticky {
    /// Portico sets `name=<side token>` with this `Max-Age`.
    Cookie {
        name: String,
        max_age: u64,
    },
    Header(HeaderName),
    Consumer,
}

impl SplitSpec {
    /// A route's one service.
    pub fn single(service: &str) -> Self {
        Self {
            sides: vec![SideSpec {
                service: service.to_string(),
                rule: Rule::Weight(1),
            }],
            sticky: None,
        }
    }

    /// Compiles `split` and `sticky` (known services are checked by the caller), reporting
    /// every problem under `at`.
    pub fn compile(
        entries: &[SplitEntryConfig],
        sticky: Option<&StickyConfig>,
        at: &str,
        problems: &mut Problems,
    ) -> Self {
        if entries.len() > MAX_SIDES {
            problems.push(
                format!("{at}.split"),
                format!("at most {MAX_SIDES} entries"),
            );
        }
        let mut sides = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate().take(MAX_SIDES) {
            let at = format!("{at}.split[{i}]");
            let rule = match (e.weight, &e.when) {
                (Some(_), Some(_)) => {
                    problems.push(
                        format!("{at}.weight"),
                        "an entry with `when` takes every request it matches: no `weight`",
                    );
                    Rule::Weight(1)
                }
                (Some(0), None) => {
                    problems.push(format!("{at}.weight"), "must be positive");
                    Rule::Weight(1)
                }
                (Some(w), None) => Rule::Weight(w),
                (None, Some(when)) => Rule::When(When::compile(when, &at, problems)),
                (None, None) => {
                    problems.push(at.clone(), "needs a `weight` or a `when`");
                    Rule::Weight(1)
                }
            };
            sides.push(SideSpec {
                service: e.service.clone(),
                rule,
            });
        }
        if !sides.iter().any(|s| matches!(s.rule, Rule::Weight(_))) {
            problems.push(
                format!("{at}.split"),
                "needs at least one entry with a `weight`: requests no `when` matches go there",
            );
        }
        let sticky = sticky.and_then(|s| Sticky::compile(s, &format!("{at}.sticky"), problems));
        Self { sides, sticky }
    }
}

impl When {
    fn compile(when: &SplitWhenConfig, at: &str, problems: &mut Problems) -> Self {
        let mut headers = Vec::new();
        for (name, value) in &when.header {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => headers.push((h, value.clone())),
                Err(_) => problems.push(
                    format!("{at}.when.header"),
                    format!("{name:?} is not a header name"),
                ),
            }
        }
        let pairs = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let compiled = Self {
            headers,
            cookies: pairs(&when.cookie),
            query: pairs(&when.query),
        };
        if when.header.is_empty() && when.cookie.is_empty() && when.query.is_empty() {
            problems.push(
                format!("{at}.when"),
                "needs a `header`, `cookie` or `query` to match",
            );
        }
        compiled
    }

    fn matches(&self, req: &RequestHeader) -> bool {
        self.headers.iter().all(|(name, want)| {
            req.headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == want.as_bytes())
        }) && self
            .cookies
            .iter()
            .all(|(name, want)| cookie(req, name) == Some(want.as_str()))
            && self.query.iter().all(|(name, want)| {
                req.uri
                    .query()
                    .is_some_and(|q| query_value(q, name) == Some(want.as_str()))
            })
    }
}

impl Sticky {
    fn compile(s: &StickyConfig, at: &str, problems: &mut Problems) -> Option<Self> {
        let chosen = [s.cookie.is_some(), s.header.is_some(), s.consumer];
        if chosen.iter().filter(|c| **c).count() != 1 {
            problems.push(
                at,
                "needs exactly one of `cookie`, `header` and `consumer: true`",
            );
            return None;
        }
        if let Some(name) = &s.cookie {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                problems.push(
                    format!("{at}.cookie"),
                    format!("{name:?} is not a cookie name"),
                );
                return None;
            }
            return Some(Sticky::Cookie {
                name: name.clone(),
                max_age: s.ttl.as_secs(),
            });
        }
        if let Some(name) = &s.header {
            return match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => Some(Sticky::Header(h)),
                Err(_) => {
                    problems.push(
                        format!("{at}.header"),
                        format!("{name:?} is not a header name"),
                    );
                    None
                }
            };
        }
        Some(Sticky::Consumer)
    }
}

/// One service of a route's split.
pub struct Side {
    service: String,
    upstream: Arc<Upstream>,
    /// The sticky cookie's value for this side: a digest of the service name, so the cookie
    /// names no internal service and survives reloads that reorder the entries.
    token: String,
    /// `portico_split_requests_total` of this side (none on a route with one service).
    requests: Option<IntCounter>,
}

impl Side {
    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The service's instances.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }
}

/// Where one request goes, and the sticky cookie to set when the choice made one.
pub struct Choice {
    pub side: usize,
    pub set_cookie: Option<HeaderValue>,
}

/// A route's services, ready to choose from.
pub struct Split {
    sides: Vec<Side>,
    /// Entries with `when`, in order, with the side each forces.
    forced: Vec<(When, usize)>,
    /// Weighted sides: (weight, side).
    weighted: Vec<(u32, usize)>,
    sticky: Option<Sticky>,
}

impl Split {
    /// The split of `route` over `services` (every name in `spec` must be there: the compile
    /// step checked it).
    pub fn new(route: &str, spec: SplitSpec, services: &BTreeMap<String, Arc<Upstream>>) -> Self {
        let single = spec.sides.len() == 1;
        let mut sides = Vec::with_capacity(spec.sides.len());
        let (mut forced, mut weighted) = (Vec::new(), Vec::new());
        for (i, side) in spec.sides.into_iter().enumerate() {
            let upstream = services[&side.service].clone();
            let requests = (!single).then(|| metrics::requests(route, &side.service));
            sides.push(Side {
                token: token(&side.service),
                service: side.service,
                upstream,
                requests,
            });
            match side.rule {
                Rule::Weight(w) => weighted.push((w, i)),
                Rule::When(when) => forced.push((when, i)),
            }
        }
        Self {
            sides,
            forced,
            weighted,
            sticky: spec.sticky,
        }
    }

    /// The side at `i` (0 for a route with one service).
    pub fn side(&self, i: usize) -> &Side {
        &self.sides[i.min(self.sides.len() - 1)]
    }

    /// Chooses the side of one request; `consumer` is the authenticated caller, if any.
    pub fn choose(&self, req: &RequestHeader, consumer: Option<&str>) -> Choice {
        if self.sides.len() == 1 {
            return Choice {
                side: 0,
                set_cookie: None,
            };
        }
        let now = Instant::now();
        let available = |i: usize| self.sides[i].upstream.has_available_instance(now);
        let chosen = self.forced_side(req, &available).map_or_else(
            || self.weighted_side(req, consumer, &available),
            |side| Choice {
                side,
                set_cookie: None,
            },
        );
        if let Some(requests) = &self.sides[chosen.side].requests {
            requests.inc();
        }
        chosen
    }

    fn forced_side(
        &self,
        req: &RequestHeader,
        available: &impl Fn(usize) -> bool,
    ) -> Option<usize> {
        self.forced
            .iter()
            .find(|(when, i)| when.matches(req) && available(*i))
            .map(|(_, i)| *i)
    }

    fn weighted_side(
        &self,
        req: &RequestHeader,
        consumer: Option<&str>,
        available: &impl Fn(usize) -> bool,
    ) -> Choice {
        let key: Option<&[u8]> = match &self.sticky {
            Some(Sticky::Cookie { name, max_age }) => {
                let held = cookie(req, name).and_then(|v| {
                    self.weighted
                        .iter()
                        .map(|(_, i)| *i)
                        .find(|i| self.sides[*i].token == v && available(*i))
                });
                if let Some(side) = held {
                    return Choice {
                        side,
                        set_cookie: None,
                    };
                }
                let side = self.by_weight(fastrand::u64(..), available);
                let cookie = format!(
                    "{name}={}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax",
                    self.sides[side].token
                );
                return Choice {
                    side,
                    set_cookie: HeaderValue::from_str(&cookie).ok(),
                };
            }
            Some(Sticky::Header(name)) => req.headers.get(name).map(HeaderValue::as_bytes),
            Some(Sticky::Consumer) => consumer.map(str::as_bytes),
            None => None,
        };
        let point = key.map_or_else(|| fastrand::u64(..), fnv1a);
        Choice {
            side: self.by_weight(point, available),
            set_cookie: None,
        }
    }

    /// The weighted side `point` falls on, among available sides when there are any (all
    /// sides otherwise: their own balancers then answer, e.g. in panic mode). A key's point
    /// is fixed, so it lands on the same side while the available set stays the same.
    fn by_weight(&self, point: u64, available: &impl Fn(usize) -> bool) -> usize {
        let mut open = [false; MAX_SIDES];
        let mut total = 0u64;
        for (k, (w, i)) in self.weighted.iter().enumerate() {
            if k < open.len() && available(*i) {
                open[k] = true;
                total += u64::from(*w);
            }
        }
        let none_available = total == 0;
        let usable = |k: usize| none_available || open.get(k).copied().unwrap_or(false);
        if none_available {
            total = self.weighted.iter().map(|(w, _)| u64::from(*w)).sum();
        }
        let mut at = point % total.max(1);
        for (k, (w, i)) in self.weighted.iter().enumerate() {
            if !usable(k) {
                continue;
            }
            if at < u64::from(*w) {
                return *i;
            }
            at -= u64::from(*w);
        }
        self.weighted.first().map_or(0, |(_, i)| *i)
    }
}

/// The sticky cookie's value for a service: 12 hex digits of its SHA-256.
fn token(service: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, service.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// FNV-1a: a stable spread of sticky keys over the weights (the same key, the same side, in
/// every process and version).
fn fnv1a(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_distinct() {
        assert_eq!(token("trading"), token("trading"));
        assert_ne!(token("trading"), token("trading-v2"));
        assert_eq!(token("trading").len(), 12);
        assert_eq!(fnv1a(b"alice"), fnv1a(b"alice"));
    }
}
