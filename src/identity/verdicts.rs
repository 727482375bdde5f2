//! What a mechanism says about a request, and the bounded cache of verdicts that lets a hot
//! credential cost a lookup instead of a signature check, a password hash or a call.

use super::{digest, Digest, Identity};
use crate::reply::Answer;
use pingora_memory_cache::MemoryCache;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// One mechanism's finding.
pub enum Verdict {
    Admit(Identity),
    /// No credential of this mechanism's kind.
    Missing,
    /// A credential that is wrong (unknown key, bad signature, wrong issuer or audience...).
    Invalid,
    /// A credential that was good and is not any more.
    Expired,
    /// The mechanism could not decide: no signing keys yet, the auth service down.
    Unavailable,
    /// The auth service's own refusal, passed to the client as it is.
    Deny(Box<Answer>),
}

impl Verdict {
    /// The `result` label of `portico_auth_decisions_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Verdict::Admit(_) => "allowed",
            Verdict::Missing => "missing",
            Verdict::Invalid | Verdict::Deny(_) => "invalid",
            Verdict::Expired => "expired",
            Verdict::Unavailable => "error",
        }
    }
}

pub use crate::telemetry::auth::RESULTS;

/// Verified credentials by the SHA-256 of the credential text. Bounded (TinyUFO evicts the
/// least useful), each entry lives at most its own time to live. The cache is keyed by a
/// 64-bit hash of the digest, so a hit is confirmed against the full digest in constant time:
/// a hash collision can never admit someone else's credential.
pub struct VerifiedCache<T: Clone + Send + Sync + 'static> {
    entries: MemoryCache<Digest, (Digest, T)>,
}

impl<T: Clone + Send + Sync + 'static> VerifiedCache<T> {
    /// A cache of at most `size` credentials.
    pub fn new(size: usize) -> Self {
        Self {
            entries: MemoryCache::new(size),
        }
    }

    /// The value cached for `credential`'s digest.
    pub fn get(&self, key: &Digest) -> Option<T> {
        let (entry, _) = self.entries.get(key);
        let (stored, value) = entry?;
        bool::from(stored.ct_eq(key)).then_some(value)
    }

    /// Caches `value` for `key` during `ttl` (nothing when `ttl` is zero).
    pub fn put(&self, key: Digest, value: T, ttl: Duration) {
        self.entries.put(&key, (key, value), Some(ttl));
    }

    /// The digest a credential is cached under.
    pub fn key_of(credential: &[u8]) -> Digest {
        digest(credential)
    }
}
