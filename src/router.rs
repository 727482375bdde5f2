//! The route table: host, path prefix, method and header matching (first match in list order)
//! and each route's path rewrite. Compiled once per configuration; matching allocates nothing.
//! The table is generic over what a route carries (`Router<R>`), so matching is tested
//! without any upstream, and each compiled route holds its own target.

use crate::config::{MatchConfig, Problems, RouteConfig};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;

/// Methods a route may name; anything else is almost always a typo.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

/// A host criterion.
#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain, not the apex.
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// How the upstream path is derived from the downstream one.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    Keep,
    StripPrefix(String),
    Regex(Regex, String),
}

impl PathRewrite {
    /// Compiles a route's `strip_prefix` / `rewrite` (at `at`, e.g. `routes[2]`).
    pub fn compile(r: &RouteConfig, at: &str, problems: &mut Problems) -> Self {
        let prefix = r.matcher.path_prefix.trim_end_matches('/');
        match (&r.rewrite, r.strip_prefix) {
            (Some(_), true) => {
                problems.push(
                    format!("{at}.rewrite"),
                    "use either strip_prefix or rewrite, not both",
                );
                PathRewrite::Keep
            }
            (Some(rw), false) => {
                if !rw.to.starts_with('/') && !rw.to.starts_with('$') {
                    problems.push(
                        format!("{at}.rewrite.to"),
                        "must start with '/' or a capture reference",
                    );
                }
                match Regex::new(&rw.regex) {
                    Ok(re) => PathRewrite::Regex(re, rw.to.clone()),
                    Err(e) => {
                        problems.push(format!("{at}.rewrite.regex"), format!("bad regex: {e}"));
                        PathRewrite::Keep
                    }
                }
            }
            (None, true) if !prefix.is_empty() => PathRewrite::StripPrefix(prefix.to_string()),
            (None, _) => PathRewrite::Keep,
        }
    }

    /// The new path-and-query, or `None` when the request goes upstream unchanged.
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let new_path = match self {
            PathRewrite::Keep => return None,
            PathRewrite::StripPrefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
                if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("/{rest}")
                }
            }
            PathRewrite::Regex(re, to) => re.replace(path, to.as_str()).into_owned(),
        };
        Some(match query {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        })
    }
}

/// What a request must carry for a route to match.
#[derive(Debug, Clone)]
pub struct Matcher {
    hosts: Vec<HostPattern>,
    /// The path prefix without a trailing `/` (empty for `/`).
    prefix: String,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Matcher {
    /// Compiles a route's `match` section (at `at`, e.g. `routes[2].match`).
    pub fn compile(m: &MatchConfig, at: &str, problems: &mut Problems) -> Self {
        if !m.path_prefix.starts_with('/') {
            problems.push(format!("{at}.path_prefix"), "must start with '/'");
        }
        let mut hosts = Vec::with_capacity(m.hosts.len());
        for (i, h) in m.hosts.iter().enumerate() {
            let bare = h.strip_prefix("*.").unwrap_or(h);
            if bare.is_empty() || bare.contains(['*', '/', ' ', ':']) {
                problems.push(
                    format!("{at}.hosts[{i}]"),
                    format!("bad host {h:?}: expected a name or *.suffix"),
                );
                continue;
            }
            hosts.push(match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
                None => HostPattern::Exact(h.to_ascii_lowercase()),
            });
        }
        let mut methods = Vec::with_capacity(m.methods.len());
        for (i, method) in m.methods.iter().enumerate() {
            match method.parse::<Method>() {
                Ok(parsed) if METHODS.contains(&method.as_str()) => methods.push(parsed),
                _ => problems.push(
                    format!("{at}.methods[{i}]"),
                    format!(
                        "unknown method {method:?}; expected one of {}",
                        METHODS.join(", ")
                    ),
                ),
            }
        }
        let mut headers = Vec::with_capacity(m.headers.len());
        for (name, value) in &m.headers {
            if let Some(pair) = header_pair(name, value, &format!("{at}.headers.{name}"), problems)
            {
                headers.push(pair);
            }
        }
        Self {
            hosts,
            prefix: m.path_prefix.trim_end_matches('/').to_string(),
            methods,
            headers,
        }
    }

    /// The path prefix the route matches (without a trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn matches(&self, req: &RequestFacts) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(req.host)))
            && path_has_prefix(req.path, &self.prefix)
            // TRACE reflects the request (cookies, credentials) back: only a route that names
            // it matches it.
            && (if self.methods.is_empty() {
                req.method != Method::TRACE
            } else {
                self.methods.contains(req.method)
            })
            && self
                .headers
                .iter()
                .all(|(k, v)| req.headers.get(k) == Some(v))
    }
}

/// A typed header name and value, or a problem at `at`.
pub fn header_pair(
    name: &str,
    value: &str,
    at: &str,
    problems: &mut Problems,
) -> Option<(HeaderName, HeaderValue)> {
    let parsed_name = HeaderName::from_bytes(name.as_bytes());
    let parsed_value = HeaderValue::from_str(value);
    if parsed_name.is_err() {
        problems.push(at, format!("bad header name {name:?}"));
    }
    if parsed_value.is_err() {
        problems.push(at, format!("bad header value {value:?}"));
    }
    Some((parsed_name.ok()?, parsed_value.ok()?))
}

/// A prefix matches whole path segments: `/api` matches `/api` and `/api/x`, not `/apix`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// What routing looks at in a request.
pub struct RequestFacts<'a> {
    /// Host without port.
    pub host: &'a str,
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Strips the port from a `Host` value (`example.com:8080`, `[::1]:80`).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The ordered route table; `R` is what a matched route leads to.
#[derive(Debug, Clone)]
pub struct Router<R> {
    matchers: Vec<Matcher>,
    routes: Vec<R>,
}

impl<R> Default for Router<R> {
    fn default() -> Self {
        Self {
            matchers: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl<R> Router<R> {
    /// A table of `(matcher, route)` in match order.
    pub fn new(entries: impl IntoIterator<Item = (Matcher, R)>) -> Self {
        let (matchers, routes) = entries.into_iter().unzip();
        Self { matchers, routes }
    }

    /// Index of the first route matching the request.
    pub fn find(&self, req: &RequestFacts) -> Option<usize> {
        self.matchers.iter().position(|m| m.matches(req))
    }

    /// The route at `index` (from [`Router::find`]).
    pub fn route(&self, index: usize) -> &R {
        &self.routes[index]
    }

    /// All routes in match order.
    pub fn routes(&self) -> &[R] {
        &self.routes
    }

    /// The matcher of the route at `index`.
    pub fn matcher(&self, index: usize) -> &Matcher {
        &self.matchers[index]
    }

    /// The same table leading to `f(route)` instead.
    pub fn map<S>(self, f: impl FnMut(R) -> S) -> Router<S> {
        Router {
            matchers: self.matchers,
            routes: self.routes.into_iter().map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn router(yaml_routes: &str) -> Router<String> {
        let text =
            format!("routes:\n{yaml_routes}\nservices:\n  s:\n    instances: [\"127.0.0.1:1\"]\n");
        let mut problems = Problems::default();
        let routes = load_str("t", &text).unwrap().routes;
        let router = Router::new(routes.iter().map(|r| {
            (
                Matcher::compile(&r.matcher, "m", &mut problems),
                r.name.clone(),
            )
        }));
        assert!(problems.is_empty(), "{problems:?}");
        router
    }

    fn find(
        r: &Router<String>,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let method: Method = method.parse().unwrap();
        r.find(&RequestFacts {
            host,
            path,
            method: &method,
            headers: &map,
        })
        .map(|i| r.route(i).clone())
    }

    #[test]
    fn first_matching_route_wins() {
        let r = router("  - {name: a, service: s, match: {path_prefix: /api/v1}}\n  - {name: b, service: s, match: {path_prefix: /api}}\n  - {name: c, service: s}");
        assert_eq!(find(&r, "x", "GET", "/api/v1/x", &[]).as_deref(), Some("a"));
        assert_eq!(find(&r, "x", "GET", "/api/v2", &[]).as_deref(), Some("b"));
        assert_eq!(find(&r, "x", "GET", "/apix", &[]).as_deref(), Some("c"));
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_suffix() {
        let r =
            router("  - {name: a, service: s, match: {hosts: [api.example.com, \"*.shop.io\"]}}");
        assert!(find(&r, "API.example.com", "GET", "/", &[]).is_some());
        assert!(find(&r, "eu.shop.io", "GET", "/", &[]).is_some());
        assert!(find(&r, "shop.io", "GET", "/", &[]).is_none());
        assert!(find(&r, "example.com", "GET", "/", &[]).is_none());
    }

    #[test]
    fn methods_and_headers_must_match() {
        let r = router(
            "  - {name: a, service: s, match: {methods: [POST], headers: {x-tenant: acme}}}",
        );
        assert!(find(&r, "h", "POST", "/", &[("x-tenant", "acme")]).is_some());
        assert!(find(&r, "h", "GET", "/", &[("x-tenant", "acme")]).is_none());
        assert!(find(&r, "h", "POST", "/", &[("x-tenant", "other")]).is_none());
        assert!(find(&r, "h", "POST", "/", &[]).is_none());
    }

    #[test]
    fn strip_prefix_and_regex_rewrite_keep_the_query() {
        let strip = PathRewrite::StripPrefix("/api/v1".into());
        assert_eq!(
            strip.apply("/api/v1/orders", Some("a=1")).as_deref(),
            Some("/orders?a=1")
        );
        assert_eq!(strip.apply("/api/v1", None).as_deref(), Some("/"));
        let re = PathRewrite::Regex(Regex::new("^/v1/(.*)").unwrap(), "/internal/$1".into());
        assert_eq!(
            re.apply("/v1/users/7", None).as_deref(),
            Some("/internal/users/7")
        );
        assert_eq!(PathRewrite::Keep.apply("/x", None), None);
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert_eq!(host_without_port("example.com"), "example.com");
    }
}
