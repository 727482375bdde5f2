//! CORS: the gateway answers preflights itself — before authentication and rate limits, which
//! a browser's preflight (it never carries credentials) would otherwise fail — and adds the
//! `Access-Control-*` headers to responses for allowed origins. Origins are exact
//! (`https://app.example.com`), wildcard subdomains (`https://*.example.com`: any depth, not
//! the bare domain) or `*` (never with credentials: the allowed origin is echoed instead, as
//! the Fetch standard requires). Every response of a CORS route carries `Vary: Origin`, so a
//! cache never serves one origin's answer to another. A disallowed origin gets no CORS
//! headers (`pass`) or 403 `forbidden` (`reject`); a preflight is never sent upstream.

use super::{Outcome, Refusal, Request, State};
use crate::config::{CorsConfig, OnDisallowed, Problems};
use crate::reply::{Answer, ErrorCode};
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::ResponseHeader;

const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// A compiled `cors` entry.
#[derive(Debug)]
pub struct Cors {
    exact: Vec<String>,
    /// `(scheme://, .suffix)` of wildcard origins.
    wildcards: Vec<(String, String)>,
    any: bool,
    methods: Vec<Method>,
    /// Lower-case allowed request headers.
    headers: Vec<String>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
    reject: bool,
    shadow: bool,
}

impl Cors {
    /// Compiles `cors.NAME`.
    pub fn compile(name: &str, cfg: &CorsConfig, problems: &mut Problems) -> Cors {
        let at = format!("cors.{name}");
        let (mut exact, mut wildcards, mut any) = (Vec::new(), Vec::new(), false);
        for (i, origin) in cfg.origins.iter().enumerate() {
            match parse_origin(origin) {
                Ok(Pattern::Any) => any = true,
                Ok(Pattern::Exact(o)) => exact.push(o),
                Ok(Pattern::Wildcard(scheme, suffix)) => wildcards.push((scheme, suffix)),
                Err(e) => problems.push(format!("{at}.origins[{i}]"), e),
            }
        }
        if cfg.origins.is_empty() {
            problems.push(format!("{at}.origins"), "needs at least one origin");
        }
        if any && cfg.credentials {
            problems.push(
                format!("{at}.credentials"),
                "`*` may not be used with credentials; list the origins",
            );
        }
        let names: Vec<String> = if cfg.methods.is_empty() {
            DEFAULT_METHODS.iter().map(|m| m.to_string()).collect()
        } else {
            cfg.methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        let mut methods = Vec::new();
        for (i, m) in names.iter().enumerate() {
            match Method::from_bytes(m.as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => problems.push(format!("{at}.methods[{i}]"), format!("bad method {m:?}")),
            }
        }
        let headers: Vec<String> = cfg.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        for (field, list) in [("headers", &headers), ("expose", &cfg.expose)] {
            for (i, h) in list.iter().enumerate() {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    problems.push(
                        format!("{at}.{field}[{i}]"),
                        format!("bad header name {h:?}"),
                    );
                }
            }
        }
        let joined = |list: &[String]| {
            (!list.is_empty())
                .then(|| HeaderValue::from_str(&list.join(", ")).ok())
                .flatten()
        };
        Cors {
            exact,
            wildcards,
            any,
            allow_methods: joined(&names).unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
            allow_headers: joined(&headers),
            expose: joined(&cfg.expose),
            max_age: cfg.max_age.map(|d| HeaderValue::from(d.as_secs())),
            methods,
            headers,
            credentials: cfg.credentials,
            reject: cfg.on_disallowed == OnDisallowed::Reject,
            shadow: cfg.shadow,
        }
    }

    /// Shadow mode asked for in the file.
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// Answers a preflight, remembers an allowed origin for the response, or refuses a
    /// disallowed one under `reject`.
    pub fn check(&self, req: &Request<'_>, state: &mut State) -> Outcome {
        let Some(origin) = req.headers.get(http::header::ORIGIN) else {
            return Outcome::Continue;
        };
        let allowed = self.allows(origin);
        let asked = req.headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        match asked {
            Some(asked) if req.method == Method::OPTIONS => {
                match self.preflight(origin, asked, req.headers, allowed) {
                    Some(answer) => Outcome::Answer(Box::new(answer)),
                    None => Outcome::Refuse(Refusal::new(ErrorCode::Forbidden)),
                }
            }
            _ if allowed => {
                state.allow_origin(origin.clone());
                Outcome::Continue
            }
            _ if self.reject => Outcome::Refuse(Refusal::new(ErrorCode::Forbidden)),
            _ => Outcome::Continue,
        }
    }

    /// The preflight's answer: 204 with the grant when origin, method and headers are all
    /// allowed, 204 without it under `pass`, `None` (403) under `reject`.
    fn preflight(
        &self,
        origin: &HeaderValue,
        asked: &HeaderValue,
        headers: &HeaderMap,
        allowed: bool,
    ) -> Option<Answer> {
        let method_ok = Method::from_bytes(asked.as_bytes())
            .is_ok_and(|m| self.methods.contains(&m) || is_simple(&m));
        let headers_ok = headers
            .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
            });
        let granted = allowed && method_ok && headers_ok;
        if !granted && self.reject {
            return None;
        }
        let mut answer = Answer::new(204, 8, "cors_preflight").ok()?;
        let head = &mut answer.head;
        head.insert_header(
            http::header::VARY,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
        .ok()?;
        if granted {
            self.grant(head, origin).ok()?;
            head.insert_header(
                http::header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            )
            .ok()?;
            if let Some(h) = &self.allow_headers {
                head.insert_header(http::header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone())
                    .ok()?;
            }
            if let Some(age) = &self.max_age {
                head.insert_header(http::header::ACCESS_CONTROL_MAX_AGE, age.clone())
                    .ok()?;
            }
        }
        Some(answer)
    }

    /// Adds the grant for the origin the request phase allowed, and `Vary: Origin` always.
    pub fn apply(&self, resp: &mut ResponseHeader, state: &State) -> pingora::Result<()> {
        add_vary_origin(resp)?;
        let Some(origin) = state.cors_origin() else {
            return Ok(());
        };
        self.grant(resp, origin)?;
        if let Some(expose) = &self.expose {
            resp.insert_header(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone())?;
        }
        Ok(())
    }

    /// The grant's headers for a refusal made after this policy allowed the origin (a 429
    /// a script should be able to read).
    pub fn refusal_headers(&self, state: &State, out: &mut Vec<(&'static str, HeaderValue)>) {
        out.push(("Vary", HeaderValue::from_static("Origin")));
        if let Some(origin) = state.cors_origin() {
            out.push(("Access-Control-Allow-Origin", self.allowed_origin(origin)));
            if self.credentials {
                out.push((
                    "Access-Control-Allow-Credentials",
                    HeaderValue::from_static("true"),
                ));
            }
        }
    }

    fn grant(&self, head: &mut ResponseHeader, origin: &HeaderValue) -> pingora::Result<()> {
        head.insert_header(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allowed_origin(origin),
        )?;
        if self.credentials {
            head.insert_header(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
        }
        Ok(())
    }

    /// `*` for an any-origin policy without credentials, else the origin itself.
    fn allowed_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.any {
            return true;
        }
        self.exact.iter().any(|o| o.eq_ignore_ascii_case(origin))
            || self.wildcards.iter().any(|(scheme, suffix)| {
                origin.len() > scheme.len() + suffix.len()
                    && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
                    && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && is_host_label_run(&origin[scheme.len()..origin.len() - suffix.len()])
            })
    }
}

/// Adds `Origin` to `Vary`, keeping what the upstream listed.
fn add_vary_origin(resp: &mut ResponseHeader) -> pingora::Result<()> {
    let has = resp.headers.get_all(http::header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
        })
    });
    if !has {
        resp.append_header(http::header::VARY, "Origin")?;
    }
    Ok(())
}

/// Methods a browser sends without asking for them.
fn is_simple(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD || m == Method::POST
}

/// What a wildcard's `*` may stand for: one or more DNS labels (no port, no path, no
/// user-info), so `https://*.example.com` never admits `https://evil.com/.example.com`.
fn is_host_label_run(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

enum Pattern {
    Any,
    Exact(String),
    Wildcard(String, String),
}

/// Checks an origin as written in the file: `scheme://host[:port]`, no path.
fn parse_origin(text: &str) -> Result<Pattern, String> {
    if text == "*" {
        return Ok(Pattern::Any);
    }
    let bad = || format!("{text:?} is not an origin (scheme://host[:port], or `*`)");
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '@'])
    {
        return Err(bad());
    }
    if let Some(suffix) = rest.strip_prefix("*.") {
        if suffix.contains('*') || suffix.is_empty() {
            return Err(bad());
        }
        return Ok(Pattern::Wildcard(
            format!("{scheme}://"),
            format!(".{}", suffix.to_ascii_lowercase()),
        ));
    }
    if rest.contains('*') {
        return Err(format!(
            "{text:?}: a wildcard may only be the first label (https://*.example.com)"
        ));
    }
    Ok(Pattern::Exact(text.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        let cfg = CorsConfig {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            credentials,
            ..CorsConfig::default()
        };
        let mut problems = Problems::default();
        let c = Cors::compile("web", &cfg, &mut problems);
        assert!(
            problems.is_empty(),
            "{:?}",
            problems.iter().collect::<Vec<_>>()
        );
        c
    }

    #[test]
    fn exact_and_wildcard_origins() {
        let c = cors(&["https://app.example.com", "https://*.example.com"], true);
        let ok = |o: &str| c.allows(&HeaderValue::from_str(o).unwrap());
        assert!(ok("https://app.example.com"));
        assert!(ok("https://APP.example.com"));
        assert!(ok("https://a.b.example.com"));
        assert!(
            !ok("https://example.com"),
            "the bare domain is not a subdomain"
        );
        assert!(!ok("http://a.example.com"), "scheme matters");
        assert!(!ok("https://evil.com/.example.com"));
        assert!(!ok("https://evilexample.com"));
        assert!(!ok("https://a.example.com.evil.com"));
        assert!(!ok("null"));
    }

    #[test]
    fn origin_mistakes_are_found() {
        let cfg = CorsConfig {
            origins: vec![
                "app.example.com".into(),
                "https://a.*.example.com".into(),
                "https://x.com/path".into(),
                "*".into(),
            ],
            credentials: true,
            ..CorsConfig::default()
        };
        let mut problems = Problems::default();
        Cors::compile("web", &cfg, &mut problems);
        let shown: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(
            shown,
            [
                "cors.web.origins[0]",
                "cors.web.origins[1]",
                "cors.web.origins[2]",
                "cors.web.credentials"
            ]
        );
    }
}
