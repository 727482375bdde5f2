//! `server.limits`: request size and time limits, connection limits and the treatment of
//! header names with `_`, all applied before any routing.

use super::units::{byte_size, duration};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Request size and time limits applied before any routing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Larger bodies are refused with 413 (declared or streamed).
    #[serde(with = "byte_size")]
    pub max_request_body: u64,
    /// Request line plus headers above this are refused with 431.
    #[serde(with = "byte_size")]
    pub max_header_bytes: u64,
    /// Longest wait for each read of a request body from the client.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// How long an idle client connection is kept open between requests (HTTP/1 and HTTP/2).
    /// HTTP/1 counts whole seconds (rounded up); `0s` turns HTTP/1 keep-alive off.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,
    /// Longest time from a request's first byte (a new connection's accept) to the end of its
    /// head; on a cleartext h2c listener, also the wait for the HTTP/2 preface.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// Idle time (from a response, or a new connection's accept) after which a cleartext
    /// HTTP/1 connection waits without a task of its own (`listener::dormant`); `0s`: never.
    /// Going dormant and waking cost ~25 µs of CPU (`benches/dormant_cost.py`), so connections
    /// that send a request every second or two stay in their task.
    #[serde(with = "duration")]
    pub dormant_after: Duration,
    /// Open client connections per process; new ones beyond are closed on arrival (0 = no limit).
    pub max_connections: usize,
    /// Open client connections per client address (the socket peer); 0 = no limit.
    pub max_connections_per_ip: usize,
    /// What to do with request header names containing `_`.
    pub headers_with_underscores: UnderscoreHeaders,
}

/// Request headers whose names contain `_` (`X_User_Id`): CGI-style origins read them as the
/// hyphenated name, so a client could smuggle a header past a gateway rule on `x-user-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    /// Removed before routing and forwarding (nginx's default).
    #[default]
    Drop,
    /// The request is refused with 400 `bad_request`.
    Reject,
    /// Passed on unchanged.
    Allow,
}

impl LimitsConfig {
    /// The HTTP/1 keep-alive in Pingora's terms: whole seconds, rounded up (Pingora's timer
    /// counts seconds, and its `0` means no limit); `None`, keep-alive off, for `0s`.
    pub fn keepalive_secs(&self) -> Option<u64> {
        let t = self.keepalive_timeout;
        (!t.is_zero()).then(|| t.as_secs() + u64::from(t.subsec_nanos() > 0))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_body: 10 << 20,
            max_header_bytes: 64 << 10,
            body_read_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            dormant_after: Duration::from_secs(5),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            headers_with_underscores: UnderscoreHeaders::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_whole_seconds_rounded_up_and_off_at_zero() {
        let secs = |ms| {
            LimitsConfig {
                keepalive_timeout: Duration::from_millis(ms),
                ..LimitsConfig::default()
            }
            .keepalive_secs()
        };
        assert_eq!(secs(0), None);
        assert_eq!(secs(1), Some(1), "never Pingora's 0, which is no limit");
        assert_eq!(secs(500), Some(1));
        assert_eq!(secs(1000), Some(1));
        assert_eq!(secs(1500), Some(2));
        assert_eq!(secs(60_000), Some(60));
    }
}
