#!/usr/bin/env python3
"""Static checks for Portico's Grafana dashboards. Standard library only.

Run from the repository root:  python3 dashboards/check.py
Prints a summary and exits non-zero on any failure.

Checks, per dashboard file:
  * parses as JSON; classic model (no `__inputs`, editable, uid, tags, refresh, time range);
    uids unique across files; panel ids unique;
  * Grafana 10.0 compatibility: schemaVersion <= 38 (MAX_SCHEMA_VERSION), panel types from
    PANEL_TYPES, and panel options / custom field options / transformation options only from
    the Grafana 10.0 allow-lists below (options added later, e.g. wideLayout, hideZeros,
    axisBorderShow, insertNulls, are refused);
  * a tag-based `dashboards` link (tag `portico`) to the other Portico dashboards;
  * `datasource` / `job` / `instance` template variables; query variables use ${datasource}
    and (except `job` itself) a job matcher; a `tracing` datasource variable (tempo or jaeger);
  * every latency panel (request/upstream duration histograms) and error panel (5xx, failed
    upstream attempts, upstream errors, gateway-made responses) has data links, each opening
    /explore?left=<percent-encoded JSON> on ${tracing} over ${__from}..${__to}; the JSON must
    decode, and ${__field.labels.X} / ${__data.fields.X} must name a label the panel's series
    (or table rows) carry;
  * every panel (rows included) has datasource {"type": "prometheus", "uid": "${datasource}"};
    every target has a unique refId, the same datasource, and an expr selecting
    job=~"$job" and instance=~"$instance"; Prometheus annotations likewise;
  * every range selector `[...]` (so every rate/increase/irate range, which must have one) is
    $__rate_interval, $__range or an explicit long window (>= 1h);
  * gridPos present, inside the 24-column grid, no overlaps;
  * every metric name (portico_* / process_*, stripped of _bucket/_sum/_count) is in CATALOG
    or PROCESS of src/telemetry/catalog.rs, suffixes only on histograms; `up` is allowed;
  * every label name in matchers, by/without/on/ignoring/group_* clauses and legendFormat
    templates belongs to a metric used by that query, or is job/instance (le on histograms);
  * running generate.py into a temporary directory reproduces the files byte for byte;
  * if `promtool` is on PATH, every expression (Grafana variables substituted) parses as PromQL
    (`promtool check rules` on a temporary recording-rule file); skipped with a note otherwise.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CATALOG_RS = os.path.join(ROOT, "src", "telemetry", "catalog.rs")
FILES = {
    "portico-overview.json": "portico-overview",
    "portico-upstreams.json": "portico-upstreams",
    "portico-ratelimit-deps.json": "portico-ratelimit-deps",
    "portico-business.json": "portico-business",
}
DS = {"type": "prometheus", "uid": "${datasource}"}

# Grafana 10.0 writes schemaVersion 38 (10.4 and 11.0: 39; 12: 41+). A newer number would make
# Grafana 10 skip migrations it does not know about; an older one is migrated forward by all.
MAX_SCHEMA_VERSION = 38
# Panel types built into Grafana 10.0 that these dashboards may use.
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "text", "row", "heatmap",
               "state-timeline"}
# Option keys that exist in Grafana 10.0 (panelcfg schemas of 10.0/10.1), per panel type.
LEGEND_KEYS = {"displayMode", "placement", "showLegend", "asTable", "isVisible", "calcs", "width",
               "sortBy", "sortDesc"}
TOOLTIP_KEYS = {"mode", "sort"}
OPTION_KEYS = {
    "timeseries": {"legend", "tooltip", "timezone"},
    "state-timeline": {"legend", "tooltip", "timezone", "showValue", "rowHeight", "mergeValues",
                       "alignValue"},
    "stat": {"reduceOptions", "orientation", "text", "graphMode", "colorMode", "justifyMode",
             "textMode"},
    "table": {"frameIndex", "showHeader", "showTypeIcons", "sortBy", "footer"},
}
CUSTOM_KEYS = {
    "timeseries": {"lineColor", "lineWidth", "lineInterpolation", "lineStyle", "spanNulls",
                   "fillColor", "fillOpacity", "fillBelowTo", "showPoints", "pointSize",
                   "pointColor", "pointSymbol", "axisPlacement", "axisColorMode", "axisLabel",
                   "axisWidth", "axisSoftMin", "axisSoftMax", "axisGridShow", "scaleDistribution",
                   "barAlignment", "barWidthFactor", "barMaxWidth", "stacking", "hideFrom",
                   "drawStyle", "gradientMode", "thresholdsStyle", "transform"},
    "state-timeline": {"lineWidth", "fillOpacity", "hideFrom"},
    "table": {"width", "minWidth", "align", "cellOptions", "hidden", "inspect", "filterable"},
    "stat": set(),
}
TRANSFORM_KEYS = {"organize": {"excludeByName", "indexByName", "renameByName"}}

# Panels that must link to traces: latency (request / upstream duration histograms) and errors
# (5xx answers, failed upstream attempts, upstream errors, gateway-made responses).
LATENCY_RE = re.compile(r"portico_http_request_duration_seconds_(?:bucket|sum)\b"
                        r"|portico_upstream_(?:response|connect)_duration_seconds_bucket\b")
ERROR_RE = re.compile(r'code=~"5\.\."|status_class=~"5xx\|error"'
                      r"|portico_upstream_errors_total|portico_http_gateway_responses_total")
LINK_PREFIX = "/explore?left="
LINK_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
JOB_M = 'job=~"$job"'
INST_M = 'instance=~"$instance"'
HIST_SUFFIXES = ("_bucket", "_sum", "_count")
EXTRA_METRICS = {"up": set()}
# Prometheus functions/keywords that look like identifiers followed by '(' or that may appear
# as bare words; they are not metric names (metric names are only portico_*/process_*/up here).
DURATION_RE = re.compile(r"^(?:(\d+)(ms|s|m|h|d|w|y))+$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

failures = []


def fail(where, msg):
    failures.append("%s: %s" % (where, msg))


def load_catalog():
    src = open(CATALOG_RS, encoding="utf-8").read()
    cat_block = src[src.index("pub const CATALOG"):src.index("pub const PROCESS")]
    proc_block = src[src.index("pub const PROCESS"):]
    proc_block = proc_block[:proc_block.index("];")]
    catalog = {}
    for name, kind, labels in re.findall(
            r'\(\s*"(\w+)",\s*(Counter|Gauge|Histogram),\s*&\[([^\]]*)\]', cat_block):
        catalog[name] = (kind, set(re.findall(r'"(\w+)"', labels)))
    for name in re.findall(r'"(\w+)"', proc_block):
        catalog[name] = ("Process", set())
    if len(catalog) < 40:
        fail(CATALOG_RS, "parsed only %d families; parser out of date?" % len(catalog))
    return catalog


def duration_seconds(text):
    if not DURATION_RE.match(text):
        return None
    return sum(int(n) * UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def strip_strings(expr):
    """Replace the contents of double-quoted strings so label values cannot look like names."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_ranges(where, expr):
    bare = strip_strings(expr)
    for m in re.finditer(r"\b(rate|increase|irate)\s*\(", bare):
        depth, i = 1, m.end()
        while i < len(bare) and depth:
            depth += {"(": 1, ")": -1}.get(bare[i], 0)
            i += 1
        if "[" not in bare[m.end():i]:
            fail(where, "%s() without a range selector: %s" % (m.group(1), expr))
    for rng in re.findall(r"\[([^\]]*)\]", bare):
        rng = rng.strip()
        if rng in ("$__rate_interval", "$__range"):
            continue
        secs = duration_seconds(rng)
        if secs is None or secs < 3600:
            fail(where, "range [%s] is not $__rate_interval, $__range or a long window: %s" % (rng, expr))


def metrics_in(where, expr, catalog):
    """Return {name: labels} of metrics referenced by expr, failing on unknown names."""
    used = {}
    bare = strip_strings(expr)
    for tok in re.findall(r"\b((?:portico|process)_\w+)", bare):
        base, suffix = tok, ""
        if tok not in catalog:
            for s in HIST_SUFFIXES:
                if tok.endswith(s):
                    base, suffix = tok[: -len(s)], s
                    break
        if base not in catalog:
            fail(where, "unknown metric %s" % tok)
            continue
        kind, labels = catalog[base]
        if suffix and kind != "Histogram":
            fail(where, "%s: suffix %s on a %s" % (tok, suffix, kind))
        labels = set(labels)
        if suffix == "_bucket":
            labels.add("le")
        used[tok] = labels
    if re.search(r"\bup\s*\{", bare):
        used["up"] = set()
    return used


def label_names(expr, legend):
    bare = strip_strings(expr)
    names = set()
    for block in re.findall(r"\{([^{}]*)\}", bare):
        names.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", block))
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", bare):
        names.update(n.strip() for n in clause.split(",") if n.strip())
    names.update(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""))
    return names


ALL_EXPRS = []


def check_expr(where, expr, legend, catalog, need_instance=True):
    ALL_EXPRS.append((where, expr))
    if JOB_M not in expr:
        fail(where, "missing %s: %s" % (JOB_M, expr))
    if need_instance and INST_M not in expr:
        fail(where, "missing %s: %s" % (INST_M, expr))
    check_ranges(where, expr)
    used = metrics_in(where, expr, catalog)
    if not used:
        fail(where, "no known metric referenced: %s" % expr)
    allowed = {"job", "instance"}
    for labels in used.values():
        allowed |= labels
    for name in sorted(label_names(expr, legend) - allowed):
        fail(where, "label %r not exported by %s" % (name, ", ".join(sorted(used)) or "-"))
    return used


def boxes_overlap(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels") or [])


def check_grafana10(where, p):
    """Panel type and option keys Grafana 10.0 knows."""
    kind = p.get("type")
    if kind not in PANEL_TYPES:
        fail(where, "panel type %r is not in the Grafana 10.0 allow-list" % kind)
        return
    options = p.get("options") or {}
    allowed = OPTION_KEYS.get(kind)
    if allowed is None:
        fail(where, "no option allow-list for panel type %r; add one to check.py" % kind)
        return
    for key in sorted(set(options) - allowed):
        fail(where, "option %r does not exist in Grafana 10.0 %s panels" % (key, kind))
    for key in sorted(set(options.get("legend") or {}) - LEGEND_KEYS):
        fail(where, "legend option %r does not exist in Grafana 10.0" % key)
    for key in sorted(set(options.get("tooltip") or {}) - TOOLTIP_KEYS):
        fail(where, "tooltip option %r does not exist in Grafana 10.0" % key)
    custom = (p.get("fieldConfig") or {}).get("defaults", {}).get("custom") or {}
    for key in sorted(set(custom) - CUSTOM_KEYS.get(kind, set())):
        fail(where, "custom field option %r does not exist in Grafana 10.0 %s panels" % (key, kind))
    for t in p.get("transformations") or []:
        keys = TRANSFORM_KEYS.get(t.get("id"))
        if keys is None:
            fail(where, "transformation %r not in the allow-list" % t.get("id"))
            continue
        for key in sorted(set(t.get("options") or {}) - keys):
            fail(where, "%s option %r does not exist in Grafana 10.0" % (t.get("id"), key))


def series_labels(p):
    """Labels the panel's series (or table rows) carry: by(...) clauses and legend templates."""
    names = set()
    for t in p.get("targets") or []:
        bare = strip_strings(t.get("expr", ""))
        for clause in re.findall(r"\b(?:by)\s*\(([^)]*)\)", bare):
            names.update(n.strip() for n in clause.split(",") if n.strip())
        names.update(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat") or ""))
    return names - {"le"}


def check_trace_links(where, p):
    """Latency and error panels must link to traces; every link must be well formed.
    Returns True when the panel has trace links."""
    exprs = " ".join(t.get("expr", "") for t in p.get("targets") or [])
    needs = bool(LATENCY_RE.search(exprs) or ERROR_RE.search(exprs))
    links = (p.get("fieldConfig") or {}).get("defaults", {}).get("links") or []
    if needs and not links:
        fail(where, "latency/error panel without a trace link (fieldConfig.defaults.links)")
    labels = series_labels(p)
    for link in links:
        lw = "%s link %r" % (where, link.get("title"))
        url = link.get("url") or ""
        if not link.get("title"):
            fail(lw, "no title")
        if not url.startswith(LINK_PREFIX):
            fail(lw, "url does not start with %s" % LINK_PREFIX)
            continue
        rest = LINK_PLACEHOLDER.sub("", url[len(LINK_PREFIX):])
        bad = sorted(set(re.sub(r"%[0-9A-Fa-f]{2}", "", rest)) - set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"))
        if bad:
            fail(lw, "unencoded characters %r in the URL (only ${...} placeholders may be raw)" % "".join(bad))
        for ph in LINK_PLACEHOLDER.findall(url):
            m = re.match(r"^__(field\.labels|data\.fields)\.(\w+)$", ph)
            if ph in ("tracing", "__from", "__to"):
                continue
            if not m:
                fail(lw, "unexpected placeholder ${%s}" % ph)
            elif (m.group(1) == "data.fields") != (p.get("type") == "table"):
                fail(lw, "${%s}: tables use ${__data.fields.X}, other panels ${__field.labels.X}" % ph)
            elif m.group(2) not in labels:
                fail(lw, "${%s}: the panel's series have no label %r (have %s)"
                     % (ph, m.group(2), ", ".join(sorted(labels)) or "none"))
        try:
            left = json.loads(urllib.parse.unquote(url[len(LINK_PREFIX):]))
        except ValueError as e:
            fail(lw, "left= is not JSON after decoding: %s" % e)
            continue
        if left.get("datasource") != "${tracing}":
            fail(lw, "Explore data source is %r, want ${tracing}" % left.get("datasource"))
        if left.get("range") != {"from": "${__from}", "to": "${__to}"}:
            fail(lw, "range is %r, want the panel's ${__from}..${__to}" % left.get("range"))
        queries = left.get("queries") or []
        if not queries:
            fail(lw, "no query")
        for q in queries:
            ds = q.get("datasource") or {}
            if ds.get("uid") != "${tracing}" or ds.get("type") not in ("tempo", "jaeger"):
                fail(lw, "query data source %r" % ds)
            if ds.get("type") == "tempo":
                tql = q.get("query", "")
                if q.get("queryType") != "traceql" or not (tql.startswith("{") and tql.endswith("}")):
                    fail(lw, "not a TraceQL query: %r" % tql)
                if tql.count('"') % 2 or tql.count("(") != tql.count(")"):
                    fail(lw, "unbalanced quotes or parentheses in %r" % tql)
            elif ds.get("type") == "jaeger" and (q.get("queryType") != "search" or not q.get("service")):
                fail(lw, "Jaeger link is not a service search: %r" % q)
    return bool(links)


def check_dashboard(fname, expected_uid, catalog, stats):
    path = os.path.join(HERE, fname)
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        board = json.loads(raw)
    except (OSError, ValueError) as e:
        fail(fname, "cannot load: %s" % e)
        return None
    if not raw.endswith("\n"):
        fail(fname, "no trailing newline")
    if "__inputs" in board or "__inputs" in raw:
        fail(fname, "__inputs present")
    sv = board.get("schemaVersion")
    if not isinstance(sv, int) or sv > MAX_SCHEMA_VERSION:
        fail(fname, "schemaVersion %r: must be an integer <= %d (Grafana 10.0)" % (sv, MAX_SCHEMA_VERSION))
    for key, want in (("uid", expected_uid), ("editable", True),
                      ("refresh", "30s"), ("tags", ["portico"]),
                      ("time", {"from": "now-6h", "to": "now"})):
        if board.get(key) != want:
            fail(fname, "%s is %r, want %r" % (key, board.get(key), want))

    # Links to the other Portico dashboards (by tag; every dashboard carries the tag).
    if not any(link.get("type") == "dashboards" and "portico" in (link.get("tags") or [])
               for link in board.get("links", [])):
        fail(fname, "no tag-based `dashboards` link with tag portico")

    # Every panel says what it shows.
    for panel in board.get("panels", []):
        if panel.get("type") != "row" and not panel.get("description"):
            fail(fname, "panel %r has no description" % panel.get("title"))

    # Variables.
    variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
    dsv = variables.get("datasource", {})
    if dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
        fail(fname, "datasource variable missing or wrong")
    tv = variables.get("tracing", {})
    if tv.get("type") != "datasource" or tv.get("query") not in ("tempo", "jaeger"):
        fail(fname, "tracing variable missing, or not a tempo/jaeger datasource variable")
    for name in ("job", "instance"):
        v = variables.get(name)
        if not v or v.get("type") != "query" or not v.get("includeAll") or not v.get("multi"):
            fail(fname, "variable %s missing, or not multi/includeAll" % name)
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        if v.get("datasource") != DS:
            fail(fname, "variable %s datasource is %r" % (name, v.get("datasource")))
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("definition") != q:
            fail(fname, "variable %s: definition differs from query" % name)
        m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q or "")
        if not m:
            fail(fname, "variable %s: not a label_values() query: %r" % (name, q))
            continue
        ALL_EXPRS.append(("%s var %s" % (fname, name), m.group(1)))
        used = metrics_in("%s var %s" % (fname, name), m.group(1), catalog)
        allowed = {"job", "instance"}.union(*used.values()) if used else set()
        if m.group(2) not in allowed:
            fail(fname, "variable %s: label %s not on %s" % (name, m.group(2), m.group(1)))
        if name != "job" and JOB_M not in q:
            fail(fname, "variable %s query lacks %s" % (name, JOB_M))
    referenced_vars = set(re.findall(r"\$\{?(\w+)", raw)) - {
        "__rate_interval", "__range", "__all", "__from", "__to", "__field", "__data"}
    for name in sorted(referenced_vars - set(variables)):
        fail(fname, "references undefined variable $%s" % name)

    # Annotations.
    for a in board.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        where = "%s annotation %r" % (fname, a.get("name"))
        if a.get("datasource") != DS:
            fail(where, "datasource is %r" % a.get("datasource"))
        check_expr(where, a.get("expr", ""), a.get("textFormat", ""), catalog)
        stats["queries"] += 1

    # Panels.
    ids, boxes, n_panels = set(), [], 0
    metrics_used = set()
    for p in all_panels(board.get("panels", [])):
        title = p.get("title", "?")
        where = "%s panel %r" % (fname, title)
        if p.get("id") in ids:
            fail(where, "duplicate panel id %r" % p.get("id"))
        ids.add(p.get("id"))
        if p.get("datasource") != DS:
            fail(where, "datasource is %r" % p.get("datasource"))
        g = p.get("gridPos")
        if not g or any(not isinstance(g.get(k), int) for k in "hwxy"):
            fail(where, "bad gridPos %r" % g)
        else:
            if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24 or g["h"] < 1 or g["y"] < 0:
                fail(where, "gridPos outside the grid: %r" % g)
            for other_title, other in boxes:
                if boxes_overlap(g, other):
                    fail(where, "gridPos overlaps panel %r" % other_title)
            boxes.append((title, g))
        if p.get("type") == "row":
            continue
        n_panels += 1
        check_grafana10(where, p)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if p.get("type") != "state-timeline" and not unit:
            fail(where, "no unit")
        tgts = p.get("targets") or []
        if not tgts:
            fail(where, "no targets")
        refids = [t.get("refId") for t in tgts]
        if not all(refids) or len(set(refids)) != len(refids):
            fail(where, "missing or duplicate refId: %r" % refids)
        for t in tgts:
            tw = "%s target %s" % (where, t.get("refId"))
            if t.get("datasource") != DS:
                fail(tw, "datasource is %r" % t.get("datasource"))
            metrics_used |= set(check_expr(tw, t.get("expr", ""), t.get("legendFormat", ""), catalog))
            stats["queries"] += 1
        if check_trace_links(where, p):
            stats["linked"] += 1
    stats["panels"][fname] = n_panels
    stats["metrics"] |= metrics_used
    return board


def check_regeneration():
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, os.path.join(HERE, "generate.py"), "--out", tmp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("generate.py", "exit %d: %s" % (r.returncode, r.stderr.strip()))
            return
        for fname in FILES:
            fresh = open(os.path.join(tmp, fname), "rb").read()
            try:
                current = open(os.path.join(HERE, fname), "rb").read()
            except OSError:
                current = b""
            if fresh != current:
                fail(fname, "differs from `python3 dashboards/generate.py` output; regenerate")


def check_promql_syntax():
    promtool = shutil.which("promtool")
    if not promtool:
        return "skipped (promtool not on PATH)"
    lines = ["groups:", "  - name: dashboards", "    rules:"]
    for i, (_, expr) in enumerate(ALL_EXPRS):
        e = expr.replace("$__rate_interval", "1m").replace("$__range", "6h")
        e = re.sub(r"\$\{?\w+\}?", ".*", e)  # other variables only occur inside matcher strings
        lines.append("      - record: dashboard:expr%d" % i)
        lines.append("        expr: %s" % json.dumps(e))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dashboard-exprs.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail("promtool", (r.stdout + r.stderr).strip())
        return "FAILED"
    return "%d expressions parse" % len(ALL_EXPRS)


def main():
    catalog = load_catalog()
    stats = {"panels": {}, "queries": 0, "metrics": set(), "linked": 0}
    uids = {}
    for fname, uid in FILES.items():
        board = check_dashboard(fname, uid, catalog, stats)
        if board is not None:
            u = board.get("uid")
            if u in uids:
                fail(fname, "uid %r also used by %s" % (u, uids[u]))
            uids[u] = fname
    check_regeneration()
    syntax = check_promql_syntax()

    families = {re.sub(r"_(bucket|sum|count)$", "", m) if m not in catalog else m
                for m in stats["metrics"]} - {"up"}
    print("catalog: %d families parsed from %s" % (len(catalog), os.path.relpath(CATALOG_RS, ROOT)))
    for fname, n in stats["panels"].items():
        print("  %-28s %2d panels (uid %s)" % (fname, n, FILES[fname]))
    print("queries checked: %d; metric families referenced: %d of %d"
          % (stats["queries"], len(families), len(catalog)))
    print("panels with trace links: %d" % stats["linked"])
    print("promtool syntax check: %s" % syntax)
    unused = sorted(set(catalog) - families)
    print("catalog families not on any dashboard: %s" % (", ".join(unused) or "none"))
    if failures:
        print("FAILED: %d problem(s)" % len(failures))
        for f in failures:
            print("  - " + f)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
