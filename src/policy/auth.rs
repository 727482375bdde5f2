//! Authentication and ACL: the access-phase policy of a route with `auth`. The route's
//! mechanisms are asked in order and the first that admits wins; the route's `allow_groups`
//! then decide (403 `forbidden`). When none admits the answer is 401 `unauthorized` with one
//! `WWW-Authenticate` challenge per mechanism; a forward-auth service's own 401/403 goes to the
//! client as written; a credential that could not be checked (no signing keys yet, the auth
//! service down) is 503 `auth_unavailable` — never a 401 the client would take as "your
//! credentials are wrong".
//!
//! Upstream, [`IdentityHeaders`] removes the credentials and any identity header a client sent
//! (`X-Consumer-Id`, `X-Consumer-Groups`, forwarded claims: no spoofing), then announces the
//! identity that was proven.

use super::{Outcome, Refusal, Request, State};
use crate::identity::spec::Mechanism;
use crate::identity::verdicts::{Verdict, RESULTS};
use crate::identity::{Asked, Identity};
use crate::reply::ErrorCode;
use crate::telemetry::auth::decision_counter;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use prometheus::IntCounter;
use std::sync::Arc;

/// One mechanism of a route, with its decision counters (in [`RESULTS`] order).
struct Step {
    mechanism: Arc<Mechanism>,
    counters: Vec<IntCounter>,
}

impl Step {
    fn count(&self, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.counters[i].inc();
        }
    }
}

/// A route's authentication and ACL.
pub struct Auth {
    steps: Vec<Step>,
    allow_groups: Vec<String>,
    challenges: Vec<HeaderValue>,
}

impl Auth {
    /// `mechanisms` (policy name, live mechanism, challenge) tried in order on `route`.
    pub fn new(
        route: &str,
        mechanisms: Vec<(String, Arc<Mechanism>, Option<HeaderValue>)>,
        allow_groups: Vec<String>,
    ) -> Self {
        let mut challenges = Vec::new();
        let steps = mechanisms
            .into_iter()
            .map(|(policy, mechanism, challenge)| {
                challenges.extend(challenge);
                Step {
                    mechanism,
                    counters: RESULTS
                        .iter()
                        .map(|r| decision_counter(route, &policy, r))
                        .collect(),
                }
            })
            .collect();
        Self {
            steps,
            allow_groups,
            challenges,
        }
    }

    pub(super) async fn check(&self, req: &Request<'_>, state: &mut State) -> Outcome {
        let asked = Asked {
            headers: req.headers,
            method: req.method,
            uri: req.uri,
            host: req.host,
            tls: req.tls,
            client_ip: req.client_ip,
        };
        let mut unavailable = false;
        let mut denial = None;
        for step in &self.steps {
            match step.mechanism.authenticate(&asked).await {
                Verdict::Admit(identity) => return self.admit(step, identity, state),
                Verdict::Unavailable if step.mechanism.allows_on_error() => {
                    step.count("error");
                    return self.admit(step, Identity::anonymous(), state);
                }
                Verdict::Unavailable => {
                    step.count("error");
                    unavailable = true;
                }
                Verdict::Deny(answer) => {
                    step.count("invalid");
                    denial.get_or_insert(answer);
                }
                other => step.count(other.result()),
            }
        }
        if let Some(answer) = denial {
            return Outcome::Reject(answer);
        }
        if unavailable {
            let retry = HeaderValue::from_static("1");
            return Outcome::Refuse(Refusal {
                code: ErrorCode::AuthUnavailable,
                headers: vec![("Retry-After", retry)],
            });
        }
        Outcome::Refuse(Refusal {
            code: ErrorCode::Unauthorized,
            headers: self
                .challenges
                .iter()
                .map(|c| ("WWW-Authenticate", c.clone()))
                .collect(),
        })
    }

    /// The ACL on an authenticated request.
    fn admit(&self, step: &Step, identity: Identity, state: &mut State) -> Outcome {
        let allowed = self.allow_groups.is_empty()
            || identity
                .consumer
                .as_ref()
                .is_some_and(|c| c.in_any(&self.allow_groups));
        state.authenticate(identity);
        if !allowed {
            step.count("forbidden");
            return Outcome::Refuse(Refusal::new(ErrorCode::Forbidden));
        }
        step.count("allowed");
        Outcome::Continue
    }
}

/// What the upstream request loses and gains on a route where identity is in use.
pub struct IdentityHeaders {
    /// Credentials, and identity headers a client may have sent.
    remove: Vec<HeaderName>,
    /// Query parameters carrying credentials.
    remove_query: Vec<String>,
    consumer: HeaderName,
    groups: HeaderName,
}

impl IdentityHeaders {
    /// Removes `remove` (plus the consumer headers) and the `remove_query` parameters, then
    /// announces the request's identity in `consumer` and `groups`.
    pub fn new(
        mut remove: Vec<HeaderName>,
        remove_query: Vec<String>,
        consumer: HeaderName,
        groups: HeaderName,
    ) -> Self {
        remove.push(consumer.clone());
        remove.push(groups.clone());
        remove.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        remove.dedup();
        Self {
            remove,
            remove_query,
            consumer,
            groups,
        }
    }

    pub(super) fn apply(&self, req: &mut RequestHeader, state: &State) -> pingora::Result<()> {
        for name in &self.remove {
            req.remove_header(name);
        }
        if !self.remove_query.is_empty() {
            strip_query(req, &self.remove_query)?;
        }
        let Some(identity) = state.identity() else {
            return Ok(());
        };
        if let Some((id, groups)) = identity.header_values() {
            req.insert_header(self.consumer.clone(), id.clone())?;
            if !groups.is_empty() {
                req.insert_header(self.groups.clone(), groups.clone())?;
            }
        }
        for (name, value) in identity.headers.iter() {
            req.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}

/// The request's URI without the `names` query parameters.
fn strip_query(req: &mut RequestHeader, names: &[String]) -> pingora::Result<()> {
    let Some(query) = req.uri.query() else {
        return Ok(());
    };
    let mut kept = Some(query.to_string());
    for name in names {
        kept = kept.and_then(|q| crate::identity::api_key::without_param(&q, name));
    }
    if kept.as_deref() == Some(query) {
        return Ok(());
    }
    let path = req.uri.path();
    let text = match kept {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let uri = text.parse::<http::Uri>().map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InternalError,
            "query without credential",
            e,
        )
    })?;
    req.set_uri(uri);
    Ok(())
}
