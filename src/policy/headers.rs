//! Header edits: a route's `request_headers` (upstream-request phase) and `response_headers`
//! (response phase) — `remove` first, then `set` — with names and values compiled once.

use crate::config::{HeaderRules, Problems};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// Header edits compiled to typed names and values.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// Compiles a `request_headers` / `response_headers` section at `at`.
    pub fn compile(rules: &HeaderRules, at: &str, problems: &mut Problems) -> Self {
        let mut set = Vec::with_capacity(rules.set.len());
        for (name, value) in &rules.set {
            let at = format!("{at}.set.{name}");
            if let Some(pair) = crate::router::header_pair(name, value, &at, problems) {
                set.push(pair);
            }
        }
        let mut remove = Vec::with_capacity(rules.remove.len());
        for (i, name) in rules.remove.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => remove.push(n),
                Err(_) => problems.push(
                    format!("{at}.remove[{i}]"),
                    format!("bad header name {name:?}"),
                ),
            }
        }
        Self { set, remove }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Removes, then sets, on a request or response header.
    pub fn apply(&self, headers: &mut impl EditHeaders) -> Result<()> {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone())?;
        }
        Ok(())
    }
}

/// Pingora's request and response headers, so one edit routine serves both.
pub trait EditHeaders {
    fn remove(&mut self, name: &HeaderName);
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()>;
}

impl EditHeaders for RequestHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}

impl EditHeaders for ResponseHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn insert(&mut self, name: HeaderName, value: HeaderValue) -> Result<()> {
        self.insert_header(name, value)
    }
}
