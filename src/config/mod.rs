//! Configuration: YAML schema, `${VAR}` expansion, and validation that reports every error with
//! its file, line, column and field path. A `Config` returned from here is fully validated.

mod de;
mod env;
mod error;
mod instance;
mod limits;
mod load;
mod observability;
mod rate_limit;
pub mod suggest;
mod tree;
mod types;
mod units;
mod validate;
mod validate_redis;
mod validate_service;
mod validate_telemetry;

pub use error::{ConfigError, ConfigErrors, Problem, Problems};
pub use instance::{parse_instance, InstanceSpec, MAX_WEIGHT};
pub use load::{parse_file, parse_str, Document, Parsed};
pub use types::*;

use std::path::Path;

/// Reads, expands, parses and validates a file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    finish(parse_file(path)?)
}

/// Expands, parses and validates YAML text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    finish(parse_str(file, text)?)
}

fn finish(parsed: Parsed) -> Result<Config, ConfigErrors> {
    let at = |path: &str, message: String| Problem {
        path: path.to_string(),
        message,
    };
    let problems = validate::validate(&parsed.config, &at);
    let mut errors = parsed.errors;
    errors.extend(
        problems
            .iter()
            .filter(|p| !parsed.document.covers(&p.path))
            .map(|p| parsed.document.locate(p)),
    );
    if errors.is_empty() {
        Ok(parsed.config)
    } else {
        load::sort(&mut errors);
        Err(ConfigErrors(errors))
    }
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
