//! Concurrency limits: at most `max` requests of a route in flight at once — for the whole
//! route, per client IP, per value of a header or per consumer. Counting uses `pingora-limits`' `Inflight`
//! (a count-min sketch: one fixed 256 KiB table per limit however many keys, never an
//! under-count; with many distinct keys a rare collision may over-count and refuse early).
//! The slot taken is a guard held in the request's policy state: it is given back when the
//! request ends however it ends — finished, refused later, failed upstream or aborted by the
//! client — because dropping the state (`RequestCtx::release`, and `Drop` as the backstop)
//! drops the guard. Beyond the limit: 503 `overloaded` with `Retry-After: 1`.

use super::{Outcome, Refusal, Request, State};
use crate::config::{ConcurrencyConfig, Problems};
use crate::reply::ErrorCode;
use crate::telemetry::policy::concurrency_gauge;
use http::{HeaderName, HeaderValue};
use pingora_limits::inflight::{Guard, Inflight};
use prometheus::IntGauge;

/// What requests are counted together.
#[derive(Debug, Clone, PartialEq)]
pub enum Per {
    Route,
    ClientIp,
    /// Requests without the header share one count.
    Header(HeaderName),
    /// The authenticated consumer; requests naming no consumer are counted by client IP.
    Consumer,
}

/// A compiled `concurrency` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrencySpec {
    pub max: u32,
    pub per: Per,
    pub shadow: bool,
}

impl ConcurrencySpec {
    /// Compiles `routes[i].concurrency`.
    pub fn compile(cfg: &ConcurrencyConfig, at: &str, problems: &mut Problems) -> ConcurrencySpec {
        if cfg.max == 0 {
            problems.push(format!("{at}.max"), "must be at least 1");
        }
        let per = match cfg.per.as_str() {
            "route" => Per::Route,
            "client_ip" => Per::ClientIp,
            other => match other.strip_prefix("header:").map(HeaderName::try_from) {
                Some(Ok(name)) => Per::Header(name),
                Some(Err(_)) => {
                    problems.push(format!("{at}.per"), format!("bad header name in {other:?}"));
                    Per::Route
                }
                None if other == "consumer" => Per::Consumer,
                None => {
                    problems.push(
                        format!("{at}.per"),
                        format!("unknown {other:?}; use route, client_ip, header:NAME or consumer"),
                    );
                    Per::Route
                }
            },
        };
        ConcurrencySpec {
            max: cfg.max,
            per,
            shadow: cfg.shadow,
        }
    }
}

/// A route's live limit.
pub struct Concurrency {
    spec: ConcurrencySpec,
    inflight: Inflight,
    gauge: IntGauge,
}

/// A request's place in a limit; leaving is dropping it.
pub struct Slot {
    _guard: Guard,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Concurrency {
    /// The limit of `route`, its gauge at zero.
    pub fn new(route: &str, spec: ConcurrencySpec) -> Self {
        Self {
            spec,
            inflight: Inflight::new(),
            gauge: concurrency_gauge(route),
        }
    }

    /// Shadow mode asked for in the file.
    pub fn shadow(&self) -> bool {
        self.spec.shadow
    }

    /// Takes a slot (kept in `state` until the request ends) or refuses.
    pub fn check(&self, req: &Request<'_>, state: &mut State) -> Outcome {
        let (guard, count) = match &self.spec.per {
            Per::Route => self.inflight.incr(0u8, 1),
            Per::ClientIp => self.inflight.incr(req.client_ip, 1),
            Per::Header(name) => self
                .inflight
                .incr(req.headers.get(name).map(HeaderValue::as_bytes), 1),
            Per::Consumer => match state.consumer() {
                Some(c) => self.inflight.incr(c.name.as_bytes(), 1),
                None => self.inflight.incr(req.client_ip, 1),
            },
        };
        if count > self.spec.max as isize {
            // The guard is dropped here: a refused request holds no slot.
            return Outcome::Refuse(Refusal {
                code: ErrorCode::Overloaded,
                headers: vec![("Retry-After", HeaderValue::from_static("1"))],
            });
        }
        self.gauge.inc();
        state.hold(Slot {
            _guard: guard,
            gauge: self.gauge.clone(),
        });
        Outcome::Continue
    }
}
