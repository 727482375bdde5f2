//! Rules: a `rate_limits` entry compiled ([`RuleSpec`], pure, every problem recorded) and the
//! live rule that decides requests ([`Rule`]: its in-process store and, for `store: redis`, the
//! shared store). Live rules are carried across reloads while their section is unchanged, so
//! in-process buckets survive a reload.

use super::gcra::{Decision, Gcra};
use super::key::{Key, KeyKind};
use super::local::LocalStore;
use super::shared::{local_now_us, SharedError, SharedStore};
use crate::config::{LimitStore, MissingKey, Problems, RateLimitConfig, StoreErrorPolicy};
use crate::telemetry::ratelimit::{self as metrics, Store};
use std::hash::BuildHasher;
use std::sync::Arc;

/// Largest `capacity × interval` in µs: the Redis script computes in doubles, exact to 2^53.
const MAX_WINDOW_US: u128 = 1 << 50;

/// A compiled `rate_limits` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub config: RateLimitConfig,
    /// `redis.replicas`: gateways sharing the limit, fixed by the operator; absent = the live
    /// gateway count ([`super::peers::Peers`]).
    replicas: Option<u32>,
    kind: KeyKind,
    /// The rule's own limit.
    base: Tier,
    /// `by_group` limits, for consumers of those groups.
    groups: Vec<(String, Tier)>,
}

/// One limit a rule may apply: as written (for the Redis fallback's share) and as a GCRA.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    limit: u64,
    per_us: u64,
    burst: u64,
    pub gcra: Gcra,
}

impl Tier {
    fn new(limit: u64, per_us: u64, burst: u64) -> Self {
        Self {
            limit,
            per_us,
            burst,
            gcra: Gcra::new(limit, per_us, burst),
        }
    }
}

impl RuleSpec {
    /// Compiles `rate_limits.NAME`; `redis` is whether a `redis` section exists and
    /// `replicas` its `replicas`.
    pub fn compile(
        name: &str,
        r: &RateLimitConfig,
        redis: bool,
        replicas: Option<u32>,
        problems: &mut Problems,
    ) -> Self {
        let at = format!("rate_limits.{name}");
        if !crate::config::is_label_safe(name) {
            problems.push(&at, "rule names must use only [A-Za-z0-9_.-]");
        }
        let kind = KeyKind::parse(&r.key).unwrap_or_else(|| {
            problems.push(
                format!("{at}.key"),
                format!(
                    "unknown key {:?}: expected client_ip, header:NAME, consumer, route or global",
                    r.key
                ),
            );
            KeyKind::ClientIp
        });
        if !r.by_group.is_empty() && kind != KeyKind::Consumer {
            problems.push(format!("{at}.by_group"), "only applies to `key: consumer`");
        }
        let mut groups = Vec::with_capacity(r.by_group.len());
        for (group, g) in &r.by_group {
            let per = g.per.unwrap_or(r.per).as_micros();
            if g.limit == 0 || per < u128::from(g.limit) {
                problems.push(
                    format!("{at}.by_group.{group}.limit"),
                    "must be at least 1, and at most one request per µs",
                );
                continue;
            }
            let burst = g.burst.unwrap_or(r.burst);
            groups.push((group.clone(), Tier::new(g.limit, per as u64, burst)));
        }
        if r.limit == 0 {
            problems.push(format!("{at}.limit"), "must be at least 1");
        }
        let per_us = r.per.as_micros();
        if per_us < u128::from(r.limit.max(1)) {
            problems.push(
                format!("{at}.per"),
                "too short for the limit: at least 1µs per request",
            );
        }
        let capacity = u128::from(r.limit.max(1)) + u128::from(r.burst);
        if capacity * (per_us / u128::from(r.limit.max(1))).max(1) > MAX_WINDOW_US {
            problems.push(
                &at,
                "limit + burst at this rate spans more than ~35 years; use a smaller per or burst",
            );
        }
        if r.store == LimitStore::Redis && !redis {
            problems.push(
                format!("{at}.store"),
                "store: redis needs a top-level `redis` section",
            );
        }
        if r.max_keys < 1_000 {
            problems.push(format!("{at}.max_keys"), "must be at least 1000");
        }
        let per_us = r.per.as_micros() as u64;
        Self {
            name: name.to_string(),
            config: r.clone(),
            replicas,
            kind,
            base: Tier::new(r.limit, per_us, r.burst),
            groups,
        }
    }

    /// The limit for a consumer in `groups`: the most generous of its groups' `by_group`
    /// limits (the fastest rate, then the larger burst), else the rule's own.
    pub fn tier(&self, groups: &[String]) -> &Tier {
        self.groups
            .iter()
            .filter(|(g, _)| groups.contains(g))
            .map(|(_, t)| t)
            .min_by_key(|t| (t.gcra.interval_us, std::cmp::Reverse(t.gcra.capacity)))
            .unwrap_or(&self.base)
    }

    /// The rule's own limit.
    pub fn base(&self) -> &Tier {
        &self.base
    }

    /// `limit / gateways` (rounded up, burst likewise) of `tier`: what one gateway enforces
    /// locally while Redis cannot decide.
    pub fn fallback(&self, tier: &Tier, gateways: u32) -> Gcra {
        let gateways = u64::from(self.replicas.unwrap_or(gateways).max(1));
        let share = |n: u64| n.div_ceil(gateways);
        Gcra::new(share(tier.limit), tier.per_us, share(tier.burst))
    }

    /// What the rule counts by.
    pub fn key_kind(&self) -> &KeyKind {
        &self.kind
    }

    /// What a `header:` rule does when the header is absent.
    pub fn on_missing_key(&self) -> MissingKey {
        self.config.on_missing_key
    }
}

/// A live rule.
pub struct Rule {
    spec: RuleSpec,
    /// The rule's store for `store: local`; the fallback store for `store: redis`.
    local: LocalStore,
    /// The Redis store, for `store: redis` rules.
    shared: Option<Arc<SharedStore>>,
}

impl Rule {
    /// A live rule for `spec`, deciding through `shared` when it is Redis-stored.
    pub fn new(spec: RuleSpec, shared: Option<Arc<SharedStore>>) -> Self {
        let store = match spec.config.store {
            LimitStore::Local => Store::Local,
            LimitStore::Redis => Store::Fallback,
        };
        if spec.config.store == LimitStore::Redis {
            // Shown at 0 before Redis first fails.
            for kind in ["timeout", "connection", "protocol", "unavailable"] {
                metrics::STORE_ERRORS.with_label_values(&[&spec.name, kind]);
            }
            let policy = policy_label(spec.config.on_store_error);
            metrics::FALLBACKS.with_label_values(&[&spec.name, policy]);
        }
        Self {
            local: LocalStore::with_metrics(
                spec.config.max_keys,
                Some(metrics::local_store(&spec.name, store)),
            ),
            shared: shared.filter(|_| spec.config.store == LimitStore::Redis),
            spec,
        }
    }

    /// The compiled rule.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether this live rule can serve `spec` (its buckets are kept).
    pub fn serves(&self, spec: &RuleSpec) -> bool {
        self.spec == *spec
    }

    /// Whether this rule's responses carry `RateLimit-*` headers.
    pub fn sends_headers(&self) -> bool {
        self.spec.config.headers
    }

    /// Whether the rule only counts (never refuses).
    pub fn is_shadow(&self) -> bool {
        self.spec.config.shadow
    }

    /// Whether the rule keeps its buckets in Redis.
    pub fn is_shared(&self) -> bool {
        self.spec.config.store == LimitStore::Redis
    }

    /// Decides one request for `key` under `tier` (the rule's own, or a group's). `None` when
    /// the store failed and the policy lets the request through without information for
    /// headers. Also returns the store that decided and the bucket capacity behind the
    /// decision.
    pub async fn decide(&self, key: Key<'_>, tier: &Tier) -> (Option<Decision>, Store, u64) {
        let gcra = &tier.gcra;
        let local_key = || self.local.hasher().hash_one(key);
        if self.spec.config.store == LimitStore::Local {
            let d = self.local.decide(gcra, local_key(), local_now_us());
            return (Some(d), Store::Local, gcra.capacity);
        }
        let error = match &self.shared {
            Some(store) => {
                let redis_key = key.redis_key(store.prefix(), &self.spec.name);
                // Boxed: the Redis call's future is large, and every future that awaits this
                // one would otherwise carry (and copy) it, local rules included.
                match Box::pin(store.decide(gcra, redis_key)).await {
                    Ok(d) => return (Some(d), Store::Redis, gcra.capacity),
                    Err(e) => e,
                }
            }
            None => SharedError::Unavailable,
        };
        metrics::STORE_ERRORS
            .with_label_values(&[&self.spec.name, error.kind()])
            .inc();
        let policy = self.spec.config.on_store_error;
        metrics::FALLBACKS
            .with_label_values(&[&self.spec.name, policy_label(policy)])
            .inc();
        let gateways = self.shared.as_ref().map_or(1, |s| s.peers().live());
        let fallback = self.spec.fallback(tier, gateways);
        let decision = match policy {
            StoreErrorPolicy::LocalFallback => {
                Some(self.local.decide(&fallback, local_key(), local_now_us()))
            }
            StoreErrorPolicy::Allow => None,
            StoreErrorPolicy::Deny => Some(Decision {
                allowed: false,
                remaining: 0,
                reset_us: 1_000_000,
                retry_after_us: 1_000_000,
            }),
        };
        (decision, Store::Fallback, fallback.capacity)
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
    /// The headers describing `d` for a bucket of `limit`.
    pub fn of(d: &Decision, limit: u64) -> Self {
        Self {
            limit,
            remaining: d.remaining,
            reset: d.reset_us.div_ceil(1_000_000),
        }
    }

    /// Fewer remaining is more restrictive; on a tie, the later reset.
    pub fn tighter(self, other: Option<Self>) -> Self {
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
