//! The operational log (standard error; the access log is separate): JSON lines when stderr is
//! not a terminal, text otherwise, filtered with `RUST_LOG` syntax — and the filter can be
//! replaced while the process runs (`PUT /admin/log-level`, or a reload that changes
//! `log.level`), so an operator can turn on `debug` for one module during an incident and back
//! off again without a restart.
//!
//! env_logger fixes its filter when built; Portico installs one logger that forwards to an
//! env_logger swapped whole on each change (`arc-swap`: the log path takes no lock).

use arc_swap::ArcSwap;
use std::io::{IsTerminal, Write};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

/// The filter when neither `RUST_LOG` nor `log.level` names one.
pub const DEFAULT: &str = "info";

static LOGGER: OnceLock<Reloadable> = OnceLock::new();

struct Reloadable {
    inner: ArcSwap<env_logger::Logger>,
    /// The filter in force, as given.
    spec: Mutex<String>,
    /// The filter installed at start, and whether `RUST_LOG` gave it.
    initial: String,
    from_env: bool,
}

impl log::Log for Reloadable {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.load().enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        self.inner.load().log(record);
    }

    fn flush(&self) {
        self.inner.load().flush();
    }
}

/// Installs the logger, filtered by `RUST_LOG` when it is set (an invalid value is reported
/// and [`DEFAULT`] used), else by [`DEFAULT`]. Later calls change nothing.
pub fn init_from_env() {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let (spec, from_env, problem) = match env {
        Some(v) => match check(&v) {
            Ok(()) => (v, true, None),
            Err(e) => (
                DEFAULT.to_string(),
                false,
                Some(format!("RUST_LOG={v:?} ignored: {e}")),
            ),
        },
        None => (DEFAULT.to_string(), false, None),
    };
    let logger = build(&spec);
    let max = logger.filter();
    let mut fresh = false;
    let installed = LOGGER.get_or_init(|| {
        fresh = true;
        Reloadable {
            inner: ArcSwap::from_pointee(logger),
            spec: Mutex::new(spec.clone()),
            initial: spec,
            from_env,
        }
    });
    if fresh && log::set_logger(installed).is_ok() {
        log::set_max_level(max);
    }
    if let Some(problem) = problem {
        log::warn!("{problem}");
    }
}

/// Applies the configuration's `log.level` at start; `RUST_LOG`, when set, wins over it.
pub fn configured(level: Option<&str>) {
    let from_env = LOGGER.get().is_some_and(|l| l.from_env);
    if let (Some(level), false) = (level, from_env) {
        if let Err(e) = set(level) {
            log::warn!("log.level {level:?} not applied: {e}");
        }
    }
}

/// Applies a reload's change of `log.level` (a deliberate change wins over `RUST_LOG` and over
/// `PUT /admin/log-level`); removing it goes back to the filter of the start.
pub fn reconfigured(old: Option<&str>, new: Option<&str>) {
    if old == new {
        return;
    }
    let Some(installed) = LOGGER.get() else {
        return;
    };
    let target = new.unwrap_or(&installed.initial);
    match set(target) {
        Ok(previous) => log::info!("log filter {previous:?} -> {target:?} (log.level changed)"),
        Err(e) => log::warn!("log.level {target:?} not applied: {e}"),
    }
}

/// Replaces the filter; the previous one. An invalid `spec` changes nothing.
pub fn set(spec: &str) -> Result<String, String> {
    check(spec)?;
    let Some(installed) = LOGGER.get() else {
        return Err("logging is not initialised".into());
    };
    let logger = build(spec);
    let max = logger.filter();
    let mut current = installed.spec.lock().unwrap_or_else(|p| p.into_inner());
    installed.inner.store(Arc::new(logger));
    log::set_max_level(max);
    Ok(std::mem::replace(&mut *current, spec.to_string()))
}

/// The filter in force.
pub fn current() -> String {
    LOGGER.get().map_or_else(
        || DEFAULT.to_string(),
        |l| l.spec.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    )
}

/// Checks a `RUST_LOG`-syntax filter: comma-separated `level`, `target` or `target=level`
/// directives (levels `off`, `error`, `warn`, `info`, `debug`, `trace`, any case). env_logger
/// itself skips a bad directive with a note on stderr; here it is an error the caller sees.
/// The `/regex` message filter is refused: one bad pattern would silence the whole log.
pub fn check(spec: &str) -> Result<(), String> {
    if spec.trim().is_empty() {
        return Err("empty filter; give a level such as `info`".into());
    }
    if spec.contains('/') {
        return Err("`/regex` message filters are not supported".into());
    }
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((t, l)) => (Some(t.trim()), Some(l.trim())),
            // A lone word is a level when it names one, else a target (all levels).
            None if log::LevelFilter::from_str(directive).is_ok() => (None, Some(directive)),
            None => (Some(directive), None),
        };
        if let Some(level) = level {
            if log::LevelFilter::from_str(level).is_err() {
                return Err(format!(
                    "{directive:?}: {level:?} is not a level (off, error, warn, info, debug, trace)"
                ));
            }
        }
        if let Some(target) = target {
            let valid = !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'));
            if !valid {
                return Err(format!(
                    "{directive:?}: {target:?} is not a module path such as portico::proxy"
                ));
            }
        }
    }
    Ok(())
}

fn build(spec: &str) -> env_logger::Logger {
    let json = !std::io::stderr().is_terminal();
    env_logger::Builder::new()
        .parse_filters(spec)
        .format(move |buf, record| {
            if json {
                let line = serde_json::json!({
                    "ts": buf.timestamp_millis().to_string(),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "msg": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            } else {
                writeln!(
                    buf,
                    "{} {:5} {}: {}",
                    buf.timestamp_millis(),
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn filters_in_rust_log_syntax_are_checked() {
        for good in [
            "info",
            "DEBUG",
            "warn,portico::proxy=debug",
            "portico",
            "pingora_core=off, portico=trace",
        ] {
            assert!(check(good).is_ok(), "{good}");
        }
        for bad in ["", "  ", "verbose=2", "portico=loud", "a b", "info/needle"] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
