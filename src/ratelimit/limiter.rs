//! Compiled rules and the per-route check. Rules are compiled once per snapshot and carried
//! across reloads while their section is unchanged, so in-process buckets survive a reload.

use super::gcra::{Decision, Gcra};
use super::key::{extract, Extracted, Key, KeyKind};
use super::local::LocalStore;
use super::shared::{local_now_us, SharedError, SharedStore};
use crate::config::{LimitStore, RateLimitConfig, StoreErrorPolicy};
use crate::telemetry::ratelimit::{self as metrics, RuleMetrics};
use http::HeaderMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

/// Store indices of [`metrics::STORES`].
const LOCAL: usize = 0;
const REDIS: usize = 1;
const FALLBACK: usize = 2;

/// One compiled rule.
pub struct Rule {
    pub name: String,
    pub config: RateLimitConfig,
    replicas: u32,
    kind: KeyKind,
    gcra: Gcra,
    /// `limit / replicas` (rounded up), enforced locally while Redis cannot decide.
    fallback: Gcra,
    /// The rule's store for `store: local`; the fallback store for `store: redis`.
    local: LocalStore,
}

impl Rule {
    /// Compiles a validated rule; `replicas` is `redis.replicas`.
    pub fn new(name: &str, config: &RateLimitConfig, replicas: u32) -> Self {
        let per_us = config.per.as_micros() as u64;
        let share = |n: u64| n.div_ceil(u64::from(replicas.max(1)));
        let store = match config.store {
            LimitStore::Local => "local",
            LimitStore::Redis => "fallback",
        };
        Self {
            name: name.to_string(),
            config: config.clone(),
            replicas,
            kind: KeyKind::parse(&config.key).unwrap_or(KeyKind::ClientIp),
            gcra: Gcra::new(config.limit, per_us, config.burst),
            fallback: Gcra::new(share(config.limit), per_us, share(config.burst)),
            local: LocalStore::with_metrics(
                config.max_keys,
                Some(metrics::local_store(name, store)),
            ),
        }
    }

    /// Whether this rule can be reused for `config`.
    pub fn unchanged(&self, config: &RateLimitConfig, replicas: u32) -> bool {
        self.config == *config && self.replicas == replicas
    }

    /// Decides one request; `None` when the store failed and the policy lets it through
    /// without information for headers.
    async fn decide(
        &self,
        key: Key<'_>,
        shared: Option<&SharedStore>,
    ) -> (Option<Decision>, usize) {
        let local_key = || self.local.hasher().hash_one(key);
        if self.config.store == LimitStore::Local {
            return (
                Some(self.local.decide(&self.gcra, local_key(), local_now_us())),
                LOCAL,
            );
        }
        let error = match shared {
            Some(store) => {
                let redis_key = key.redis_key(store.prefix(), &self.name);
                match store.decide(&self.gcra, &redis_key, 0).await {
                    Ok(d) => return (Some(d), REDIS),
                    Err(e) => e,
                }
            }
            None => SharedError::Unavailable,
        };
        metrics::STORE_ERRORS
            .with_label_values(&[&self.name, error.kind()])
            .inc();
        let policy = self.config.on_store_error;
        metrics::FALLBACKS
            .with_label_values(&[&self.name, policy_label(policy)])
            .inc();
        let decision = match policy {
            StoreErrorPolicy::LocalFallback => Some(self.local.decide(
                &self.fallback,
                local_key(),
                local_now_us(),
            )),
            StoreErrorPolicy::Allow => None,
            StoreErrorPolicy::Deny => Some(Decision {
                allowed: false,
                remaining: 0,
                reset_us: 1_000_000,
                retry_after_us: 1_000_000,
            }),
        };
        (decision, FALLBACK)
    }

    fn capacity(&self, store: usize) -> u64 {
        if store == FALLBACK {
            self.fallback.capacity
        } else {
            self.gcra.capacity
        }
    }
}

fn policy_label(p: StoreErrorPolicy) -> &'static str {
    match p {
        StoreErrorPolicy::LocalFallback => "local_fallback",
        StoreErrorPolicy::Allow => "allow",
        StoreErrorPolicy::Deny => "deny",
    }
}

/// `RateLimit-*` values of the most restrictive rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    /// Whole seconds until the bucket is full again (rounded up).
    pub reset: u64,
}

impl RateHeaders {
    fn from(d: &Decision, limit: u64) -> Self {
        Self {
            limit,
            remaining: d.remaining,
            reset: d.reset_us.div_ceil(1_000_000),
        }
    }

    /// Fewer remaining is more restrictive; on a tie, the later reset.
    fn tighter(self, other: Option<Self>) -> Self {
        match other {
            Some(o)
                if (o.remaining, std::cmp::Reverse(o.reset))
                    < (self.remaining, std::cmp::Reverse(self.reset)) =>
            {
                o
            }
            _ => self,
        }
    }
}

/// What the limits say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refused: answer 429 with `Retry-After` seconds.
    Limited {
        retry_after: u64,
    },
    /// A `header:` key is missing and the rule says `reject`: answer 400.
    MissingKey,
}

/// The rules of one route, with their metric handles.
pub struct Limits {
    route: String,
    rules: Vec<(Arc<Rule>, RuleMetrics)>,
}

impl Limits {
    /// The limits of `route` from its rule list.
    pub fn new(route: &str, rules: Vec<Arc<Rule>>) -> Self {
        Self {
            route: route.to_string(),
            rules: rules
                .into_iter()
                .map(|r| {
                    let m = RuleMetrics::new(route, &r.name, r.config.store == LimitStore::Redis);
                    (r, m)
                })
                .collect(),
        }
    }

    /// Whether the route has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks every rule in order (each must allow) and returns the verdict and the headers of
    /// the most restrictive rule that sends headers.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        client_ip: IpAddr,
        shared: Option<&SharedStore>,
    ) -> (Verdict, Option<RateHeaders>) {
        let mut shown: Option<RateHeaders> = None;
        for (rule, counters) in &self.rules {
            let key = match extract(
                &rule.kind,
                rule.config.on_missing_key,
                headers,
                client_ip,
                &self.route,
            ) {
                Extracted::Key(k) => k,
                Extracted::Skip => continue,
                Extracted::Reject => return (Verdict::MissingKey, shown),
            };
            let (decision, store) = rule.decide(key, shared).await;
            let Some(decision) = decision else {
                counters.count(0, store);
                continue;
            };
            if rule.config.headers {
                shown = Some(RateHeaders::from(&decision, rule.capacity(store)).tighter(shown));
            }
            match (decision.allowed, rule.config.shadow) {
                (true, _) => counters.count(0, store),
                (false, true) => counters.count(2, store),
                (false, false) => {
                    counters.count(1, store);
                    let retry_after = decision.retry_after_us.div_ceil(1_000_000).max(1);
                    return (Verdict::Limited { retry_after }, shown);
                }
            }
        }
        (Verdict::Allow, shown)
    }
}
