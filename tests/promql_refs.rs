//! Every PromQL expression in `dashboards/*.json` and `alerts/*.yml` must parse and may only
//! name metrics and labels Portico exports (`src/telemetry/catalog.rs`), metrics the recording
//! rules define, or Prometheus' own (`up`, `ALERTS`, `scrape_*`). A misspelt name fails here,
//! not in front of an on-call engineer.

use portico::telemetry::catalog::{self, Kind};
use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What may be referenced: metric name -> its label names (None = any, for recorded series).
struct Known {
    metrics: BTreeMap<String, Option<BTreeSet<String>>>,
}

impl Known {
    fn load(root: &Path) -> Self {
        let mut metrics = BTreeMap::new();
        let common = ["job", "instance"];
        for (name, kind, labels) in catalog::CATALOG {
            let mut set: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
            set.extend(common.iter().map(|l| l.to_string()));
            if *kind == Kind::Histogram {
                let mut bucket = set.clone();
                bucket.insert("le".into());
                metrics.insert(format!("{name}_bucket"), Some(bucket));
                metrics.insert(format!("{name}_sum"), Some(set.clone()));
                metrics.insert(format!("{name}_count"), Some(set));
            } else {
                metrics.insert(name.to_string(), Some(set));
            }
        }
        let plain: BTreeSet<String> = common.iter().map(|l| l.to_string()).collect();
        for name in catalog::PROCESS.iter().chain(&[
            "up",
            "scrape_samples_scraped",
            "scrape_duration_seconds",
        ]) {
            metrics.insert(name.to_string(), Some(plain.clone()));
        }
        for name in ["ALERTS", "ALERTS_FOR_STATE"] {
            metrics.insert(name.to_string(), None);
        }
        for (_, doc) in rule_files(root) {
            for group in doc["groups"].as_sequence().into_iter().flatten() {
                for rule in group["rules"].as_sequence().into_iter().flatten() {
                    if let Some(record) = rule["record"].as_str() {
                        metrics.insert(record.to_string(), None);
                    }
                }
            }
        }
        Self { metrics }
    }

    /// Problems in one expression: parse errors, unknown metrics, unknown labels.
    fn check(&self, expr: &str) -> Vec<String> {
        let ast = match parser::parse(&grafana_to_promql(expr)) {
            Ok(ast) => ast,
            Err(e) => return vec![format!("does not parse ({e})")],
        };
        let mut selectors = Vec::new();
        let mut grouping = BTreeSet::new();
        walk(&ast, &mut selectors, &mut grouping);
        let mut problems = Vec::new();
        let mut open_labels = false;
        let mut used_labels =
            BTreeSet::from(["job".to_string(), "instance".to_string(), "le".to_string()]);
        for vs in &selectors {
            let Some(name) = selector_name(vs) else {
                problems.push("a selector without a metric name".into());
                continue;
            };
            match self.metrics.get(&name) {
                None => problems.push(format!("unknown metric {name}")),
                Some(None) => {}
                Some(Some(labels)) => {
                    used_labels.extend(labels.iter().cloned());
                    for m in all_matchers(&vs.matchers) {
                        if m != "__name__" && !labels.contains(&m) {
                            problems.push(format!("{name} has no label {m}"));
                        }
                    }
                }
            }
            if matches!(self.metrics.get(&name), Some(None)) {
                // Recorded series carry whatever labels their rule keeps.
                open_labels = true;
            }
        }
        if open_labels {
            return problems;
        }
        for label in grouping {
            if !used_labels.contains(&label) {
                problems.push(format!(
                    "grouping label {label} is on no metric of the expression"
                ));
            }
        }
        problems
    }
}

fn selector_name(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        all_matchers_full(&vs.matchers)
            .into_iter()
            .find(|(n, _)| n == "__name__")
            .map(|(_, v)| v)
    })
}

fn all_matchers(m: &Matchers) -> Vec<String> {
    all_matchers_full(m).into_iter().map(|(n, _)| n).collect()
}

fn all_matchers_full(m: &Matchers) -> Vec<(String, String)> {
    m.matchers
        .iter()
        .chain(m.or_matchers.iter().flatten())
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect()
}

fn modifier_labels(m: &Option<LabelModifier>, out: &mut BTreeSet<String>) {
    if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = m {
        out.extend(l.labels.iter().cloned());
    }
}

/// Collects every vector selector (matrix selectors' included) and every grouping label.
fn walk<'a>(e: &'a Expr, sel: &mut Vec<&'a VectorSelector>, grouping: &mut BTreeSet<String>) {
    match e {
        Expr::VectorSelector(vs) => sel.push(vs),
        Expr::MatrixSelector(ms) => sel.push(&ms.vs),
        Expr::Aggregate(a) => {
            modifier_labels(&a.modifier, grouping);
            walk(&a.expr, sel, grouping);
            if let Some(p) = &a.param {
                walk(p, sel, grouping);
            }
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                modifier_labels(&m.matching, grouping);
                if let Some(l) = m.card.labels() {
                    grouping.extend(l.labels.iter().cloned());
                }
            }
            walk(&b.lhs, sel, grouping);
            walk(&b.rhs, sel, grouping);
        }
        Expr::Unary(u) => walk(&u.expr, sel, grouping),
        Expr::Paren(p) => walk(&p.expr, sel, grouping),
        Expr::Subquery(s) => walk(&s.expr, sel, grouping),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, sel, grouping)),
        _ => {}
    }
}

/// Grafana's variables and `label_values()` queries, turned into plain PromQL.
fn grafana_to_promql(expr: &str) -> String {
    let mut s = expr.trim().to_string();
    if let Some(inner) = s
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        s = match inner.rsplit_once(',') {
            Some((selector, _label)) => selector.trim().to_string(),
            None => "up".to_string(),
        };
    }
    for (var, value) in [
        ("${__rate_interval}", "5m"),
        ("$__rate_interval", "5m"),
        ("${__interval}", "1m"),
        ("$__interval", "1m"),
        ("${__range}", "6h"),
        ("$__range_s", "21600"),
        ("$__range", "6h"),
    ] {
        s = s.replace(var, value);
    }
    let re =
        regex::Regex::new(r"\$\{[A-Za-z0-9_:]+\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]")
            .unwrap();
    re.replace_all(&s, "x").into_owned()
}

fn rule_files(root: &Path) -> Vec<(String, serde_yaml::Value)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.join("alerts")) else {
        return out;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((
                path.display().to_string(),
                serde_yaml::from_str(&text).unwrap(),
            ));
        }
    }
    out
}

/// Every PromQL expression, with where it came from.
fn expressions(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, doc) in rule_files(root) {
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let name = rule["alert"]
                    .as_str()
                    .or(rule["record"].as_str())
                    .unwrap_or("?");
                if let Some(expr) = rule["expr"].as_str() {
                    out.push((format!("{file}: {name}"), expr.to_string()));
                }
            }
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(root.join("dashboards"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.display().to_string();
        collect_panels(&doc["panels"], &file, &mut out);
        for var in doc["templating"]["list"].as_array().into_iter().flatten() {
            if var["type"] != "query" {
                continue;
            }
            let q = var["query"]["query"].as_str().or(var["query"].as_str());
            if let Some(q) = q {
                out.push((format!("{file}: variable {}", var["name"]), q.to_string()));
            }
        }
    }
    out
}

fn collect_panels(panels: &serde_json::Value, file: &str, out: &mut Vec<(String, String)>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((format!("{file}: panel {}", p["title"]), expr.to_string()));
            }
        }
        collect_panels(&p["panels"], file, out);
    }
}

#[test]
fn every_dashboard_and_rule_expression_names_what_portico_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known = Known::load(root);
    let exprs = expressions(root);
    let alerts = exprs.iter().filter(|(w, _)| w.contains("alerts")).count();
    let panels = exprs
        .iter()
        .filter(|(w, _)| w.contains("dashboards"))
        .count();
    assert!(
        alerts >= 25,
        "expected the alert and recording rules, found {alerts} expressions"
    );
    assert!(
        panels >= 40,
        "expected the four dashboards, found {panels} expressions"
    );
    let problems: Vec<String> = exprs
        .iter()
        .flat_map(|(where_, expr)| {
            known
                .check(expr)
                .into_iter()
                .map(move |p| format!("{where_}: {p}\n    {expr}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn a_misspelt_metric_or_label_is_caught() {
    let known = Known::load(Path::new(env!("CARGO_MANIFEST_DIR")));
    let good = r#"sum by (route) (rate(portico_http_requests_total{job=~"$job", code=~"5.."}[$__rate_interval]))"#;
    assert_eq!(known.check(good), Vec::<String>::new());
    for typo in [
        r#"sum(rate(portico_http_request_total[5m]))"#,
        r#"sum(rate(portico_http_requests_total{status="500"}[5m]))"#,
        r#"histogram_quantile(0.99, sum by (le) (rate(portico_http_request_duration_second_bucket[5m])))"#,
        r#"sum by (servce) (portico_upstream_instances)"#,
        r#"sum(rate(portico_http_requests_total[5m]"#,
    ] {
        assert!(!known.check(typo).is_empty(), "not caught: {typo}");
    }
}
