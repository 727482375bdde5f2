//! Every PromQL expression in `dashboards/*.json` and `alerts/*.yml` must parse and may only
//! name metrics and labels Portico exports (`src/telemetry/catalog.rs`), metrics the recording
//! rules define (with the labels their expressions keep, worked out from the rule), or
//! Prometheus' own (`up`, `ALERTS`, `scrape_*`); a matcher on a label with a closed set of
//! values (`state`, `decision`, `reason`...) may only name one of them. A misspelt name or
//! value fails here, not in front of an on-call engineer.

use portico::telemetry::catalog::{self, Kind};
use promql_parser::label::MatchOp;
use promql_parser::label::Matchers;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
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
        // Recorded series carry the labels their rule's expression keeps; rules may build on
        // each other, so work them out until nothing changes.
        let mut pending: Vec<(String, Expr)> = Vec::new();
        for (_, doc) in rule_files(root) {
            for group in doc["groups"].as_sequence().into_iter().flatten() {
                for rule in group["rules"].as_sequence().into_iter().flatten() {
                    if let (Some(record), Some(expr)) =
                        (rule["record"].as_str(), rule["expr"].as_str())
                    {
                        let ast = parser::parse(expr).unwrap_or_else(|e| panic!("{record}: {e}"));
                        pending.push((record.to_string(), ast));
                    }
                }
            }
        }
        let mut known = Self { metrics };
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|(record, ast)| match known.output_labels(ast) {
                Some(labels) => {
                    known.metrics.insert(record.clone(), Some(labels));
                    false
                }
                None => true,
            });
            assert!(
                pending.len() < before,
                "cannot work out the labels of recorded series {:?}",
                pending.iter().map(|(r, _)| r).collect::<Vec<_>>()
            );
        }
        known
    }

    /// The labels of the series `e` evaluates to; `None` while it names a series not known yet.
    fn output_labels(&self, e: &Expr) -> Option<BTreeSet<String>> {
        match e {
            Expr::VectorSelector(vs) => self.metrics.get(&selector_name(vs)?)?.clone(),
            Expr::MatrixSelector(ms) => self.metrics.get(&selector_name(&ms.vs)?)?.clone(),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Some(BTreeSet::new()),
            Expr::Paren(p) => self.output_labels(&p.expr),
            Expr::Unary(u) => self.output_labels(&u.expr),
            Expr::Subquery(sq) => self.output_labels(&sq.expr),
            Expr::Aggregate(a) => {
                let inner = self.output_labels(&a.expr)?;
                let op = a.op.to_string();
                if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                    return Some(inner);
                }
                let mut out = match &a.modifier {
                    Some(LabelModifier::Include(l)) => l.labels.iter().cloned().collect(),
                    Some(LabelModifier::Exclude(l)) => inner
                        .into_iter()
                        .filter(|x| !l.labels.contains(x))
                        .collect(),
                    None => BTreeSet::new(),
                };
                if op == "count_values" {
                    if let Some(Expr::StringLiteral(s)) = a.param.as_deref() {
                        out.insert(s.val.clone());
                    }
                }
                Some(out)
            }
            Expr::Call(c) => {
                let vector = c
                    .args
                    .args
                    .iter()
                    .find(|a| matches!(a.value_type(), ValueType::Vector | ValueType::Matrix));
                let Some(vector) = vector else {
                    return Some(BTreeSet::new());
                };
                let mut out = self.output_labels(vector)?;
                match c.func.name {
                    "histogram_quantile" => {
                        out.remove("le");
                    }
                    "label_replace" | "label_join" => {
                        if let Some(Expr::StringLiteral(dst)) = c.args.args.get(1).map(|a| &**a) {
                            out.insert(dst.val.clone());
                        }
                    }
                    _ => {}
                }
                Some(out)
            }
            Expr::Binary(b) => {
                let scalar = |x: &Expr| matches!(x.value_type(), ValueType::Scalar);
                if scalar(&b.lhs) {
                    return self.output_labels(&b.rhs);
                }
                let lhs = self.output_labels(&b.lhs)?;
                if scalar(&b.rhs) {
                    return Some(lhs);
                }
                let rhs = self.output_labels(&b.rhs)?;
                let Some(m) = &b.modifier else {
                    return Some(lhs);
                };
                Some(match (&m.card, &m.matching) {
                    (VectorMatchCardinality::ManyToMany, _) if b.op.to_string() == "or" => {
                        lhs.union(&rhs).cloned().collect()
                    }
                    (VectorMatchCardinality::ManyToMany, _) => lhs,
                    (VectorMatchCardinality::ManyToOne(extra), _) => lhs
                        .into_iter()
                        .chain(extra.labels.iter().cloned())
                        .collect(),
                    (VectorMatchCardinality::OneToMany(extra), _) => rhs
                        .into_iter()
                        .chain(extra.labels.iter().cloned())
                        .collect(),
                    (_, Some(LabelModifier::Include(on))) => on.labels.iter().cloned().collect(),
                    (_, Some(LabelModifier::Exclude(ign))) => lhs
                        .into_iter()
                        .filter(|x| !ign.labels.contains(x))
                        .collect(),
                    (_, None) => lhs,
                })
            }
            _ => Some(BTreeSet::new()),
        }
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
            problems.extend(value_problems(&name, &vs.matchers));
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

/// Matchers naming a value outside a closed label set (literal values only; Grafana variables
/// and regular expressions with metacharacters are not checked).
fn value_problems(name: &str, m: &Matchers) -> Vec<String> {
    let family = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .filter(|f| catalog::find(f).is_some())
        .unwrap_or(name);
    let mut problems = Vec::new();
    for matcher in m.matchers.iter().chain(m.or_matchers.iter().flatten()) {
        let Some(allowed) = catalog::values(family, &matcher.name) else {
            continue;
        };
        if matcher.value.contains(GRAFANA_VAR) || matcher.value.is_empty() {
            continue;
        }
        let literals: Vec<&str> = match &matcher.op {
            MatchOp::Equal | MatchOp::NotEqual => vec![matcher.value.as_str()],
            MatchOp::Re(_) | MatchOp::NotRe(_)
                if matcher
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'|') =>
            {
                matcher.value.split('|').collect()
            }
            _ => continue,
        };
        for v in literals {
            if !allowed.contains(&v) {
                problems.push(format!("{name}: {} has no value {v:?}", matcher.name));
            }
        }
    }
    problems
}

/// What Grafana variables become, so their matchers are recognised and not checked.
const GRAFANA_VAR: &str = "GRAFANAVAR";

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
    re.replace_all(&s, GRAFANA_VAR).into_owned()
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
        r#"sum(portico_circuit_breaker_state{state="halfopen"})"#,
        r#"sum(rate(portico_ratelimit_decisions_total{decision=~"limited|shadow"}[5m]))"#,
        r#"sum by (rule) (job_route:portico_http_requests:rate5m)"#,
    ] {
        assert!(!known.check(typo).is_empty(), "not caught: {typo}");
    }
}
