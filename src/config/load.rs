//! Reading a configuration file: `${VAR}` expansion, YAML into a located tree, the tree into
//! the typed schema — in rounds that collect every mistake instead of stopping at the first
//! (see `de.rs`) — and the [`Document`] that the compile step uses to locate its own errors.

use super::de::{De, Fixup, Round};
use super::error::{ConfigError, ConfigErrors, Problem};
use super::tree::{join, Mark, Tree};
use super::Config;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Rounds before giving up on a file with very many mistakes.
const MAX_ROUNDS: usize = 500;

/// A parsed file: the schema values (with the parts that were wrong replaced by neutral
/// values or left out), the mistakes found, and the located tree for later errors.
pub struct Parsed {
    pub config: Config,
    pub errors: Vec<ConfigError>,
    pub document: Document,
}

impl Parsed {
    /// The configuration when the file had no mistake, else the mistakes.
    pub fn into_result(self) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Where a configuration came from and where each of its fields is written.
pub struct Document {
    file: String,
    tree: Tree,
    /// Paths an error was already reported for (their fields hold stand-in values).
    covered: Vec<String>,
}

impl Document {
    /// The file name errors are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The located error for a compile-step problem.
    pub fn locate(&self, problem: &Problem) -> ConfigError {
        let mark = self.tree.locate(&problem.path);
        ConfigError::at(
            &self.file,
            mark.line,
            mark.col,
            problem.path.clone(),
            problem.message.clone(),
        )
    }

    /// Whether a parse error already speaks for `path` (the field at or above it holds a
    /// stand-in value, so a compile-step complaint about it would be noise).
    pub fn covers(&self, path: &str) -> bool {
        self.covered.iter().any(|c| {
            path == c
                || (path.starts_with(c.as_str())
                    && (c.is_empty() || matches!(path.as_bytes().get(c.len()), Some(b'.' | b'['))))
        })
    }
}

/// Reads and parses a file.
pub fn parse_file(path: &Path) -> Result<Parsed, ConfigErrors> {
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
    parse_str(&file, &text)
}

/// Expands and parses YAML text; `file` names it in errors. `Err` only when nothing usable
/// could be read (an unset variable, broken YAML); otherwise every mistake is in
/// [`Parsed::errors`].
pub fn parse_str(file: &str, text: &str) -> Result<Parsed, ConfigErrors> {
    let expanded = super::env::expand(file, text)?;
    let (tree, flaws) = Tree::parse(&expanded).map_err(|f| {
        ConfigErrors(vec![ConfigError::at(
            file,
            f.mark.line,
            f.mark.col,
            f.path,
            f.message,
        )])
    })?;
    let mut errors: Vec<ConfigError> = flaws
        .into_iter()
        .map(|f| ConfigError::at(file, f.mark.line, f.mark.col, f.path, f.message))
        .collect();
    let outcome = deserialize_all::<Config>(&tree);
    errors.extend(
        outcome
            .mistakes
            .into_iter()
            .map(|(path, mark, message)| ConfigError::at(file, mark.line, mark.col, path, message)),
    );
    let Some(config) = outcome.value else {
        sort(&mut errors);
        return Err(ConfigErrors(errors));
    };
    sort(&mut errors);
    Ok(Parsed {
        config,
        document: Document {
            file: file.to_string(),
            tree,
            covered: outcome.covered,
        },
        errors,
    })
}

/// Errors in the order they appear in the file.
pub fn sort(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.line, e.col));
}

/// What the rounds produced.
struct Outcome<T> {
    value: Option<T>,
    mistakes: Vec<(String, Mark, String)>,
    covered: Vec<String>,
}

/// Deserializes `T` from `tree`, recording every mistake (see the module doc of `de.rs`).
fn deserialize_all<T: DeserializeOwned>(tree: &Tree) -> Outcome<T> {
    let mut fixups: HashMap<String, Fixup> = HashMap::new();
    let mut meant = HashSet::new();
    let mut mistakes = Vec::new();
    let mut seen = HashSet::new();
    let mut record = |path: String, mark: Mark, message: String| {
        if seen.insert((path.clone(), message.clone())) {
            mistakes.push((path, mark, message));
        }
    };
    for round_no in 0..MAX_ROUNDS {
        let round = Round::new(&fixups);
        let result = T::deserialize(De::root(tree.root(), &round));
        for unknown in round.unknown_keys() {
            meant.extend(unknown.meant);
            record(unknown.path, unknown.mark, unknown.message);
        }
        let error = match result {
            Ok(value) => {
                return Outcome {
                    value: Some(value),
                    mistakes,
                    covered: fixups.into_keys().chain(meant).collect(),
                }
            }
            Err(e) => e,
        };
        let (path, mark) = error
            .at
            .clone()
            .unwrap_or_else(|| (String::new(), tree.root().mark));
        // A mistake inside a stand-in value is a consequence, not the author's.
        let quiet = stands_in(&fixups, &path);
        match error.missing {
            Some(field) => {
                let field_path = join(&path, field);
                if !quiet {
                    record(path.clone(), mark, error.message);
                }
                if fixups.contains_key(&field_path) {
                    fixups.insert(path.clone(), Fixup::Remove);
                } else {
                    fixups.insert(field_path, Fixup::Supply);
                }
            }
            None => match fixups.get(&path) {
                None => {
                    if !quiet {
                        record(path.clone(), mark, error.message);
                    }
                    fixups.insert(path.clone(), Fixup::Neutral);
                }
                Some(Fixup::Neutral | Fixup::Supply) => {
                    fixups.insert(path.clone(), Fixup::Remove);
                }
                Some(Fixup::Remove) => {
                    fixups.insert(parent(&path).to_string(), Fixup::Remove);
                }
            },
        }
        if fixups.get("") == Some(&Fixup::Remove) || round_no + 1 == MAX_ROUNDS {
            if round_no + 1 == MAX_ROUNDS {
                record(
                    String::new(),
                    Mark { line: 1, col: 1 },
                    "too many mistakes to list; fix these first".into(),
                );
            }
            break;
        }
    }
    Outcome {
        value: None,
        mistakes,
        covered: fixups.into_keys().collect(),
    }
}

/// Whether `path` is at or below a node that holds a stand-in value.
fn stands_in(fixups: &HashMap<String, Fixup>, path: &str) -> bool {
    let mut p = path;
    loop {
        if matches!(fixups.get(p), Some(Fixup::Neutral | Fixup::Supply)) {
            return true;
        }
        if p.is_empty() {
            return false;
        }
        p = parent(p);
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_str("f.yaml", text) {
            Ok(p) => p.errors.iter().map(ToString::to_string).collect(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_parse_mistake_is_reported_at_its_own_node() {
        let text = "\
server:
  threads: many
  listn: [\"127.0.0.1:1\"]
routes:
  - name: a
    service: s
    timeout: soon
  - name: b
    retry: {attempts: -1, backof: 1s}
services:
  s:
    instances: [\"127.0.0.1:1\"]
    connect_timeout: 2 parsecs
";
        assert_eq!(
            errors(text),
            [
                "f.yaml:2:12: server.threads: invalid type: string \"many\", expected usize",
                "f.yaml:3:3: server.listn: unknown field `listn`, expected one of `listen`, `tls`, `h2c`, `threads`, `work_stealing`, `admin`, `trusted_proxies`, `grace_period`, `shutdown_timeout`, `limits`, `upgrade_sock` (did you mean `listen`?)",
                "f.yaml:7:14: routes[0].timeout: invalid duration \"soon\" (expected number at 0); use e.g. \"250ms\", \"10s\", \"2m\"",
                "f.yaml:9:23: routes[1].retry.attempts: invalid value: integer `-1`, expected u32",
                "f.yaml:9:27: routes[1].retry.backof: unknown field `backof`, expected one of `attempts`, `on`, `non_idempotent`, `backoff` (did you mean `backoff`?)",
                "f.yaml:13:22: services.s.connect_timeout: invalid duration \"2 parsecs\" (unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); use e.g. \"250ms\", \"10s\", \"2m\"",
            ]
        );
    }

    #[test]
    fn stand_in_values_cover_their_paths_and_the_rest_keeps_its_values() {
        let p = parse_str(
            "f.yaml",
            "routes:\n  - {name: a, service: [x], timeout: 1s}\nservices: {}\n",
        )
        .unwrap();
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert!(p.document.covers("routes[0].service"));
        assert!(!p.document.covers("routes[0].name"));
        assert!(!p.document.covers("routes[0].service2"));
        assert_eq!(p.config.routes[0].name, "a");
        assert_eq!(
            p.config.routes[0].timeout,
            Some(std::time::Duration::from_secs(1))
        );
    }

    #[test]
    fn broken_yaml_is_one_located_error() {
        let e = errors("routes:\n  - {name: a\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("f.yaml:3:"), "{e:?}");
        assert!(e[0].contains("invalid YAML"), "{e:?}");
    }

    #[test]
    fn a_document_that_is_not_a_mapping_is_refused() {
        let e = errors("- just\n- a list\n");
        assert_eq!(
            e,
            ["f.yaml:1:1: invalid type: sequence, expected struct Config"]
        );
    }
}

#[cfg(test)]
mod reference {
    use super::*;

    /// serde_yaml reads the same files into the same values: the located deserializer changes
    /// where errors point, never what a valid file means.
    #[test]
    fn valid_files_read_exactly_as_serde_yaml_reads_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts: Vec<(String, String)> = ["conf/portico.yaml", "conf/minimal.yaml"]
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    std::fs::read_to_string(root.join(f)).unwrap(),
                )
            })
            .collect();
        texts.push((
            "scalars".into(),
            "server: {threads: 0x4, h2c: True, grace_period: '1s', admin: {token: '0123'}}\n\
             routes:\n  - name: '10'\n    service: 007\n    retry: {attempts: +2, on: [status]}\n\
             services:\n  '007': {instances: [\"127.0.0.1:1 weight=2\"], circuit_breaker: {failure_ratio: .5, max_ejected_ratio: 1}}\n\
             access_log: {sample: 1e-1, enabled: false}\n"
                .into(),
        ));
        texts.push((
            "empty values".into(),
            "server:\n  trusted_proxies:\n  admin:\n    token:\nrate_limits:\nkpis:\n\
             routes:\n  - {name: '0123', service: s, request_headers: {set: {x-v: 0123}}}\n\
             services:\n  s:\n    instances: [\"127.0.0.1:1\"]\n    sni:\n    hash_key: !!str 10\n"
                .into(),
        ));
        for (name, text) in texts {
            let expanded = super::super::env::expand(&name, &text).unwrap();
            let ours = parse_str(&name, &text).unwrap();
            assert!(ours.errors.is_empty(), "{name}: {:?}", ours.errors);
            let reference: Config = serde_yaml::from_str(&expanded).unwrap();
            assert_eq!(ours.config, reference, "{name}");
        }
    }
}
