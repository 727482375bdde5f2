//! Forward authentication: the request's credentials go to an auth service, which decides.
//! A 2xx admits (and may hand headers to the upstream request), a 401 or 403 is passed to the
//! client as the service wrote it, anything else — another status, a timeout, a refused
//! connection — means the service could not decide. The service sees `X-Forwarded-Method`,
//! `-Proto`, `-Host`, `-Uri` and `-For` besides the configured headers (Traefik's names).
//!
//! With `cache`, an admit is reused for the same forwarded credentials (every configured
//! header's value) on every route of the policy: leave it unset when the service decides by
//! path. Refusals are never cached. A request carrying none of the configured headers is
//! never cached either (it has no credential to key on).

use super::verdicts::{Verdict, VerifiedCache};
use super::Identity;
use crate::config::OnAuthError;
use crate::http_call::{Caller, Endpoint};
use crate::reply::Answer;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest auth-service body passed to a client.
const MAX_BODY: usize = 64 * 1024;
/// Credentials kept admitted at once, per policy.
const CACHE_SIZE: usize = 10_000;

/// A compiled `type: forward_auth` policy.
pub struct ForwardSpec {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    pub cache: Option<Duration>,
    pub forward_headers: Vec<HeaderName>,
    pub copy_response_headers: Vec<HeaderName>,
    pub on_error: OnAuthError,
}

/// What the auth service is asked about.
pub struct Asked<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub host: &'a str,
    pub tls: bool,
    pub client_ip: IpAddr,
}

/// The forward-auth mechanism of one `auth` policy.
pub struct ForwardAuth {
    spec: Arc<ForwardSpec>,
    caller: Arc<Caller>,
    admitted: VerifiedCache<Identity>,
}

impl ForwardAuth {
    /// Asks `spec`'s service through `caller`.
    pub fn new(spec: Arc<ForwardSpec>, caller: Arc<Caller>) -> Self {
        Self {
            spec,
            caller,
            admitted: VerifiedCache::new(CACHE_SIZE),
        }
    }

    /// Whether the policy lets requests through when the service cannot answer.
    pub fn allows_on_error(&self) -> bool {
        self.spec.on_error == OnAuthError::Allow
    }

    /// The auth service's verdict on a request.
    pub async fn authenticate(&self, asked: &Asked<'_>) -> Verdict {
        let cache_key = self
            .spec
            .cache
            .and_then(|_| self.credential_key(asked.headers));
        if let Some(identity) = cache_key.as_ref().and_then(|k| self.admitted.get(k)) {
            return Verdict::Admit(identity);
        }
        let headers = self.forwarded(asked);
        // Boxed: a connector call's future is tens of kilobytes, and every future awaiting
        // this one — the request filter of every route, with auth or not — would otherwise
        // carry it and be copied whole (callgrind: +11k instructions per request on a route
        // without any policy).
        let call = Box::pin(self.caller.call(
            &self.spec.endpoint,
            Method::GET,
            &headers,
            self.spec.timeout,
            MAX_BODY,
        ));
        let reply = match call.await {
            Ok(reply) => reply,
            Err(e) => {
                log::debug!("forward auth {:?}: {e}", self.spec.endpoint);
                return Verdict::Unavailable;
            }
        };
        match reply.status {
            200..=299 => {
                let copied: Vec<(HeaderName, HeaderValue)> = self
                    .spec
                    .copy_response_headers
                    .iter()
                    .filter_map(|h| Some((h.clone(), reply.headers.get(h)?.clone())))
                    .collect();
                let identity = Identity {
                    consumer: None,
                    headers: copied.into(),
                };
                if let (Some(key), Some(ttl)) = (cache_key, self.spec.cache) {
                    self.admitted.put(key, identity.clone(), ttl);
                }
                Verdict::Admit(identity)
            }
            401 | 403 => match denial(reply) {
                Some(answer) => Verdict::Deny(Box::new(answer)),
                None => Verdict::Invalid,
            },
            _ => Verdict::Unavailable,
        }
    }

    /// The digest of the configured headers' values; `None` when the request has none.
    fn credential_key(&self, headers: &HeaderMap) -> Option<super::Digest> {
        let mut text = Vec::new();
        let mut any = false;
        for name in &self.spec.forward_headers {
            for value in headers.get_all(name) {
                any = true;
                text.extend_from_slice(name.as_str().as_bytes());
                text.push(b':');
                text.extend_from_slice(value.as_bytes());
                text.push(b'\n');
            }
        }
        any.then(|| VerifiedCache::<Identity>::key_of(&text))
    }

    fn forwarded(&self, asked: &Asked<'_>) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.spec.forward_headers.len() + 5);
        for name in &self.spec.forward_headers {
            for value in asked.headers.get_all(name) {
                out.push((name.clone(), value.clone()));
            }
        }
        let facts = [
            ("x-forwarded-method", asked.method.as_str().to_string()),
            (
                "x-forwarded-proto",
                if asked.tls { "https" } else { "http" }.to_string(),
            ),
            ("x-forwarded-host", asked.host.to_string()),
            (
                "x-forwarded-uri",
                asked
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
            ),
            ("x-forwarded-for", asked.client_ip.to_string()),
        ];
        for (name, value) in facts {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), v));
            }
        }
        out
    }
}

/// The service's 401/403 as the client's answer: its status, body, `Content-Type` and
/// `WWW-Authenticate`.
fn denial(reply: crate::http_call::Reply) -> Option<Answer> {
    let mut answer = Answer::new(reply.status, 3, "auth_denied").ok()?;
    for name in [http::header::CONTENT_TYPE, http::header::WWW_AUTHENTICATE] {
        for value in reply.headers.get_all(&name) {
            answer
                .head
                .append_header(name.clone(), value.clone())
                .ok()?;
        }
    }
    answer.body = reply.body;
    Some(answer)
}
