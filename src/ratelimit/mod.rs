//! Rate limiting: one algorithm ([`gcra`]), two stores with identical decisions ([`local`],
//! [`shared`], whose concurrent decisions share calls: [`coalesce`]), request keys ([`key`]), rules ([`rule`]) and the gateway count that divides a
//! rule's local fallback ([`peers`]). Attaching rules to routes and
//! answering refusals is the rate-limit policy's job (`policy::ratelimit`).

pub mod coalesce;
pub mod gcra;
pub mod key;
pub mod local;
pub mod peers;
pub mod rule;
pub mod shared;

pub use rule::{RateHeaders, Rule, RuleSpec};
