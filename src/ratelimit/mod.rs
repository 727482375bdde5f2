//! Rate limiting: one algorithm ([`gcra`]), two stores with identical decisions ([`local`],
//! [`shared`]), request keys ([`key`]), and the per-route check the proxy runs in
//! `request_filter` ([`limiter`]).

pub mod gcra;
pub mod key;
pub mod limiter;
pub mod local;
pub mod shared;

pub use limiter::{Limits, RateHeaders, Verdict};
