//! Helpers for the deployment-file tests: repository paths and a few typed lookups into
//! `serde_yaml` values. Static checks only: nothing here needs Docker or a cluster.
#![allow(dead_code)]

use serde_yaml::Value;
use std::path::{Path, PathBuf};

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of `text`, split on lines that are exactly `---`. Documents holding only
/// comments or whitespace are skipped.
pub fn yaml_documents(name: &str, text: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut flush = |current: &mut String| {
        let doc: Value = serde_yaml::from_str(current)
            .unwrap_or_else(|e| panic!("{name}: invalid YAML document: {e}"));
        if !doc.is_null() {
            documents.push(doc);
        }
        current.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    flush(&mut current);
    documents
}

/// The value at a dotted `path` ("spec.template.spec"), or `Value::Null` when any step is missing.
pub fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&NULL))
}

pub fn as_str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value:?}"))
}

pub fn as_u64(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: expected an unsigned integer, got {value:?}"))
}

pub fn as_seq<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .map(|s| s.as_slice())
        .unwrap_or_else(|| panic!("{what}: expected a list, got {value:?}"))
}

/// A string or a list of strings (compose `command`/`entrypoint`, a container `command`) as one
/// space-separated string.
pub fn words(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}
