//! The rate-limit policy: one admission gate per rule a route names. Every rule must allow
//! the request; the first enforced refusal answers 429 with `Retry-After` (a missing key under
//! `on_missing_key: reject` answers 400), and rules after it are not consulted, so they spend
//! nothing. Each rule leaves its `RateLimit-*` values in the request's policy state; the
//! response reports the most restrictive.

use super::{Mode, Outcome, Refusal, Request, State};
use crate::ratelimit::key::{extract, Extracted, Source};
use crate::ratelimit::{RateHeaders, Rule};
use crate::reply::ErrorCode;
use crate::telemetry::ratelimit::{Outcome as Counted, RuleMetrics};
use http::HeaderValue;
use std::sync::Arc;

/// One rule on one route.
pub struct RateLimit {
    rule: Arc<Rule>,
    route: String,
    metrics: RuleMetrics,
}

impl RateLimit {
    /// `rule` applied on `route` (its decision series are created now).
    pub fn new(route: &str, rule: Arc<Rule>) -> Self {
        Self {
            metrics: RuleMetrics::new(route, rule.name(), rule.is_shared()),
            route: route.to_string(),
            rule,
        }
    }

    /// The rule's mode: `shadow: true` rules never refuse.
    pub fn mode(&self) -> Mode {
        Mode::shadow_if(self.rule.is_shadow())
    }

    pub(super) async fn check(&self, req: &Request<'_>, state: &mut State, mode: Mode) -> Outcome {
        let spec = self.rule.spec();
        let consumer = state.consumer();
        let from = Source {
            headers: req.headers,
            client_ip: req.client_ip,
            consumer: consumer.map(|c| c.name.as_str()),
            route: &self.route,
        };
        let key = match extract(spec.key_kind(), spec.on_missing_key(), &from) {
            Extracted::Key(k) => k,
            Extracted::Skip => return Outcome::Continue,
            Extracted::Reject => {
                return Outcome::Refuse(Refusal {
                    code: ErrorCode::BadRequest,
                    headers: Vec::new(),
                })
            }
        };
        let tier = match consumer {
            Some(c) => spec.tier(&c.groups),
            None => spec.base(),
        };
        let (decision, store, capacity) = self.rule.decide(key, tier).await;
        let Some(decision) = decision else {
            self.metrics.count(Counted::Allowed, store);
            return Outcome::Continue;
        };
        if self.rule.sends_headers() {
            state.rate_headers =
                Some(RateHeaders::of(&decision, capacity).tighter(state.rate_headers));
        }
        if decision.allowed {
            self.metrics.count(Counted::Allowed, store);
            return Outcome::Continue;
        }
        let counted = match mode {
            Mode::Enforce => Counted::Limited,
            Mode::Shadow => Counted::ShadowLimited,
        };
        self.metrics.count(counted, store);
        // A shadow refusal is only counted: no answer is built for it.
        let headers = match mode {
            Mode::Enforce => {
                let retry_after = decision.retry_after_us.div_ceil(1_000_000).max(1);
                vec![("Retry-After", HeaderValue::from(retry_after))]
            }
            Mode::Shadow => Vec::new(),
        };
        Outcome::Refuse(Refusal {
            code: ErrorCode::RateLimited,
            headers,
        })
    }
}
