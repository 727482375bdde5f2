//! The compiled route table: host, path prefix, method and header matching (first match in
//! list order) plus the path rewrite and header edits of each route. Built once per config
//! snapshot; matching allocates nothing.

use crate::config::{HeaderRules, RouteConfig};
use crate::retry::RetryPolicy;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;

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

/// Header edits compiled to typed names and values.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    fn compile(rules: &HeaderRules) -> Self {
        Self {
            set: rules
                .set
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            remove: rules
                .remove
                .iter()
                .filter_map(|k| HeaderName::from_bytes(k.as_bytes()).ok())
                .collect(),
        }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub service: String,
    hosts: Vec<HostPattern>,
    prefix: String,
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub rewrite: PathRewrite,
    pub retry: RetryPolicy,
    /// Bound on the whole request, retries included.
    pub timeout: Option<std::time::Duration>,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
}

impl Route {
    /// Compiles a validated route; `None` only if validation was bypassed.
    pub fn compile(cfg: &RouteConfig) -> Option<Self> {
        let m = &cfg.matcher;
        let prefix = m.path_prefix.trim_end_matches('/').to_string();
        let rewrite = match (&cfg.rewrite, cfg.strip_prefix) {
            (Some(rw), _) => PathRewrite::Regex(Regex::new(&rw.regex).ok()?, rw.to.clone()),
            (None, true) if !prefix.is_empty() => PathRewrite::StripPrefix(prefix.clone()),
            _ => PathRewrite::Keep,
        };
        Some(Self {
            name: cfg.name.clone(),
            service: cfg.service.clone(),
            hosts: m
                .hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
                    None => HostPattern::Exact(h.to_ascii_lowercase()),
                })
                .collect(),
            prefix,
            methods: m.methods.iter().filter_map(|s| s.parse().ok()).collect(),
            headers: m
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            rewrite,
            retry: RetryPolicy::new(&cfg.retry),
            timeout: cfg.timeout,
            request_headers: HeaderEdits::compile(&cfg.request_headers),
            response_headers: HeaderEdits::compile(&cfg.response_headers),
        })
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

/// The ordered route table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Compiles validated routes in order.
    pub fn new(routes: &[RouteConfig]) -> Self {
        Self {
            routes: routes.iter().filter_map(Route::compile).collect(),
        }
    }

    /// Index of the first route matching the request.
    pub fn find(&self, req: &RequestFacts) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(req))
    }

    /// The route at `index`.
    pub fn route(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// All routes in match order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn router(yaml_routes: &str) -> Router {
        let text =
            format!("routes:\n{yaml_routes}\nservices:\n  s:\n    instances: [\"127.0.0.1:1\"]\n");
        Router::new(&load_str("t", &text).unwrap().routes)
    }

    fn find(
        r: &Router,
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
        .map(|i| r.route(i).name.clone())
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
