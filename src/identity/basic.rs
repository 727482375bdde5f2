//! HTTP Basic authentication against consumers' Argon2id or bcrypt password hashes.
//!
//! A password hash is slow on purpose (tens of milliseconds), so it never runs on a proxy
//! thread: checks go to tokio's blocking pool, at most one per CPU at once (a flood of wrong
//! passwords queues there instead of starving the proxy), and a verified `Authorization` value
//! is cached for [`VERIFIED_TTL`] — a client sending the same credential on every request
//! pays one hash. An unknown user is checked against a dummy hash, so the answer's timing
//! does not tell which users exist. At most [`MAX_WAITING`] checks wait for the pool: beyond
//! that a request is answered 503 `auth_unavailable` at once instead of joining a queue a
//! password-guessing flood would make endless.

use super::verdicts::{Verdict, VerifiedCache};
use super::{Consumer, Consumers, Identity};
use base64::Engine;
use http::HeaderMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a verified credential is reused without hashing again.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Credentials kept verified at once.
const CACHE_SIZE: usize = 10_000;

/// Password checks allowed to wait for the pool, gateway-wide.
const MAX_WAITING: usize = 64;

/// Password checks waiting for the pool now.
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A stored password hash, checked by the crate of its scheme.
#[derive(Debug, Clone)]
pub enum PasswordHash {
    /// A PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash`.
    Argon2id(String),
    /// A modular-crypt string `$2b$COST$...`.
    Bcrypt(String),
}

impl PasswordHash {
    /// Recognises an Argon2id or bcrypt hash; anything else (plain text, MD5, argon2i) is an
    /// error.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2id$") {
            let phc = argon2::PasswordHash::new(text)
                .map_err(|e| format!("not a valid Argon2id hash: {e}"))?;
            if phc.salt.is_none() || phc.hash.is_none() {
                return Err("not a valid Argon2id hash: it has no salt or no hash".into());
            }
            return Ok(PasswordHash::Argon2id(text.to_string()));
        }
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            text.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("not a valid bcrypt hash: {e}"))?;
            return Ok(PasswordHash::Bcrypt(text.to_string()));
        }
        Err("must be an Argon2id (`$argon2id$...`) or bcrypt (`$2b$...`) hash".into())
    }

    /// Whether `password` matches (blocking: call from the blocking pool).
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Argon2id(phc) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(phc).is_ok_and(|h| {
                    argon2::Argon2::default()
                        .verify_password(password, &h)
                        .is_ok()
                })
            }
            PasswordHash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
        }
    }
}

/// What an unknown user's password is checked against (same cost as a real check).
static DUMMY: LazyLock<PasswordHash> = LazyLock::new(|| {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::from_b64("cG9ydGljb2R1bW15c2FsdA").expect("a valid salt");
    let phc = argon2::Argon2::default()
        .hash_password(b"portico-dummy-password", &salt)
        .expect("argon2 hashes a constant")
        .to_string();
    PasswordHash::Argon2id(phc)
});

/// Password checks running at once, gateway-wide.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Semaphore::new(cpus)
});

/// The basic-auth mechanism of one `auth` policy.
pub struct Basic {
    consumers: Consumers,
    verified: VerifiedCache<Arc<Consumer>>,
}

impl Basic {
    /// Checks users of `consumers`.
    pub fn new(consumers: Consumers) -> Self {
        Self {
            consumers,
            verified: VerifiedCache::new(CACHE_SIZE),
        }
    }

    /// The consumer whose user and password the `Authorization` header carries.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Verdict {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Verdict::Missing;
        };
        let Some(encoded) = scheme_param(value.as_bytes(), b"basic") else {
            return Verdict::Missing;
        };
        let key = VerifiedCache::<Arc<Consumer>>::key_of(encoded);
        if let Some(consumer) = self.verified.get(&key) {
            return Verdict::Admit(Identity::of(consumer));
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Verdict::Invalid;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return Verdict::Invalid;
        };
        let user = std::str::from_utf8(&decoded[..colon]).unwrap_or("");
        let found = self.consumers.find_user(user);
        let hash = found
            .as_ref()
            .map_or_else(|| DUMMY.clone(), |(_, h)| h.clone());
        let Some(waiting) = Waiting::enter() else {
            return Verdict::Unavailable;
        };
        let permit = HASHING.acquire().await;
        drop(waiting);
        let Ok(_permit) = permit else {
            return Verdict::Unavailable;
        };
        let password = decoded[colon + 1..].to_vec();
        let matched = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false);
        match found {
            Some((consumer, _)) if matched => {
                self.verified.put(key, consumer.clone(), VERIFIED_TTL);
                Verdict::Admit(Identity::of(consumer))
            }
            _ => Verdict::Invalid,
        }
    }
}

/// A place among the checks waiting for the pool; leaving is dropping it (also when the
/// request is abandoned while waiting).
struct Waiting;

impl Waiting {
    fn enter() -> Option<Self> {
        use std::sync::atomic::Ordering;
        if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            WAITING.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Waiting)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The credential after `scheme` (case-insensitive) in an `Authorization` value.
pub fn scheme_param<'v>(value: &'v [u8], scheme: &[u8]) -> Option<&'v [u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    if !value[..space].eq_ignore_ascii_case(scheme) {
        return None;
    }
    let param = value[space + 1..].trim_ascii();
    (!param.is_empty()).then_some(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_argon2id_and_bcrypt_hashes_are_accepted() {
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        assert!(matches!(
            PasswordHash::parse(&bcrypt),
            Ok(PasswordHash::Bcrypt(_))
        ));
        let PasswordHash::Argon2id(phc) = &*DUMMY else {
            panic!("argon2id")
        };
        assert!(PasswordHash::parse(phc).is_ok());
        assert!(PasswordHash::parse("plaintext").is_err());
        assert!(PasswordHash::parse("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
        assert!(PasswordHash::parse("$argon2id$garbage").is_err());
    }

    #[test]
    fn hashes_verify_the_right_password_only() {
        let h = PasswordHash::parse(&bcrypt::hash("s3cret", 4).unwrap()).unwrap();
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cret "));
        assert!(DUMMY.verify(b"portico-dummy-password"));
        assert!(!DUMMY.verify(b"other"));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_needs_a_parameter() {
        assert_eq!(scheme_param(b"Basic YTpi", b"basic"), Some(&b"YTpi"[..]));
        assert_eq!(
            scheme_param(b"bearer  t.k.n ", b"bearer"),
            Some(&b"t.k.n"[..])
        );
        assert_eq!(scheme_param(b"Basic ", b"basic"), None);
        assert_eq!(scheme_param(b"Bearer x", b"basic"), None);
        assert_eq!(scheme_param(b"Basic", b"basic"), None);
    }
}
