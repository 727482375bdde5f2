//! Request mirroring: a sampled copy of a route's requests — the head as the primary attempt
//! sends it and the body up to a bound — goes to another service on its own task, off the
//! client's path: the client's response never waits for it, and a slow or dead mirror costs
//! the client nothing but the copy of the body. Copies in flight are bounded per route; beyond
//! the bound they are dropped and counted.
//!
//! With `compare`, the mirror's status (and with `compare_body` a hash of its body) is set
//! against the primary's, which the request hands over when it is logged; the result is
//! counted so a team can see whether a new version answers like the old one before shifting
//! traffic to it.
//!
//! A copy is sent when the client's body is complete (a request that ends early is not
//! mirrored), with `Content-Length` set to the copied body and no `Expect` or
//! `Transfer-Encoding`. The mirror service's instance is chosen as for any request (health,
//! breakers, per-instance caps, slow start) and its outcome feeds that instance's breaker.

use crate::config::{MirrorConfig, Problems};
use crate::http_call::Caller;
use crate::telemetry::mirror::MirrorMetrics;
use crate::upstream::{Pick, Upstream};
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::HeaderValue;
use pingora::http::RequestHeader;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Largest `max_body`: every copy in flight may hold this much.
const MAX_BODY_LIMIT: u64 = 16 << 20;
/// Longest `timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Sampling resolution: `percent` is kept in millionths.
const PER_MILLION: u32 = 1_000_000;

/// What a route's mirror compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Off,
    Status,
    StatusAndBody,
}

/// A compiled `mirror`.
#[derive(Debug, Clone)]
pub struct MirrorSpec {
    service: String,
    /// Chance of a copy, in millionths.
    chance: u32,
    compare: Compare,
    timeout: Duration,
    max_in_flight: u32,
    max_body: usize,
    host: Option<HeaderValue>,
}

impl MirrorSpec {
    /// Compiles a route's `mirror` (the service is checked by the caller), reporting every
    /// problem under `at`.
    pub fn compile(c: &MirrorConfig, at: &str, problems: &mut Problems) -> Self {
        if !(c.percent > 0.0 && c.percent <= 100.0) {
            problems.push(format!("{at}.percent"), "must be above 0 and at most 100");
        }
        if c.timeout.is_zero() || c.timeout > MAX_TIMEOUT {
            problems.push(format!("{at}.timeout"), "must be between 1ms and 60s");
        }
        if c.max_in_flight == 0 {
            problems.push(format!("{at}.max_in_flight"), "must be positive");
        }
        if c.max_body > MAX_BODY_LIMIT {
            problems.push(
                format!("{at}.max_body"),
                "at most 16MiB (every copy in flight may hold this much)",
            );
        }
        let host = c
            .host
            .as_deref()
            .and_then(|h| match HeaderValue::from_str(h) {
                Ok(v) if !h.is_empty() => Some(v),
                _ => {
                    problems.push(format!("{at}.host"), format!("{h:?} is not a host"));
                    None
                }
            });
        Self {
            service: c.service.clone(),
            chance: (c.percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
            compare: match (c.compare, c.compare_body) {
                (_, true) => Compare::StatusAndBody,
                (true, false) => Compare::Status,
                (false, false) => Compare::Off,
            },
            timeout: c.timeout,
            max_in_flight: c.max_in_flight.max(1),
            max_body: c.max_body.min(MAX_BODY_LIMIT) as usize,
            host,
        }
    }
}

/// A route's mirror, live.
pub struct Mirror {
    shared: Arc<Shared>,
}

/// What the route and its copies' tasks share.
struct Shared {
    spec: MirrorSpec,
    upstream: Arc<Upstream>,
    in_flight: AtomicU32,
    metrics: MirrorMetrics,
}

impl Mirror {
    /// The mirror of `route` (its service must be in `services`: the compile step checked it).
    pub fn new(route: &str, spec: MirrorSpec, services: &BTreeMap<String, Arc<Upstream>>) -> Self {
        let metrics = MirrorMetrics::new(route, spec.compare != Compare::Off);
        Self {
            shared: Arc::new(Shared {
                upstream: services[&spec.service].clone(),
                spec,
                in_flight: AtomicU32::new(0),
                metrics,
            }),
        }
    }

    /// A copy of the request whose upstream head is `head`, when the request is sampled and
    /// the route has a copy to spare (a sampled request beyond `max_in_flight` is counted).
    pub fn sample(&self, head: &RequestHeader) -> Option<Copy> {
        let s = &self.shared;
        if s.spec.chance < PER_MILLION && fastrand::u32(..PER_MILLION) >= s.spec.chance {
            return None;
        }
        if s.in_flight.fetch_add(1, Ordering::Relaxed) >= s.spec.max_in_flight {
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
            s.metrics.dropped[0].inc();
            return None;
        }
        s.metrics.in_flight.inc();
        Some(Copy {
            head: copied_head(head, s.spec.host.as_ref()),
            body: BytesMut::new(),
            slot: Slot(s.clone()),
        })
    }
}

/// A copy's place under `max_in_flight`, given back on drop.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.in_flight.dec();
    }
}

/// A request being copied: its head, and its body as it arrives.
pub struct Copy {
    head: Box<RequestHeader>,
    body: BytesMut,
    slot: Slot,
}

impl Copy {
    /// Starts over from `head`: a retried attempt sends the head again and its body from
    /// the start.
    pub fn restart(&mut self, head: &RequestHeader) {
        self.head = copied_head(head, self.slot.0.spec.host.as_ref());
        self.body.clear();
    }

    /// Adds a chunk of the body; `false` when the body outgrew `max_body` (counted): the copy
    /// is then to be dropped.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        let shared = &self.slot.0;
        if self.body.len() + chunk.len() > shared.spec.max_body {
            shared.metrics.dropped[1].inc();
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    /// Sends the copy on its own task; returns what the request hands its own answer to when
    /// the route compares.
    pub fn send(self, caller: &Arc<Caller>) -> Option<Comparison> {
        let Copy {
            mut head,
            body,
            slot,
        } = self;
        if !body.is_empty() || head.headers.contains_key(CONTENT_LENGTH) {
            let _ = head.insert_header(CONTENT_LENGTH, body.len());
        }
        let compare = slot.0.spec.compare;
        let (comparison, primary) = match compare {
            Compare::Off => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                let hasher = (compare == Compare::StatusAndBody).then(DefaultHasher::new);
                (Some(Comparison { tx, hasher }), Some(rx))
            }
        };
        tokio::spawn(exchange(slot, head, body.freeze(), caller.clone(), primary));
        comparison
    }
}

/// The head a copy carries: the primary attempt's, with the framing of a whole body and
/// the configured `Host`.
fn copied_head(head: &RequestHeader, host: Option<&HeaderValue>) -> Box<RequestHeader> {
    let mut copy = Box::new(head.clone());
    copy.remove_header(&TRANSFER_ENCODING);
    copy.remove_header(&EXPECT);
    let authority = copy.uri.authority().map(|a| a.as_str().to_string());
    if let Some(authority) = authority {
        // An HTTP/2 client's request carries its host in the URI; an HTTP/1.1 copy names it
        // in `Host` and asks for the path.
        if !copy.headers.contains_key(HOST) {
            let _ = copy.insert_header(HOST, authority);
        }
        if let Some(pq) = copy.uri.path_and_query().cloned() {
            copy.set_uri(http::Uri::from(pq));
        }
    }
    if let Some(host) = host {
        let _ = copy.insert_header(HOST, host.clone());
    }
    copy
}

/// What the request answered, for the comparison: the status its upstream gave (none when
/// Portico made the answer) and the hash of the whole body it passed on.
struct Primary {
    status: Option<u16>,
    body: Option<u64>,
}

/// The request's side of a comparison: it hashes its response body as it passes and hands
/// its status over when it is logged.
pub struct Comparison {
    tx: oneshot::Sender<Primary>,
    hasher: Option<DefaultHasher>,
}

impl Comparison {
    /// Whether the response body is compared (and so must be fed to [`Self::body_chunk`]).
    pub fn wants_body(&self) -> bool {
        self.hasher.is_some()
    }

    /// A chunk of the response body, as the upstream sent it.
    pub fn body_chunk(&mut self, chunk: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.write(chunk);
        }
    }

    /// Hands the primary's answer over: `status` from its upstream (none when Portico made
    /// the response), `body_complete` when the whole body went through [`Self::body_chunk`].
    pub fn finish(self, status: Option<u16>, body_complete: bool) {
        let body = self.hasher.filter(|_| body_complete).map(|h| h.finish());
        let _ = self.tx.send(Primary { status, body });
    }
}

/// The copy's task: one exchange with the mirror service, bounded by the timeout, then the
/// comparison once the request hands its answer over.
async fn exchange(
    slot: Slot,
    head: Box<RequestHeader>,
    body: Bytes,
    caller: Arc<Caller>,
    primary: Option<oneshot::Receiver<Primary>>,
) {
    let shared = slot.0.clone();
    let mut hasher = shared
        .spec
        .compare
        .eq(&Compare::StatusAndBody)
        .then(DefaultHasher::new);
    let answer = tokio::time::timeout(
        shared.spec.timeout,
        shared.call(&caller, head, body, &mut hasher),
    )
    .await
    .ok()
    .flatten();
    shared.metrics.outcomes[usize::from(answer.is_none())].inc();
    // The slot is for copies still talking to the mirror, not for ones waiting on the primary.
    drop(slot);
    let (Some(primary), Some(results)) = (primary, &shared.metrics.results) else {
        return;
    };
    // The request went away without being logged: nothing to compare with.
    let Ok(primary) = primary.await else {
        return;
    };
    let result = match (answer, primary.status) {
        (Some(mine), Some(theirs)) if mine != theirs => 1,
        (Some(_), Some(_)) => match (hasher.map(|h| h.finish()), primary.body) {
            (None, _) => 0,
            (Some(mine), Some(theirs)) if mine == theirs => 0,
            (Some(_), Some(_)) => 2,
            (Some(_), None) => 3,
        },
        _ => 3,
    };
    results[result].inc();
}

impl Shared {
    /// Sends the copy to an instance of the mirror service and reads the whole answer;
    /// its status, or none when there was no answer.
    async fn call(
        &self,
        caller: &Caller,
        head: Box<RequestHeader>,
        body: Bytes,
        hasher: &mut Option<DefaultHasher>,
    ) -> Option<u16> {
        let upstream = &self.upstream;
        let Pick::Selected(selection) = upstream.select(&[], &[], Instant::now()) else {
            return None;
        };
        let addr = selection.backend.addr.as_inet().copied();
        let probe = addr
            .filter(|_| selection.probe)
            .map(|a| upstream.probe_slot(a));
        let _load = selection.slot;
        let peer = upstream.peer(&selection.backend);
        let answer = caller
            .send(&peer, head, body, |chunk| {
                if let Some(h) = hasher.as_mut() {
                    h.write(chunk);
                }
                Ok(())
            })
            .await;
        let status = answer.ok().map(|(status, _)| status);
        let success = status.is_some_and(|s| !upstream.is_failure_status(s));
        match (probe, addr) {
            (Some(probe), _) => probe.report(success),
            (None, Some(addr)) => upstream.record_outcome(&addr, success),
            (None, None) => {}
        }
        status
    }
}
