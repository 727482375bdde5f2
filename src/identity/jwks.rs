//! Signing keys: fixed (PEM files, a shared secret) or published at a JWKS URL and read in
//! the background.
//!
//! A JWKS source keeps the last set it read until a later read succeeds with at least one
//! usable key: the key endpoint being down, slow or answering garbage never turns valid tokens
//! into 401s (Envoy's failure mode). Reads happen every `jwks_refresh`, and sooner when a
//! token names a `kid` the set lacks (a rotation), at most once per `jwks_min_refresh` so a
//! client inventing `kid`s cannot make the gateway hammer the identity provider. Sources are
//! shared by URL and survive reloads, keys included.

use crate::http_call::{Caller, Endpoint};
use crate::telemetry::auth as metrics;
use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Bound on one JWKS read.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_DOCUMENT: usize = 1 << 20;
/// Wait before reading again a source that has never been read.
const FIRST_READ_RETRY: Duration = Duration::from_secs(1);

/// A verification key, with the algorithm it is restricted to when the set says so.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    pub alg: Option<Algorithm>,
}

/// A set of keys: by `kid`, and those without one.
#[derive(Default, Clone)]
pub struct Keys {
    by_kid: HashMap<String, Key>,
    unnamed: Vec<Key>,
}

impl Keys {
    /// Adds `key`, under `kid` when it has one.
    pub fn add(&mut self, kid: Option<String>, key: Key) {
        match kid {
            Some(kid) => {
                self.by_kid.insert(kid, key);
            }
            None => self.unnamed.push(key),
        }
    }

    /// Keys a token may be signed with: the `kid`'s key, or with no `kid` every key.
    pub fn candidates<'k>(&'k self, kid: Option<&str>) -> Vec<&'k Key> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(k) => vec![k],
                None => self.unnamed.iter().collect(),
            },
            None => self.unnamed.iter().chain(self.by_kid.values()).collect(),
        }
    }

    /// Whether the set has a key named `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    /// Whether the set holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable keys of a JWKS document (encryption keys and key types this build cannot
    /// verify are skipped); an error when the document is not a JWKS.
    pub fn from_jwks(document: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Keys::default();
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse().ok());
            keys.add(jwk.common.key_id.clone(), Key { decoding, alg });
        }
        Ok(keys)
    }
}

/// Keys read from one JWKS URL.
pub struct KeySource {
    policy: String,
    endpoint: Endpoint,
    refresh: Duration,
    min_refresh: Duration,
    keys: ArcSwapOption<Keys>,
    /// A token named a `kid` the set lacks.
    wanted: AtomicBool,
    /// The last read failed (failures are logged once per streak).
    failing: AtomicBool,
    schedule: Mutex<Schedule>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Schedule {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
}

impl KeySource {
    /// The keys in force; `None` until the first successful read.
    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.load_full()
    }

    /// Asks for a read soon (a token named an unknown `kid`).
    pub fn want_refresh(&self) {
        if !self.wanted.swap(true, Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    /// When the next read is due, if it is due at `now`.
    fn due(&self, now: Instant) -> bool {
        let s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        let since = |t: Option<Instant>| t.map_or(Duration::MAX, |t| now.duration_since(t));
        if s.last_success.is_none() {
            return since(s.last_attempt) >= FIRST_READ_RETRY;
        }
        let min_gap = since(s.last_attempt) >= self.min_refresh;
        min_gap && (self.wanted.load(Ordering::Relaxed) || since(s.last_success) >= self.refresh)
    }

    /// Reads the set once; on any failure the keys in force stay.
    async fn read(&self, caller: &Caller) {
        self.wanted.store(false, Ordering::Relaxed);
        let started = Instant::now();
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(started);
        let accept = [(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        )];
        let result = caller
            .call(
                &self.endpoint,
                http::Method::GET,
                &accept,
                FETCH_TIMEOUT,
                MAX_DOCUMENT,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|reply| match reply.status {
                200 => Keys::from_jwks(&reply.body),
                status => Err(format!("status {status}")),
            })
            .and_then(|keys| match keys.is_empty() {
                true => Err("no usable key in the set".to_string()),
                false => Ok(keys),
            });
        match result {
            Ok(keys) => {
                metrics::jwks_read(&self.policy, true, keys.len());
                self.keys.store(Some(Arc::new(keys)));
                self.schedule
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_success = Some(started);
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!("auth policy {}: JWKS read again", self.policy);
                }
            }
            Err(e) => {
                metrics::jwks_read(&self.policy, false, self.keys().map_or(0, |k| k.len()));
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "auth policy {}: JWKS read failed ({}); the previous keys stay in force",
                        self.policy,
                        e.trim()
                    );
                }
            }
        }
    }
}

/// Every JWKS source in use, by URL; held by the gateway so sources outlive snapshots.
#[derive(Default)]
pub struct KeySources {
    sources: Mutex<HashMap<Endpoint, Weak<KeySource>>>,
    wake: Arc<Notify>,
}

impl KeySources {
    /// The source for `url`: the live one if some snapshot still uses it, else a new one.
    pub fn source(
        &self,
        policy: &str,
        endpoint: &Endpoint,
        refresh: Duration,
        min_refresh: Duration,
    ) -> Arc<KeySource> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|_, s| s.strong_count() > 0);
        if let Some(live) = sources.get(endpoint).and_then(Weak::upgrade) {
            if live.refresh == refresh && live.min_refresh == min_refresh {
                return live;
            }
        }
        let source = Arc::new(KeySource {
            policy: policy.to_string(),
            endpoint: endpoint.clone(),
            refresh,
            min_refresh,
            keys: ArcSwapOption::empty(),
            wanted: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            schedule: Mutex::new(Schedule::default()),
            wake: self.wake.clone(),
        });
        sources.insert(endpoint.clone(), Arc::downgrade(&source));
        self.wake.notify_one();
        source
    }

    fn live(&self) -> Vec<Arc<KeySource>> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.values().filter_map(Weak::upgrade).collect()
    }

    /// Reads every source that is due, forever; woken early by a new source or an unknown
    /// `kid`.
    pub async fn run(&self, caller: &Caller) {
        loop {
            let now = Instant::now();
            for source in self.live() {
                if source.due(now) {
                    source.read(caller).await;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), self.wake.notified()).await;
        }
    }
}

/// The background service reading every JWKS source in use.
pub struct Refresher {
    pub sources: Arc<KeySources>,
    pub caller: Arc<Caller>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Refresher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        tokio::select! {
            _ = self.sources.run(&self.caller) => {}
            _ = shutdown.changed() => {}
        }
    }
}
