//! Configuration: the YAML schema as serde types, `${VAR}` expansion, and a reader that reports
//! every mistake of a file at once with its file, line, column and field path (`load.rs`). This
//! module uses no other module of the crate: it knows the schema, not what the values mean. Turning a
//! `Config` into runtime types — and finding every value that makes no sense, like an unknown
//! service or a bad address — is the compile step (`snapshot::compile_file`), which locates its
//! problems through the parsed [`Document`].
//!
//! The reader is yaml-rust2 (already used for positions) plus the serde derives of the schema:
//! serde_yaml stops at the first error and knows no positions for later checks; it stays the
//! reference a test compares valid files against.

mod balancing;
mod de;
mod edge;
mod env;
mod error;
mod identity;
mod limits;
mod load;
mod mirror;
mod observability;
mod rate_limit;
mod redis;
mod scalar;
mod split;
pub mod suggest;
mod tree;
mod types;
mod units;

pub use error::{ConfigError, ConfigErrors, Problem, Problems};
pub use load::{parse_file, parse_str, sort as sort_errors, Document, Parsed};
pub use types::*;

use std::path::Path;

/// Largest accepted instance weight; pingora expands weights into a selection table of at most
/// 65 535 slots.
pub const MAX_WEIGHT: usize = 1000;

/// Reads and parses a file into the schema; every mistake of the file, or the configuration.
/// (Whether the values make sense is the compile step's question: `snapshot::compile_file`.)
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    parse_file(path)?.into_result()
}

/// Parses YAML text into the schema; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_str(file, text)?.into_result()
}

/// Route, service and rule names become metric label values and URL segments.
pub fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A stable 64-bit FNV-1a hash of the configuration text, shown in `/admin/config` and the
/// `portico_config_info` metric so operators can spot replicas running different configs.
pub fn content_hash(text: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
