//! The shape of the code, checked like behaviour: the module graph follows the layer order
//! `src/lib.rs` declares, and the `ProxyHttp` hooks stay thin.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level modules in the order `src/lib.rs` declares them (its layer order).
fn layer_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|rest| rest.split(';').next())
        .map(|m| m.trim().to_string())
        .collect()
}

/// Every `.rs` file of a top-level module (`src/m.rs` or everything under `src/m/`).
fn files_of(module: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Top-level modules named through `crate::` in `text`, grouped imports included
/// (`use crate::{a, b::c}`). Comments are ignored.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` inside macros and `foo_crate::` are not ours.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                if depth == 1 && c == ',' {
                    found.extend(head(&item));
                    item.clear();
                } else {
                    item.push(c);
                }
            }
            found.extend(head(&item));
        } else {
            found.extend(head(rest));
        }
    }
    found
}

/// The first path segment of `path` (`a::b` → `a`).
fn head(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Top-level modules reached through `super::` chains long enough to climb to the crate root
/// from the file's module (`src/m.rs` and `src/m/mod.rs` are one level deep, `src/m/a.rs` two).
/// Inline modules are not counted, so a chain inside `mod tests` may read one level too high;
/// that can only add a false alarm, never hide an upward import.
fn super_references(text: &str, file_depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("super::") {
        let before = rest[..i].chars().last();
        rest = &rest[i..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            rest = &rest["super::".len()..];
            continue;
        }
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs >= file_depth {
            found.extend(head(rest));
        }
    }
    found
}

/// How deep the module of `file` is below the crate root.
fn module_depth(file: &Path) -> usize {
    let relative = file.strip_prefix(src()).unwrap();
    let parts = relative.components().count();
    if relative.file_name().is_some_and(|f| f == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// `(module, file, import)` for every import of a module declared later in `src/lib.rs`.
fn upward_imports() -> Vec<(String, String, String)> {
    let order = layer_order();
    let mut bad = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut used_modules = crate_references(&text);
            used_modules.extend(super_references(&text, module_depth(&file)));
            for used in used_modules {
                let Some(used_rank) = order.iter().position(|m| *m == used) else {
                    continue;
                };
                if used_rank > rank {
                    let file = file.strip_prefix(src()).unwrap().display().to_string();
                    bad.push((module.clone(), file, used));
                }
            }
        }
    }
    bad
}

#[test]
fn no_module_imports_a_module_declared_after_it_in_lib_rs() {
    let order = layer_order();
    assert!(order.len() > 20, "lib.rs lists the modules: {order:?}");
    let bad = upward_imports();
    assert!(
        bad.is_empty(),
        "imports against the layer order of src/lib.rs (a module may only use those above it):\n{}",
        bad.iter()
            .map(|(m, f, u)| format!("  {m} ({f}) uses {u}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn super_chains_that_climb_to_the_crate_root_are_references_too() {
    let text = "use super::super::gateway::Gateway;\nuse super::sibling;\nlet x = super::*;";
    let at_depth_2: Vec<String> = super_references(text, 2).into_iter().collect();
    assert_eq!(at_depth_2, ["gateway"]);
    let at_depth_1: Vec<String> = super_references(text, 1).into_iter().collect();
    assert_eq!(at_depth_1, ["gateway", "sibling"]);
}

#[test]
fn the_reference_scanner_sees_plain_grouped_and_nested_imports() {
    let refs = crate_references(
        "use crate::config::X;\nuse crate::{router::{A, B}, retry};\n// crate::gateway in a comment\nlet x = crate::telemetry::f(); $crate::hex::y;",
    );
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(refs, ["config", "retry", "router", "telemetry"]);
}

/// Longest `ProxyHttp` hook body, in lines: a hook reads the context, calls one step and maps
/// the result.
const MAX_HOOK_LINES: usize = 25;

#[test]
fn every_proxy_hook_is_a_few_lines() {
    let text = std::fs::read_to_string(src().join("proxy/mod.rs")).unwrap();
    let start = text
        .find("impl ProxyHttp for Proxy")
        .expect("the ProxyHttp impl");
    let lines: Vec<&str> = text[start..].lines().collect();
    let mut long = Vec::new();
    let mut hooks = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("    fn ") || line.starts_with("    async fn ") {
            let name = line
                .trim()
                .trim_start_matches("async ")
                .trim_start_matches("fn ")
                .split('(')
                .next()
                .unwrap_or("")
                .to_string();
            let end = (i..lines.len())
                .find(|&j| lines[j] == "    }")
                .expect("hook end");
            hooks += 1;
            if end - i + 1 > MAX_HOOK_LINES {
                long.push(format!("{name}: {} lines", end - i + 1));
            }
            i = end;
        }
        if line == "}" {
            break;
        }
        i += 1;
    }
    assert!(hooks >= 12, "found {hooks} hooks");
    assert!(
        long.is_empty(),
        "hooks over {MAX_HOOK_LINES} lines: {long:?}"
    );
}
