//! The per-route policy chain. A policy is a unit of request-path behaviour that some routes
//! have and others not (rate limits and header edits today; IP rules, CORS, authentication,
//! ACLs, concurrency limits next). Each route's chain is compiled once per snapshot, and the
//! proxy hooks run the part of it for their phase, in a fixed order:
//!
//! | phase | hook | policies |
//! |---|---|---|
//! | access | `request_filter`, after routing | IP rules, CORS (preflight answered here), authentication and ACL |
//! | admission | `request_filter`, after access | rate limits, concurrency limit |
//! | upstream request | `upstream_request_filter` | identity headers (credentials out, consumer in), request header edits |
//! | response | `response_filter` | response header edits, CORS headers |
//! | response body | `response_filter`, `response_body_filter` | compression (negotiated in admission) |
//! | log | `logging` | business KPIs |
//!
//! **Why an enum per phase, not a trait object.** Each phase has its own signature (an async
//! check that may refuse, a header edit, a log record), so one `Policy` trait would carry
//! methods most policies leave empty. An enum per phase dispatches statically — an async
//! check needs no boxed future per call, which a `dyn` async trait would allocate on every
//! request — and a `match` shows every policy of a phase in one place. Adding a policy is one
//! module with its compiled config type, plus one variant in the phases it takes part in.
//!
//! **Shadow mode** belongs to the chain, not to a policy: any enforcing policy (access or
//! admission) runs in a [`Gate`] with a [`Mode`]; a refusal in shadow mode is counted in
//! `portico_policy_refusals_total{mode="shadow"}` and the request goes on.

pub mod auth;
pub mod compress;
pub mod concurrency;
pub mod cors;
pub mod headers;
pub mod ip_rules;
pub mod kpis;
pub mod ratelimit;

use crate::reply::ErrorCode;
use crate::telemetry::policy::refusal_counter;
use http::{HeaderMap, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use prometheus::IntCounter;
use std::net::IpAddr;

/// Whether a refusal is enforced or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Decide and count, never refuse.
    Shadow,
}

impl Mode {
    /// `Shadow` when `shadow` is set.
    pub fn shadow_if(shadow: bool) -> Self {
        if shadow {
            Mode::Shadow
        } else {
            Mode::Enforce
        }
    }

    /// The `mode` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// What an enforcing policy says about a request.
pub enum Outcome {
    Continue,
    Refuse(Refusal),
    /// The gateway answers for the route (a CORS preflight); never counted as a refusal.
    Answer(Box<crate::reply::Answer>),
    /// A refusal the policy wrote itself (a forward-auth service's 401/403); counted as a
    /// refusal, and it ends the run even in shadow mode (there is nothing else to send).
    Reject(Box<crate::reply::Answer>),
}

/// A gateway-made answer instead of the upstream's.
#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    /// Headers the answer carries besides the usual ones (e.g. `Retry-After`).
    pub headers: Vec<(&'static str, HeaderValue)>,
}

impl Refusal {
    /// A refusal with no extra headers.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            headers: Vec::new(),
        }
    }
}

/// The request as enforcing policies see it.
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    pub uri: &'a http::Uri,
    /// The `Host` (or `:authority`) without the port; empty when absent.
    pub host: &'a str,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The client address, after trusted proxies.
    pub client_ip: IpAddr,
}

/// What policies learn about a request and later phases use.
#[derive(Default)]
pub struct State {
    /// `RateLimit-*` values of the most restrictive rule, for the response.
    pub rate_headers: Option<crate::ratelimit::RateHeaders>,
    /// What edge policies hold for the request; boxed and made only by routes that have them,
    /// so the request context every request moves around stays small.
    edge: Option<Box<EdgeState>>,
}

/// What CORS, authentication and concurrency limits keep for one request.
#[derive(Default)]
struct EdgeState {
    cors_origin: Option<HeaderValue>,
    identity: Option<crate::identity::Identity>,
    slot: Option<concurrency::Slot>,
}

impl State {
    /// The origin CORS allowed, echoed in the response.
    pub fn cors_origin(&self) -> Option<&HeaderValue> {
        self.edge.as_ref()?.cors_origin.as_ref()
    }

    /// Remembers the origin CORS allowed.
    pub fn allow_origin(&mut self, origin: HeaderValue) {
        self.edge.get_or_insert_default().cors_origin = Some(origin);
    }

    /// Who the request proved to be.
    pub fn identity(&self) -> Option<&crate::identity::Identity> {
        self.edge.as_ref()?.identity.as_ref()
    }

    /// The consumer the request proved to be.
    pub fn consumer(&self) -> Option<&crate::identity::Consumer> {
        self.identity()?.consumer.as_deref()
    }

    /// Remembers who the request proved to be.
    pub fn authenticate(&mut self, identity: crate::identity::Identity) {
        self.edge.get_or_insert_default().identity = Some(identity);
    }

    /// Holds the request's place in the route's concurrency limit until the request ends.
    pub fn hold(&mut self, slot: concurrency::Slot) {
        self.edge.get_or_insert_default().slot = Some(slot);
    }

    /// Gives back what the request holds (its concurrency slot).
    pub fn release(&mut self) {
        if let Some(edge) = self.edge.as_mut() {
            edge.slot = None;
        }
    }
}

/// Access-phase policies: who may use the route at all.
pub enum Access {
    Ip(ip_rules::IpRule),
    Cors(std::sync::Arc<cors::Cors>),
    Auth(auth::Auth),
}

impl Access {
    async fn check(&self, req: &Request<'_>, state: &mut State, _mode: Mode) -> Outcome {
        match self {
            Access::Ip(p) => p.check(req),
            Access::Cors(p) => p.check(req, state),
            Access::Auth(p) => p.check(req, state).await,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Access::Ip(_) => "ip",
            Access::Cors(_) => "cors",
            Access::Auth(_) => "auth",
        }
    }
}

/// Admission-phase policies: whether the route takes this request now.
pub enum Admission {
    RateLimit(ratelimit::RateLimit),
    Concurrency(concurrency::Concurrency),
}

impl Admission {
    async fn check(&self, req: &Request<'_>, state: &mut State, mode: Mode) -> Outcome {
        match self {
            Admission::RateLimit(p) => p.check(req, state, mode).await,
            Admission::Concurrency(p) => p.check(req, state),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Admission::RateLimit(_) => "rate_limit",
            Admission::Concurrency(_) => "concurrency",
        }
    }
}

/// Upstream-request-phase policies: edits of the request sent upstream.
pub enum RequestEdit {
    Identity(auth::IdentityHeaders),
    Headers(headers::HeaderEdits),
}

/// Response-phase policies: edits of the response sent to the client.
pub enum ResponseEdit {
    Headers(headers::HeaderEdits),
    Cors(std::sync::Arc<cors::Cors>),
}

/// Log-phase policies: what a finished request is counted as.
pub enum Log {
    Kpis(kpis::KpiCounters),
}

/// An enforcing policy with its mode and refusal counter.
pub struct Gate<P> {
    policy: P,
    mode: Mode,
    refused: IntCounter,
}

/// One route's policies, phase by phase.
#[derive(Default)]
pub struct Chain {
    access: Vec<Gate<Access>>,
    admission: Vec<Gate<Admission>>,
    upstream_request: Vec<RequestEdit>,
    response: Vec<ResponseEdit>,
    compress: Option<compress::Compress>,
    log: Vec<Log>,
}

/// Builds a route's chain.
pub struct ChainBuilder {
    route: String,
    chain: Chain,
}

impl ChainBuilder {
    /// An empty chain for `route`.
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_string(),
            chain: Chain::default(),
        }
    }

    /// Adds an admission policy.
    pub fn admission(mut self, policy: Admission, mode: Mode) -> Self {
        let refused = refusal_counter(&self.route, policy.kind(), mode.as_str());
        self.chain.admission.push(Gate {
            policy,
            mode,
            refused,
        });
        self
    }

    /// Adds an access policy.
    pub fn access(mut self, policy: Access, mode: Mode) -> Self {
        let refused = refusal_counter(&self.route, policy.kind(), mode.as_str());
        self.chain.access.push(Gate {
            policy,
            mode,
            refused,
        });
        self
    }

    /// Adds an upstream-request edit (skipped when it does nothing).
    pub fn upstream_request(mut self, edit: RequestEdit) -> Self {
        if !matches!(&edit, RequestEdit::Headers(h) if h.is_empty()) {
            self.chain.upstream_request.push(edit);
        }
        self
    }

    /// Adds a response edit (skipped when it does nothing).
    pub fn response(mut self, edit: ResponseEdit) -> Self {
        if !matches!(&edit, ResponseEdit::Headers(h) if h.is_empty()) {
            self.chain.response.push(edit);
        }
        self
    }

    /// Compresses the route's responses.
    pub fn compress(mut self, compress: compress::Compress) -> Self {
        self.chain.compress = Some(compress);
        self
    }

    /// Adds a log policy.
    pub fn log(mut self, policy: Log) -> Self {
        let Log::Kpis(k) = &policy;
        if !k.is_empty() {
            self.chain.log.push(policy);
        }
        self
    }

    /// The finished chain.
    pub fn build(self) -> Chain {
        self.chain
    }
}

impl Chain {
    /// Runs the access then the admission policies; the first enforced refusal or answer
    /// ends the run.
    pub async fn admit(&self, req: &Request<'_>, state: &mut State) -> Outcome {
        for gate in &self.access {
            let outcome = gate.policy.check(req, state, gate.mode).await;
            if let Some(end) = gate.settle(outcome) {
                return end;
            }
        }
        for gate in &self.admission {
            let outcome = gate.policy.check(req, state, gate.mode).await;
            if let Some(end) = gate.settle(outcome) {
                return end;
            }
        }
        Outcome::Continue
    }

    /// Headers a refusal carries for the response-phase policies (CORS, so a script can
    /// read a 429 or 503 the gateway made).
    pub fn refusal_headers(&self, state: &State, out: &mut Vec<(&'static str, HeaderValue)>) {
        for edit in &self.response {
            if let ResponseEdit::Cors(c) = edit {
                c.refusal_headers(state, out);
            }
        }
    }

    /// The route's compression, if it compresses.
    pub fn compression(&self) -> Option<&compress::Compress> {
        self.compress.as_ref()
    }

    /// Whether the access and admission phases have nothing to run.
    pub fn admits_everything(&self) -> bool {
        self.access.is_empty() && self.admission.is_empty()
    }

    /// Applies the upstream-request edits.
    pub fn edit_request(&self, req: &mut RequestHeader, state: &State) -> pingora::Result<()> {
        for edit in &self.upstream_request {
            match edit {
                RequestEdit::Identity(i) => i.apply(req, state)?,
                RequestEdit::Headers(h) => h.apply(req)?,
            }
        }
        Ok(())
    }

    /// Applies the response edits.
    pub fn edit_response(&self, resp: &mut ResponseHeader, state: &State) -> pingora::Result<()> {
        for edit in &self.response {
            match edit {
                ResponseEdit::Headers(h) => h.apply(resp)?,
                ResponseEdit::Cors(c) => c.apply(resp, state)?,
            }
        }
        Ok(())
    }

    /// Runs the log policies over a finished request; calls `publish` for each matched KPI
    /// that is published as a business event.
    pub fn record(
        &self,
        done: &kpis::Finished<'_>,
        mut publish: impl FnMut(&crate::telemetry::kpi::Kpi),
    ) {
        for policy in &self.log {
            match policy {
                Log::Kpis(k) => k.record(done, &mut publish),
            }
        }
    }
}

impl<P> Gate<P> {
    /// Counts a refusal and says whether the run ends here: an answer always, a refusal only
    /// when enforced.
    fn settle(&self, outcome: Outcome) -> Option<Outcome> {
        match outcome {
            Outcome::Continue => None,
            Outcome::Answer(_) => Some(outcome),
            Outcome::Reject(_) => {
                self.refused.inc();
                Some(outcome)
            }
            Outcome::Refuse(_) => {
                self.refused.inc();
                (self.mode == Mode::Enforce).then_some(outcome)
            }
        }
    }
}

#[cfg(test)]
mod tests;
