//! Active health checks. One pingora `HealthRegistry` (and so one background service) probes the
//! instances of every service. Each `Backend` carries its service's [`ProbeSpec`] in `ext`; the
//! registry keys health by (probe spec, address), so two services sharing an address but probing
//! differently keep separate verdicts. Rise/fall thresholds and per-service intervals are applied
//! here, because pingora's thresholds are per check, not per target: the registry's own flip
//! threshold is 1 and follows our verdict.

use crate::config::{HealthCheckConfig, HealthCheckKind};
use crate::telemetry::metrics::INSTANCE_HEALTHY;
use async_trait::async_trait;
use pingora::{Error, ErrorType, Result};
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::{Backend, HealthRegistry};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often the registry pass runs; each target is probed only when its own interval is due.
pub const TICK: Duration = Duration::from_millis(250);

/// How one service's instances are probed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub service: String,
    /// `None`: the service has no active check; instances count as healthy.
    pub check: Option<Probe>,
}

/// Probe settings compiled from [`HealthCheckConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Probe {
    pub kind: HealthCheckKind,
    pub path: String,
    pub host: String,
    pub expect: Vec<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl ProbeSpec {
    /// The spec of `service` with an optional health-check section.
    pub fn new(service: &str, cfg: Option<&HealthCheckConfig>) -> Self {
        Self {
            service: service.to_string(),
            check: cfg.map(|c| Probe {
                kind: c.kind,
                path: c.path.clone(),
                host: c.host.clone(),
                expect: c.expect.clone(),
                interval: c.interval,
                timeout: c.timeout,
                rise: c.rise,
                fall: c.fall,
            }),
        }
    }
}

/// The registry key of a backend: its probe spec and address (weight and metadata excluded, so
/// re-weighting an instance keeps its health).
pub fn health_key(backend: &Backend) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(spec) = backend.ext.get::<Arc<ProbeSpec>>() {
        spec.hash(&mut h);
    }
    backend.addr.hash(&mut h);
    h.finish()
}

/// Builds the shared registry with our probe installed.
pub fn registry(verdicts: Arc<Verdicts>) -> Arc<HealthRegistry> {
    let registry = HealthRegistry::with_equivalence(health_key);
    registry.set_health_check(Box::new(Prober { verdicts }));
    Arc::new(registry)
}

/// The latest verdict of one target.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub healthy: bool,
    successes: u32,
    failures: u32,
    next_due: Instant,
    last_seen: Instant,
    pub last_error: Option<String>,
}

/// Verdicts of every probed target, shared with the admin API.
#[derive(Debug, Default)]
pub struct Verdicts {
    by_key: Mutex<HashMap<u64, Verdict>>,
    last_prune: Mutex<Option<Instant>>,
}

impl Verdicts {
    /// The verdict of `backend`, if it was probed.
    pub fn get(&self, backend: &Backend) -> Option<Verdict> {
        self.lock().get(&health_key(backend)).cloned()
    }

    /// Forgets `backend`'s verdict: it left its service, and if it returns it starts fresh.
    pub fn forget(&self, backend: &Backend) {
        self.lock().remove(&health_key(backend));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Verdict>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops verdicts of targets no longer probed (they left every service).
    fn prune(&self, now: Instant) {
        let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(30)) {
            return;
        }
        *last = Some(now);
        self.lock()
            .retain(|_, v| now.duration_since(v.last_seen) < Duration::from_secs(30));
    }
}

struct Prober {
    verdicts: Arc<Verdicts>,
}

#[async_trait]
impl HealthCheck for Prober {
    async fn check(&self, target: &Backend) -> Result<()> {
        let Some(spec) = target.ext.get::<Arc<ProbeSpec>>() else {
            return Ok(());
        };
        let Some(probe) = &spec.check else {
            return Ok(());
        };
        let Some(addr) = target.addr.as_inet().copied() else {
            return Ok(());
        };
        let key = health_key(target);
        let now = Instant::now();
        self.verdicts.prune(now);
        if let Some(v) = self.verdicts.lock().get_mut(&key) {
            v.last_seen = now;
            if now < v.next_due {
                return verdict_result(v.healthy);
            }
        }
        let outcome = run_probe(probe, addr).await;
        let now = Instant::now();
        let mut map = self.verdicts.lock();
        let v = map.entry(key).or_insert_with(|| Verdict {
            healthy: true,
            successes: 0,
            failures: 0,
            next_due: now,
            last_seen: now,
            last_error: None,
        });
        match outcome {
            Ok(()) => {
                v.successes += 1;
                v.failures = 0;
                v.last_error = None;
                if !v.healthy && v.successes >= probe.rise {
                    v.healthy = true;
                }
            }
            Err(e) => {
                v.failures += 1;
                v.successes = 0;
                v.last_error = Some(e);
                if v.healthy && v.failures >= probe.fall {
                    v.healthy = false;
                }
            }
        }
        v.next_due = now + probe.interval;
        v.last_seen = now;
        let (healthy, error) = (v.healthy, v.last_error.clone());
        drop(map);
        INSTANCE_HEALTHY
            .with_label_values(&[&spec.service, &addr.to_string()])
            .set(i64::from(healthy));
        match (healthy, error) {
            (false, Some(e)) => Error::e_explain(ErrorType::ConnectError, e),
            (healthy, _) => verdict_result(healthy),
        }
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }

    /// Names the target in pingora's "becomes (un)healthy" log lines.
    fn backend_summary(&self, target: &Backend) -> String {
        let service = target
            .ext
            .get::<Arc<ProbeSpec>>()
            .map_or("?", |s| s.service.as_str());
        format!("service {service} instance {}", target.addr)
    }
}

fn verdict_result(healthy: bool) -> Result<()> {
    if healthy {
        Ok(())
    } else {
        Error::e_explain(ErrorType::ConnectError, "failing health checks")
    }
}

/// One probe: TCP connect, or an HTTP/1.1 GET whose status must be in `expect`.
async fn run_probe(probe: &Probe, addr: SocketAddr) -> std::result::Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if probe.kind == HealthCheckKind::Tcp {
            return Ok(());
        }
        let host = if probe.host.is_empty() {
            addr.to_string()
        } else {
            probe.host.clone()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-health-check\r\nConnection: close\r\n\r\n",
            probe.path
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = stream
                .read(&mut buf[len..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before status line".to_string());
            }
            len += n;
        }
        let status = std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| buf.starts_with(b"HTTP/1."))
            .ok_or("malformed status line")?;
        if probe.expect.contains(&status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(probe.timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", probe.timeout)))
}
