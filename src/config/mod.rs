//! Configuration: YAML schema, `${VAR}` expansion, and validation that reports every error with
//! its file, line, column and field path. A `Config` returned from here is fully validated.

mod env;
mod error;
mod instance;
mod limits;
mod locate;
mod observability;
mod rate_limit;
mod types;
mod units;
mod validate;
mod validate_redis;
mod validate_service;
mod validate_telemetry;

pub use error::{ConfigError, ConfigErrors};
pub use instance::{parse_instance, InstanceSpec, MAX_WEIGHT};
pub use types::*;

use std::path::Path;

/// Reads, expands, parses and validates a file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::at(
            &file,
            1,
            1,
            "",
            format!("cannot read: {e}"),
        )])
    })?;
    load_str(&file, &text)
}

/// Expands, parses and validates YAML text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let expanded = env::expand(file, text)?;
    let config: Config = serde_yaml::from_str(&expanded).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ConfigErrors(vec![ConfigError::at(file, line, col, "", message)])
    })?;
    let locator = locate::Locator::new(&expanded);
    let errors = validate::validate(&config, &|path: &str, message: String| {
        let (line, col) = locator.find(path);
        ConfigError::at(file, line, col, path, message)
    });
    if errors.is_empty() {
        Ok(config)
    } else {
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
