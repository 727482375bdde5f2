//! The registry's key schema, a public protocol (README "Service registry"):
//! `{prefix}registry:{SERVICE}:instances` (sorted set, member = id, score = last heartbeat in
//! Unix ms), `{prefix}registry:{SERVICE}:instance:{ID}` (hash) and the `{prefix}registry:events`
//! pub/sub channel. The braces are literal: a Redis Cluster hash tag keeping one service's keys
//! on one shard.

/// Builds registry key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (default `portico:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// The sorted set of a service's instance ids scored by last heartbeat.
    pub fn instances(&self, service: &str) -> String {
        format!("{}registry:{{{service}}}:instances", self.prefix)
    }

    /// The hash describing one instance.
    pub fn instance(&self, service: &str, id: &str) -> String {
        format!("{}registry:{{{service}}}:instance:{id}", self.prefix)
    }

    /// The key prefix of a service's instance hashes (the janitor appends ids).
    pub fn instance_prefix(&self, service: &str) -> String {
        format!("{}registry:{{{service}}}:instance:", self.prefix)
    }

    /// The pub/sub channel a registrar publishes a service name on after a change.
    pub fn events(&self) -> String {
        format!("{}registry:events", self.prefix)
    }

    /// A random token Portico keeps in Redis; when it vanishes, Redis lost its data.
    pub fn epoch(&self) -> String {
        format!("{}registry:epoch", self.prefix)
    }

    /// Short lock so only one gateway replica runs the janitor per period.
    pub fn janitor_lock(&self) -> String {
        format!("{}registry:janitor", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_schema() {
        let k = Keys::new("portico:");
        assert_eq!(k.instances("social"), "portico:registry:{social}:instances");
        assert_eq!(
            k.instance("social", "i1"),
            "portico:registry:{social}:instance:i1"
        );
        assert_eq!(k.events(), "portico:registry:events");
    }
}
