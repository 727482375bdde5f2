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

impl Identity {
    /// An identity that is `consumer` and adds nothing else upstream.
    pub fn of(consumer: Arc<Consumer>) -> Self {
        Self {
            consumer: Some(consumer),
            headers: Arc::new([]),
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

fn bucket(d: &Digest) -> u64 {
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests;
