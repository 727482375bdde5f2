//! IP rules: named allow and deny lists checked against the client address (after trusted
//! proxies), and optionally the deny set shared through Redis (`{prefix}ip:deny`, kept fresh by
//! `crate::ip_deny` with the last good copy kept while Redis is away). Lookups are binary
//! searches over merged ranges ([`IpSet`]); a refusal is 403 `forbidden`.

use super::{Outcome, Refusal, Request};
use crate::config::{IpRuleConfig, Problems};
use crate::ip_set::{IpSet, Network};
use crate::reply::ErrorCode;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// A compiled `ip_rules` entry.
#[derive(Debug, PartialEq)]
pub struct IpRuleSpec {
    /// `None`: every address is allowed (before `deny`).
    allow: Option<IpSet>,
    deny: IpSet,
    pub deny_from_redis: bool,
    pub shadow: bool,
}

impl IpRuleSpec {
    /// Compiles `ip_rules.NAME`; every bad network is reported.
    pub fn compile(
        name: &str,
        cfg: &IpRuleConfig,
        has_redis: bool,
        problems: &mut Problems,
    ) -> IpRuleSpec {
        let at = format!("ip_rules.{name}");
        let mut parse = |field: &str, list: &[String]| -> IpSet {
            IpSet::new(list.iter().enumerate().filter_map(|(i, text)| {
                Network::parse(text, true)
                    .map_err(|e| problems.push(format!("{at}.{field}[{i}]"), e))
                    .ok()
            }))
        };
        let allow = (!cfg.allow.is_empty()).then(|| parse("allow", &cfg.allow));
        let deny = parse("deny", &cfg.deny);
        if cfg.deny_from_redis && !has_redis {
            problems.push(
                format!("{at}.deny_from_redis"),
                "needs a top-level `redis` section",
            );
        }
        if cfg.allow.is_empty() && cfg.deny.is_empty() && !cfg.deny_from_redis {
            problems.push(at, "needs `allow`, `deny` or `deny_from_redis`");
        }
        IpRuleSpec {
            allow,
            deny,
            deny_from_redis: cfg.deny_from_redis,
            shadow: cfg.shadow,
        }
    }
}

/// The deny set read from Redis, shared by every rule that uses it; empty until the first
/// successful read, then the last good copy.
#[derive(Default)]
pub struct SharedDeny(ArcSwap<IpSet>);

impl SharedDeny {
    /// The set in force.
    pub fn get(&self) -> Arc<IpSet> {
        self.0.load_full()
    }

    /// Puts `set` in force.
    pub fn replace(&self, set: IpSet) {
        self.0.store(Arc::new(set));
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.0.load().contains(ip)
    }
}

/// One rule on one route.
pub struct IpRule {
    spec: Arc<IpRuleSpec>,
    /// Present when the rule uses the Redis deny set.
    shared: Option<Arc<SharedDeny>>,
}

impl IpRule {
    /// The rule for a route; `shared` is consulted only if the rule asks for it.
    pub fn new(spec: Arc<IpRuleSpec>, shared: &Arc<SharedDeny>) -> Self {
        let shared = spec.deny_from_redis.then(|| shared.clone());
        Self { spec, shared }
    }

    /// Refuses a client outside `allow`, inside `deny` or inside the Redis deny set.
    pub fn check(&self, req: &Request<'_>) -> Outcome {
        let ip = req.client_ip;
        let allowed = self.spec.allow.as_ref().is_none_or(|a| a.contains(ip))
            && !self.spec.deny.contains(ip)
            && !self.shared.as_ref().is_some_and(|s| s.contains(ip));
        if allowed {
            Outcome::Continue
        } else {
            Outcome::Refuse(Refusal::new(ErrorCode::Forbidden))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(cfg: IpRuleConfig) -> Result<IpRuleSpec, Vec<String>> {
        let mut problems = Problems::default();
        let spec = IpRuleSpec::compile("r", &cfg, false, &mut problems);
        let shown: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        if shown.is_empty() {
            Ok(spec)
        } else {
            Err(shown)
        }
    }

    #[test]
    fn every_bad_network_is_reported_at_its_index() {
        let errs = compile(IpRuleConfig {
            allow: vec!["10.0.0.0/8".into(), "10.0.0.1/8".into()],
            deny: vec!["nope".into()],
            deny_from_redis: true,
            shadow: false,
        })
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("ip_rules.r.allow[1]: "), "{errs:?}");
        assert!(errs[1].starts_with("ip_rules.r.deny[0]: "), "{errs:?}");
        assert!(errs[2].contains("needs a top-level `redis`"), "{errs:?}");
        let empty = compile(IpRuleConfig::default()).unwrap_err();
        assert!(empty[0].contains("needs `allow`, `deny`"), "{empty:?}");
    }
}
