//! The identity part of routes' chains: each auth policy a route uses made live once per
//! snapshot (its caches and key source shared by every route naming it), the routes'
//! authentication gates, and what their upstream requests lose and gain.

use super::{Plan, RoutePlan, Shared};
use crate::identity::spec::{AuthSpec, Live, Mechanism};
use crate::identity::Consumers;
use crate::policy::auth::{Auth, IdentityHeaders};
use http::HeaderName;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The snapshot's live auth policies.
pub(super) struct Mechanisms {
    specs: BTreeMap<String, Arc<AuthSpec>>,
    live: BTreeMap<String, Arc<Mechanism>>,
    consumer_header: HeaderName,
    groups_header: HeaderName,
}

impl Mechanisms {
    /// Makes live the policies some route of `plan` uses.
    pub fn new(plan: &Plan, shared: Shared<'_>) -> Self {
        crate::telemetry::auth::consumers("config", plan.directory.len());
        let consumers = Consumers::new(plan.directory.clone(), shared.stored_consumers.clone());
        let live = Live {
            consumers: &consumers,
            key_sources: shared.key_sources,
            caller: shared.caller,
        };
        let used: std::collections::BTreeSet<&String> =
            plan.router.routes().iter().flat_map(|r| &r.auth).collect();
        let mechanisms = plan
            .auth
            .iter()
            .filter(|(name, _)| used.contains(name))
            .map(|(name, spec)| (name.clone(), Arc::new(spec.live(name, &live))))
            .collect();
        let header = |text: &str| {
            HeaderName::from_bytes(text.as_bytes()).expect("the compile step checked the name")
        };
        Self {
            specs: plan.auth.clone(),
            live: mechanisms,
            consumer_header: header(&plan.config.identity.consumer_header),
            groups_header: header(&plan.config.identity.groups_header),
        }
    }

    /// The route's authentication gate, when it has `auth`.
    pub fn access(&self, route: &RoutePlan) -> Option<Auth> {
        if route.auth.is_empty() {
            return None;
        }
        let steps = route
            .auth
            .iter()
            .filter_map(|name| {
                let mechanism = self.live.get(name)?.clone();
                let challenge = self.specs.get(name)?.challenge();
                Some((name.clone(), mechanism, challenge))
            })
            .collect();
        Some(Auth::new(&route.name, steps, route.allow_groups.clone()))
    }

    /// What the route's upstream requests lose (credentials of its policies; every identity
    /// header a client may send to pose as someone) and gain (the proven identity). `None`
    /// when the configuration has no auth policy at all.
    pub fn upstream_edit(&self, route: &RoutePlan) -> Option<IdentityHeaders> {
        if self.specs.is_empty() {
            return None;
        }
        let mut remove: Vec<HeaderName> = self
            .specs
            .values()
            .flat_map(|s| s.announced_headers())
            .collect();
        let mut remove_query = Vec::new();
        for spec in route.auth.iter().filter_map(|n| self.specs.get(n)) {
            let (headers, query) = spec.credentials();
            remove.extend(headers);
            remove_query.extend(query.map(str::to_string));
        }
        Some(IdentityHeaders::new(
            remove,
            remove_query,
            self.consumer_header.clone(),
            self.groups_header.clone(),
        ))
    }
}
