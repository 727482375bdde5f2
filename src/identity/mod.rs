//! Who a request comes from. Consumers (a name and groups) own credentials — API keys and
//! basic-auth passwords — and each authentication mechanism turns a request into a
//! [`Verdict`]: an [`Identity`], or why not. The `policy::auth` policy runs a route's
//! mechanisms in order and applies its ACL; this module knows nothing about routes.
//!
//! Secrets are never kept or compared as text: API keys are held as SHA-256 digests and looked
//! up by the digest of what a client presents, then confirmed with a constant-time compare;
//! passwords are Argon2id or bcrypt hashes checked by those crates.

pub mod api_key;
pub mod basic;
pub mod forward;
pub mod jwks;
pub mod jwt;
pub mod spec;
pub mod verdicts;

pub use forward::Asked;

use crate::config::{ConsumerConfig, Problems};
use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Someone credentials belong to.
#[derive(Debug)]
pub struct Consumer {
    pub name: String,
    pub groups: Vec<String>,
    /// `name` and `groups` as header values, made once.
    id_value: HeaderValue,
    groups_value: HeaderValue,
}

impl Consumer {
    /// A consumer; `None` when its name or a group cannot be a header value.
    pub fn new(name: &str, groups: Vec<String>) -> Option<Self> {
        Some(Self {
            id_value: HeaderValue::from_str(name).ok()?,
            groups_value: HeaderValue::from_str(&groups.join(",")).ok()?,
            name: name.to_string(),
            groups,
        })
    }

    /// Whether the consumer is in one of `groups`.
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// What a request authenticated as.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `None`: authenticated, but by a credential naming nobody (a JWT without the consumer
    /// claim, a forward-auth admit).
    pub consumer: Option<Arc<Consumer>>,
    /// Headers for the upstream request (forwarded claims, copied auth-service headers).
    pub headers: Arc<[(HeaderName, HeaderValue)]>,
}

/// The empty header list, shared (an identity without extra headers allocates nothing).
static NO_HEADERS: std::sync::LazyLock<Arc<[(HeaderName, HeaderValue)]>> =
    std::sync::LazyLock::new(|| Arc::new([]));

impl Identity {
    /// An identity that is `consumer` and adds nothing else upstream.
    pub fn of(consumer: Arc<Consumer>) -> Self {
        Self {
            consumer: Some(consumer),
            headers: NO_HEADERS.clone(),
        }
    }

    /// An authenticated caller naming nobody and adding nothing upstream.
    pub fn anonymous() -> Self {
        Self {
            consumer: None,
            headers: NO_HEADERS.clone(),
        }
    }

    /// The consumer's name, if the identity names one.
    pub fn consumer_name(&self) -> Option<&str> {
        self.consumer.as_deref().map(|c| c.name.as_str())
    }

    /// Header values naming the consumer and its groups.
    pub fn header_values(&self) -> Option<(&HeaderValue, &HeaderValue)> {
        self.consumer
            .as_deref()
            .map(|c| (&c.id_value, &c.groups_value))
    }
}

/// The static consumers and what finds them: API-key digests, basic-auth users, names.
#[derive(Default)]
pub struct Directory {
    by_name: HashMap<String, Arc<Consumer>>,
    /// Bucketed by the digest's first 8 bytes; the full digest is confirmed in constant time.
    keys: HashMap<u64, Vec<(Digest, Arc<Consumer>)>>,
    users: HashMap<String, (Arc<Consumer>, basic::PasswordHash)>,
}

impl Directory {
    /// Compiles `consumers`, reporting what is wrong under `consumers.NAME`.
    pub fn compile(
        consumers: &std::collections::BTreeMap<String, ConsumerConfig>,
        problems: &mut Problems,
    ) -> Self {
        let mut dir = Directory::default();
        for (name, c) in consumers {
            let at = format!("consumers.{name}");
            if !crate::config::is_label_safe(name) {
                problems.push(&at, "consumer names must use only [A-Za-z0-9_.-]");
            }
            if let Some(g) = c.groups.iter().find(|g| !crate::config::is_label_safe(g)) {
                problems.push(
                    format!("{at}.groups"),
                    format!("group {g:?}: use only [A-Za-z0-9_.-]"),
                );
            }
            let Some(consumer) = Consumer::new(name, c.groups.clone()).map(Arc::new) else {
                continue;
            };
            for (i, key) in c.api_keys.iter().enumerate() {
                match api_key::stored_digest(key) {
                    Ok(d) => {
                        if dir.find_key(&d).is_some() {
                            problems.push(
                                format!("{at}.api_keys[{i}]"),
                                "this key already belongs to a consumer",
                            );
                        }
                        dir.add_key(d, consumer.clone());
                    }
                    Err(e) => problems.push(format!("{at}.api_keys[{i}]"), e),
                }
            }
            if let Some(b) = &c.basic {
                match basic::PasswordHash::parse(&b.password_hash) {
                    Ok(hash) => {
                        let user = (consumer.clone(), hash);
                        if dir.users.insert(b.user.clone(), user).is_some() {
                            problems.push(
                                format!("{at}.basic.user"),
                                format!("user {:?} belongs to two consumers", b.user),
                            );
                        }
                    }
                    Err(e) => problems.push(format!("{at}.basic.password_hash"), e),
                }
            }
            dir.by_name.insert(name.clone(), consumer);
        }
        dir
    }

    /// Consumers stored as JSON records (name, `ConsumerConfig` JSON), as Redis keeps them. A
    /// record that does not parse or compile is left out; the second value says why, one line
    /// per record.
    pub fn from_records(records: &[(String, String)]) -> (Self, Vec<String>) {
        let mut good = std::collections::BTreeMap::new();
        let mut skipped = Vec::new();
        let why = |name: &str, problems: &Problems| {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            format!("consumer {name:?}: {}", text.join("; "))
        };
        for (name, text) in records {
            match serde_json::from_str::<ConsumerConfig>(text) {
                Ok(c) => {
                    let one = std::collections::BTreeMap::from([(name.clone(), c)]);
                    let mut problems = Problems::default();
                    Directory::compile(&one, &mut problems);
                    match problems.is_empty() {
                        true => good.extend(one),
                        false => skipped.push(why(name, &problems)),
                    }
                }
                Err(e) => skipped.push(format!("consumer {name:?}: not a consumer record: {e}")),
            }
        }
        let mut problems = Problems::default();
        let directory = Directory::compile(&good, &mut problems);
        skipped.extend(
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message)),
        );
        (directory, skipped)
    }

    /// Names and groups of every consumer, by name.
    pub fn summary(&self) -> Vec<(&str, &[String])> {
        let mut out: Vec<(&str, &[String])> = self
            .by_name
            .values()
            .map(|c| (c.name.as_str(), &c.groups[..]))
            .collect();
        out.sort_unstable();
        out
    }

    fn add_key(&mut self, digest: Digest, consumer: Arc<Consumer>) {
        self.keys
            .entry(bucket(&digest))
            .or_default()
            .push((digest, consumer));
    }

    /// The consumer owning the key whose digest is `presented`.
    pub fn find_key(&self, presented: &Digest) -> Option<&Arc<Consumer>> {
        self.keys
            .get(&bucket(presented))?
            .iter()
            .find(|(d, _)| bool::from(d.ct_eq(presented)))
            .map(|(_, c)| c)
    }

    /// The consumer and password hash of a basic-auth user.
    pub fn find_user(&self, user: &str) -> Option<&(Arc<Consumer>, basic::PasswordHash)> {
        self.users.get(user)
    }

    /// A consumer by name.
    pub fn find(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.by_name.get(name)
    }

    /// How many consumers there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Consumers kept in Redis, as last read (`consumer_store` keeps it in step); never emptied
/// because Redis is away.
#[derive(Default)]
pub struct StoredConsumers(ArcSwap<Directory>);

impl StoredConsumers {
    /// Replaces the stored consumers in force.
    pub fn replace(&self, directory: Directory) {
        self.0.store(Arc::new(directory));
    }

    /// The stored consumers in force.
    pub fn current(&self) -> Arc<Directory> {
        self.0.load_full()
    }
}

/// Every consumer a request may prove to be: the configuration's, then Redis's. A name in the
/// configuration wins: a Redis consumer of the same name is ignored, credentials included (it
/// could otherwise pose as the configured consumer with other groups).
#[derive(Clone, Default)]
pub struct Consumers {
    configured: Arc<Directory>,
    stored: Arc<StoredConsumers>,
}

impl Consumers {
    /// The configuration's consumers before `stored`.
    pub fn new(configured: Arc<Directory>, stored: Arc<StoredConsumers>) -> Self {
        Self { configured, stored }
    }

    /// The consumer owning the key whose digest is `presented`.
    pub fn find_key(&self, presented: &Digest) -> Option<Arc<Consumer>> {
        if let Some(c) = self.configured.find_key(presented) {
            return Some(c.clone());
        }
        let found = self.stored.0.load().find_key(presented).cloned()?;
        self.configured.find(&found.name).is_none().then_some(found)
    }

    /// The consumer and password hash of a basic-auth user.
    pub fn find_user(&self, user: &str) -> Option<(Arc<Consumer>, basic::PasswordHash)> {
        if let Some(found) = self.configured.find_user(user) {
            return Some(found.clone());
        }
        let found = self.stored.0.load().find_user(user).cloned()?;
        self.configured
            .find(&found.0.name)
            .is_none()
            .then_some(found)
    }

    /// A consumer by name.
    pub fn find(&self, name: &str) -> Option<Arc<Consumer>> {
        if let Some(c) = self.configured.find(name) {
            return Some(c.clone());
        }
        self.stored.0.load().find(name).cloned()
    }
}

fn bucket(d: &Digest) -> u64 {
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests;
