#!/usr/bin/env python3
"""Generate Portico's Grafana dashboards (classic JSON model, schemaVersion 38).

Standard library only. Run from the repository root:

    python3 dashboards/generate.py            # writes dashboards/*.json
    python3 dashboards/generate.py --out DIR  # writes into DIR (used by check.py)

Output is deterministic: sorted keys, 2-space indent, trailing newline, panel ids and
gridPos assigned in order, so a rerun is byte-identical and diffs stay reviewable.

Metric and label names come from src/telemetry/catalog.rs; check.py verifies every name.
Upstream instances are labelled `address` (Portico never exports a label called `instance`:
that one is Prometheus' scraped gateway, which the `$instance` variable selects).

Grafana 10.0 to 12: schemaVersion 38 (what Grafana 10.0 writes; newer versions migrate it
forward on load) and only panel types and options Grafana 10.0 knows. Options added later
(axisBorderShow, insertNulls, tooltip hideZeros, stat wideLayout/showPercentChange/...,
table cellHeight, organize includeByName) are left out: their defaults are what we want, so
newer Grafana renders the same. check.py enforces both.
"""

import argparse
import json
import zlib
import os
import re
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

DS = {"type": "prometheus", "uid": "${datasource}"}
# Every query selects the scraped gateway(s) with these two matchers.
JI = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"

# The JSON model version Grafana 10.0 writes. check.py refuses anything newer.
SCHEMA_VERSION = 38

# Trace links (fieldConfig.defaults.links) open Explore on the `tracing` data source variable.
# TRACE_SERVICE is the resource attribute service.name (tracing.service_name, default "portico").
TRACE_SERVICE = "portico"
SLOW_TRACE = "500ms"  # the latency SLO threshold: "slow" for the trace links

SLO_AVAILABILITY = 0.999  # 99.9 % of requests answer without a 5xx
LATENCY_THRESHOLD = "0.5"  # seconds; a bucket boundary of portico_http_request_duration_seconds
LATENCY_BUDGET = 0.01  # 99 % of non-5xx requests faster than 0.5 s

SEED_KPIS = [
    ("orders_placed", "Orders placed"),
    ("trade_volume_requests", "Trade volume requests"),
    ("active_users", "Active-user requests"),
    ("social_posts", "Social posts"),
    ("payments_succeeded", "Payments succeeded"),
    ("payments_failed", "Payments failed"),
    ("nft_mints", "NFT mints"),
    ("achievements_unlocked", "Achievements unlocked"),
]


def sel(*extra):
    """Label matchers: job, instance, then any extra matchers."""
    return "{" + ", ".join((JI,) + extra) + "}"


# --------------------------------------------------------------------------------------------
# Panel builders
# --------------------------------------------------------------------------------------------


def target(expr, legend="", ref="A", instant=False, fmt="time_series"):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if fmt != "time_series":
        t["format"] = fmt
    return t


def targets(*specs, instant=False, fmt="time_series"):
    """specs: (expr, legend) tuples; refIds A, B, C ... in order."""
    return [
        target(expr, legend, chr(ord("A") + i), instant=instant, fmt=fmt)
        for i, (expr, legend) in enumerate(specs)
    ]


def steps(*pairs, base="green"):
    """Threshold steps: base colour, then (value, colour) pairs."""
    out = [{"color": base, "value": None}]
    out += [{"color": c, "value": v} for v, c in pairs]
    return {"mode": "absolute", "steps": out}


def value_map(mapping):
    """mapping: {value: (text, colour)} -> a Grafana value mapping list."""
    opts = {}
    for i, (val, (text, color)) in enumerate(sorted(mapping.items())):
        opts[str(val)] = {"color": color, "index": i, "text": text}
    return [{"options": opts, "type": "value"}]


def panel(kind, title, desc, tgts, defaults, options, overrides=None, **extra):
    """The fields every panel has, in Grafana's order; `extra` (e.g. transformations) follows."""
    return {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
        **extra,
    }


def timeseries(title, tgts, unit, desc="", stack=False, bars=False, legend_table=False,
               thresholds=None, threshold_lines=False, minimum=0, maximum=None, axis_label="",
               overrides=None):
    custom = {
        "axisColorMode": "text",
        "axisLabel": axis_label,
        "axisPlacement": "auto",
        "barAlignment": 0,
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else (25 if stack else 10),
        "gradientMode": "none",
        "hideFrom": {"legend": False, "tooltip": False, "viz": False},
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "pointSize": 4,
        "scaleDistribution": {"type": "linear"},
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "line" if threshold_lines else "off"},
    }
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "mappings": [],
        "thresholds": thresholds or steps((80, "red")),
        "unit": unit,
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    options = {
        "legend": {
            "calcs": ["mean", "max", "lastNotNull"] if legend_table else [],
            "displayMode": "table" if legend_table else "list",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, desc, tgts, defaults, options, overrides)


def stat(title, tgts, unit, desc="", thresholds=None, mappings=None, decimals=None,
         graph=False, calc="lastNotNull", color_mode="value", no_value=None):
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": thresholds or steps(),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if no_value is not None:
        defaults["noValue"] = no_value
    options = {
        "colorMode": color_mode,
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "textMode": "auto",
    }
    return panel("stat", title, desc, tgts, defaults, options)


def table(title, tgts, desc="", exclude=(), rename=None, order=(), unit="short", sort_by=None,
          overrides=None):
    excl = {"Time": True, "__name__": True}
    for name in exclude:
        excl[name] = True
    options = {
        "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
        "showHeader": True,
    }
    if sort_by:
        options["sortBy"] = [{"desc": True, "displayName": sort_by}]
    defaults = {
        "color": {"mode": "thresholds"},
        "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        "mappings": [],
        "thresholds": steps(),
        "unit": unit,
    }
    organize = {
        "id": "organize",
        "options": {
            "excludeByName": excl,
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": rename or {},
        },
    }
    return panel("table", title, desc, tgts, defaults, options, overrides,
                 transformations=[organize])


def state_timeline(title, tgts, desc="", mappings=None, thresholds=None, overrides=None):
    defaults = {
        "color": {"mode": "thresholds"},
        "custom": {
            "fillOpacity": 80,
            "hideFrom": {"legend": False, "tooltip": False, "viz": False},
            "lineWidth": 0,
        },
        "mappings": mappings or [],
        "thresholds": thresholds or steps(),
    }
    options = {
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "never",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel("state-timeline", title, desc, tgts, defaults, options, overrides)


# --------------------------------------------------------------------------------------------
# Trace links: data links from latency and error panels to Explore on the `tracing` variable
# --------------------------------------------------------------------------------------------

# Metric label -> span attribute. `route` is the route NAME, which the SERVER span carries as
# portico.route (http.route is the path template); `reason` (Portico's reply code) is error.type
# on the SERVER span; an upstream error `kind` is error.type on the CLIENT span. The upstream
# `service` has no span attribute (CLIENT spans carry the instance address only), so links from
# per-service panels show all failing or slow CLIENT spans.
SPAN_ATTRS = {
    ("server", "route"): "portico.route",
    ("server", "reason"): "error.type",
    ("client", "kind"): "error.type",
}


def explore_url(ds_type, query):
    """/explore?left=... (the URL form Grafana 10.0 to 12 all read) on ${tracing} over the
    panel's time range. Everything but the ${...} placeholders is percent-encoded; Grafana
    URL-encodes the values it substitutes."""
    left = {
        "datasource": "${tracing}",
        "queries": [dict(query, refId="A", datasource={"type": ds_type, "uid": "${tracing}"})],
        "range": {"from": "${__from}", "to": "${__to}"},
    }
    raw = json.dumps(left, separators=(",", ":"), sort_keys=True)
    url = urllib.parse.quote(raw, safe="")
    for ph in sorted(set(re.findall(r"\$\{[^}]+\}", raw))):
        url = url.replace(urllib.parse.quote(ph, safe=""), ph)
    return "/explore?left=" + url


def trace_links(scope, what, *labels, table=False):
    """Two links (Tempo TraceQL, Jaeger search) to the traces behind a panel: `scope` is the
    span kind (server = the request, client = an upstream attempt), `what` is "slow"
    (longer than the latency SLO threshold) or "failed" (5xx / failed attempt; narrowed to
    the series' error.type when a label maps to it), `labels` the series labels to filter on
    (table panels read them from the row: ${__data.fields.X})."""
    ref = "${__data.fields.%s}" if table else "${__field.labels.%s}"
    tql = ['resource.service.name = "%s"' % TRACE_SERVICE, "kind = %s" % scope]
    tags = ["span.kind=%s" % scope]
    jaeger = {"queryType": "search", "service": TRACE_SERVICE}
    attrs = [SPAN_ATTRS[(scope, label)] for label in labels]
    for label, attr in zip(labels, attrs):
        tql.append('span.%s = "%s"' % (attr, ref % label))
        tags.append("%s=%s" % (attr, ref % label))
    if what == "slow":
        tql.append("duration > %s" % SLOW_TRACE)
        jaeger["minDuration"] = SLOW_TRACE
        desc = "slower than 0.5 s"
    elif "error.type" in attrs:
        desc = "with this error.type"
    elif scope == "server":
        tql.append("span.http.response.status_code >= 500")
        tags.append("error=true")
        desc = "answered 5xx"
    else:
        tql.append('(span.http.response.status_code >= 500 || span.error.type =~ ".+")')
        tags.append("error=true")
        desc = "failed upstream attempts"
    if "portico.route" in attrs:
        desc += " on this route"
    jaeger["tags"] = " ".join(tags)
    tempo = {"queryType": "traceql", "query": "{ %s }" % " && ".join(tql), "limit": 20}
    return [
        {"targetBlank": True, "title": "Traces %s (Tempo)" % desc, "url": explore_url("tempo", tempo)},
        {"targetBlank": True, "title": "Traces %s (Jaeger)" % desc, "url": explore_url("jaeger", jaeger)},
    ]


def traced(p, scope, what, *labels, table=False):
    """Adds trace_links(...) to panel p and returns it."""
    p["fieldConfig"]["defaults"]["links"] = trace_links(scope, what, *labels, table=table)
    return p


# --------------------------------------------------------------------------------------------
# Layout: rows and panels on the 24-column grid, left to right, wrapping; never overlapping.
# --------------------------------------------------------------------------------------------


class Layout:
    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.line_h = 0

    def _newline(self):
        if self.x:
            self.y += self.line_h
        self.x = 0
        self.line_h = 0

    def row(self, title):
        self._newline()
        self.panels.append({
            "type": "row",
            "title": title,
            "collapsed": False,
            "datasource": DS,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "panels": [],
        })
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)
        if self.x == 24:
            self._newline()

    def done(self):
        # Ids follow from titles, not positions: alerts link to panels by id
        # (`dashboard: /d/UID?viewPanel=ID`), and a panel added above another must not
        # silently repoint those links. Titles are unique per dashboard (asserted).
        seen = {}
        for p in self.panels:
            pid = 1 + zlib.crc32(p["title"].encode()) % 99999
            assert pid not in seen, "panel id clash: %r and %r" % (p["title"], seen[pid])
            seen[pid] = p["title"]
            p["id"] = pid
        return self.panels


# --------------------------------------------------------------------------------------------
# Variables and the dashboard envelope
# --------------------------------------------------------------------------------------------


def datasource_var():
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def tracing_var():
    """The trace store the data links open (Tempo; Jaeger users set the query to "jaeger")."""
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Traces",
        "multi": False,
        "name": "tracing",
        "options": [],
        "query": "tempo",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def query_var(name, label, query, multi=True, include_all=True):
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DS,
        "definition": query,
        "hide": 0,
        "includeAll": include_all,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def base_vars():
    return [
        datasource_var(),
        query_var("job", "Job", "label_values(portico_build_info, job)"),
        query_var("instance", "Instance", 'label_values(portico_build_info{job=~"$job"}, instance)'),
        tracing_var(),
    ]


ROUTE_VAR = query_var("route", "Route", 'label_values(portico_http_requests_total{job=~"$job"}, route)')
SERVICE_VAR = query_var("service", "Service",
                        'label_values(portico_upstream_attempts_total{job=~"$job"}, service)')
KPI_VAR = query_var("kpi", "KPI", 'label_values(portico_business_events_total{job=~"$job"}, kpi)')
RULE_VAR = query_var("rule", "Rate-limit rule",
                     'label_values(portico_ratelimit_decisions_total{job=~"$job"}, rule)')

BUILTIN_ANNOTATION = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def prom_annotation(name, expr, title, color):
    return {
        "datasource": DS,
        "enable": True,
        "expr": expr,
        "hide": False,
        "iconColor": color,
        "name": name,
        "step": "60s",
        "tagKeys": "job,instance",
        "textFormat": "{{instance}}",
        "titleFormat": title,
        "useValueForTime": False,
    }


# Descriptions of panels whose builder call does not carry one (every panel has one:
# check.py fails a panel without).
PANEL_DESCRIPTIONS = {
    "In-flight requests": "Requests being processed now, per gateway (portico_http_requests_in_flight).",
    "Body bytes": "Request body bytes read from clients and response body bytes sent to them, per second.",
    "Request latency p99 by route": "99th percentile of the whole request time per route, from "
                                    "request head received to response finished.",
    "Average latency by status class": "Mean request time per status class: slow errors (5xx) "
                                       "usually mean timeouts, fast ones refusals.",
    "Build info": "Portico versions running behind the selected job and instances.",
    "Last reload successful": "Whether the last configuration reload (SIGHUP or POST "
                              "/admin/reload) applied; a failed reload keeps the old configuration.",
    "Config reloads by result": "Configuration reloads per minute, applied or rejected.",
    "Since last successful reload": "Time since the configuration in force was loaded.",
    "Uptime": "Time since the gateway process started.",
    "CPU": "CPU seconds used per second by each gateway process (process_cpu_seconds_total, "
           "tick resolution).",
    "Memory": "Resident memory of each gateway process.",
    "File descriptors": "Open file descriptors against the process limit; connections hold one each.",
    "Threads": "OS threads per gateway process (workers, background services, blocking pool).",
    "Redis errors by kind": "Redis command failures by client and kind (timeout, connection, "
                            "protocol, unavailable while marked down).",
    "Redis commands": "Redis commands per second by client; every call is bounded by its timeout.",
    "Registry syncs by result": "Registry passes per second, successful or failed; a failure "
                                "keeps the last known instances.",
    "Access-log lines dropped": "Access-log lines dropped because the writer fell behind; "
                                "requests never wait for the log.",
    "Healthy share per service": "Share of each service's instances that pass health checks "
                                 "(panic mode starts when none do).",
    "Errors by kind": "Upstream attempt failures by kind: connect refused/timeout, TLS, read or "
                      "write timeout, reset.",
    "Attempt rate by service": "Upstream attempts per second per service, retries included.",
    "Retries by reason": "Retries per second by what caused them (connect failure, status, error).",
    "Breaker transitions": "Circuit-breaker state changes per service (closed, open, half-open).",
}


def described(panels):
    """Fills in the description of panels that have none from PANEL_DESCRIPTIONS."""
    for p in panels:
        if p.get("type") != "row" and not p.get("description"):
            text = PANEL_DESCRIPTIONS.get(p.get("title"))
            if text:
                p["description"] = text
    return panels


def dashboard(uid, title, desc, panels, extra_vars=(), annotations=()):
    return {
        "annotations": {"list": [BUILTIN_ANNOTATION] + list(annotations)},
        "description": desc,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [{
            "asDropdown": True,
            "icon": "external link",
            "includeVars": True,
            "keepTime": True,
            "tags": ["portico"],
            "targetBlank": False,
            "title": "Portico dashboards",
            "tooltip": "",
            "type": "dashboards",
            "url": "",
        }],
        "panels": described(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["portico"],
        "templating": {"list": base_vars() + list(extra_vars)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def rate(metric, *matchers, window=RI, fn="rate"):
    return "%s(%s%s[%s])" % (fn, metric, sel(*matchers), window)


# --------------------------------------------------------------------------------------------
# Portico / Overview
# --------------------------------------------------------------------------------------------


def overview():
    L = Layout()
    R = 'route=~"$route"'
    req = "portico_http_requests_total"
    dur = "portico_http_request_duration_seconds"

    total = "sum(%s)" % rate(req, R)
    total_5xx = "sum(%s)" % rate(req, R, 'code=~"5.."')

    L.row("Golden signals")
    L.add(stat("Requests / s", targets((total, "requests/s")), "reqps", graph=True,
               desc="All requests on the selected routes, including gateway-made responses."), 4, 4)
    L.add(traced(stat("5xx ratio", targets((total_5xx + " / " + total, "5xx ratio")), "percentunit",
                      thresholds=steps((0.01, "orange"), (0.05, "red")), decimals=2, graph=True,
                      desc="Share of requests answered with a 5xx (upstream or gateway-made)."),
                 "server", "failed"), 4, 4)
    L.add(traced(stat("p99 latency", targets((
        "histogram_quantile(0.99, sum by (le) (%s))" % rate(dur + "_bucket", R), "p99")), "s",
        thresholds=steps((0.5, "orange"), (2, "red")), graph=True,
        desc="Whole-request latency seen by Portico, 99th percentile over all selected routes."),
        "server", "slow"), 4, 4)
    L.add(stat("In flight", targets((
        "sum(portico_http_requests_in_flight%s)" % sel(), "in flight")), "short", graph=True,
        desc="Requests currently being served, summed over the selected instances."), 4, 4)
    L.add(stat("Instances up", targets((
        "sum(up%s)" % sel(), "up")), "short",
        thresholds=steps((1, "green"), base="red"),
        desc="Scrape targets answering (Prometheus `up`)."), 4, 4)
    L.add(stat("Config versions in use", targets((
        "count(count by (hash) (portico_config_info%s))" % sel(), "hashes")), "short",
        thresholds=steps((2, "orange")),
        desc="Distinct config hashes across the selected instances; more than 1 means the "
             "replicas run different configurations (reload drift)."), 4, 4)

    L.row("Traffic")
    L.add(timeseries("Request rate by route", targets((
        "sum by (route) (%s)" % rate(req, R), "{{route}}")), "reqps", stack=True, legend_table=True,
        desc="portico_http_requests_total by route (route=\"unmatched\" = no route matched)."), 12, 8)
    L.add(timeseries("Request rate by code", targets((
        "sum by (code) (%s)" % rate(req, R), "{{code}}")), "reqps", stack=True, legend_table=True,
        desc="499 = client disconnected before any response."), 12, 8)
    L.add(timeseries("Requests by source", targets((
        "sum by (source) (%s)" % rate(req, R), "{{source}}")), "reqps", stack=True,
        desc="upstream = answered by a service; gateway = response Portico made itself."), 8, 7)
    L.add(timeseries("In-flight requests", targets((
        "sum by (instance) (portico_http_requests_in_flight%s)" % sel(), "{{instance}}")), "short"),
        8, 7)
    L.add(timeseries("Body bytes", targets(
        ("sum(%s)" % rate("portico_http_request_body_bytes_total", R), "request bodies (in)"),
        ("sum(%s)" % rate("portico_http_response_body_bytes_total", R), "response bodies (out)"),
    ), "Bps"), 8, 7)
    hq = "histogram_quantile(0.99, sum by (route, le) (%s))"
    L.add(timeseries("Body size p99 by route", targets(
        (hq % rate("portico_http_request_body_size_bytes_bucket", R), "{{route}} request"),
        (hq % rate("portico_http_response_body_size_bytes_bucket", R), "{{route}} response"),
    ), "bytes", legend_table=True,
        desc="99th percentile of request and response body sizes per request (buckets 64 B to "
             "16 MiB by factors of four)."), 24, 7)

    L.row("Client connections")
    L.add(timeseries("Open client connections", targets((
        "sum by (listener, protocol) (portico_downstream_connections%s)" % sel(),
        "{{listener}} {{protocol}}")), "short",
        desc="Connections after the TLS handshake, by listener and the protocol the client speaks "
             "(h1, h2); compare the total with server.limits.max_connections."),
        8, 7)
    L.add(timeseries("Connections accepted and refused", targets(
        ("sum by (listener, protocol) (%s)" % rate("portico_downstream_connections_accepted_total"),
         "accepted: {{listener}} {{protocol}}"),
        ("sum by (reason) (%s)" % rate("portico_downstream_connections_refused_total"),
         "refused: {{reason}}"),
    ), "cps", desc="Accepted by listener and protocol; refused = closed on arrival by "
                   "server.limits.max_connections or max_connections_per_ip."), 8, 7)
    L.add(timeseries("Slow clients cut off", targets((
        "sum by (phase) (%s)" % rate("portico_downstream_slow_client_timeouts_total"), "{{phase}}")),
        "cps", desc="Connections closed because the request head (request_head) or the HTTP/2 "
                    "preface (h2_preface) did not arrive within server.limits.header_timeout."),
        8, 7)
    L.add(timeseries("Clients that went away", targets((
        "sum by (phase) (%s)" % rate("portico_downstream_disconnects_total"), "{{phase}}")),
        "cps", desc="Clients that closed or reset their connection before the response was "
                    "complete (before_response is answered 499); normal in small numbers."), 8, 7)
    L.add(timeseries("TLS handshake failures", targets((
        "sum by (listener, reason) (%s)" % rate("portico_downstream_tls_handshake_failures_total"),
        "{{listener}} {{reason}}")),
        "cps", desc="TLS handshakes that failed (error: no shared version or cipher, plain HTTP "
                    "or garbage on a TLS port) or did not finish within "
                    "server.limits.header_timeout (timeout). Scanners cause a steady trickle; a "
                    "step after a certificate or client change is the signal."), 8, 7)
    L.add(stat("TLS certificate expires in", targets((
        "min by (listener) (portico_tls_certificate_expiry_timestamp_seconds%s) - time()" % sel(),
        "{{listener}}"), instant=True), "s",
        thresholds=steps((2 * 86400, "orange"), (14 * 86400, "green"), base="red"),
        desc="Time left before the certificate each TLS listener serves expires (read at start; "
             "alerts at 14 and 2 days)."), 8, 7)

    L.row("Errors")
    L.add(traced(timeseries("5xx ratio by route", targets((
        "sum by (route) (%s) / sum by (route) (%s)" % (rate(req, R, 'code=~"5.."'), rate(req, R)),
        "{{route}}")), "percentunit", legend_table=True,
        thresholds=steps((0.05, "red")), threshold_lines=True,
        desc="Share of each route's requests answered with a 5xx."), "server", "failed", "route"), 12, 8)
    L.add(traced(timeseries("Gateway-made error ratio by reason", targets((
        "sum by (reason) (%s) / ignoring (reason) group_left sum(%s)"
        % (rate("portico_http_gateway_responses_total", R), rate(req, R)),
        "{{reason}}")), "percentunit", stack=True, legend_table=True,
        desc="Responses Portico made itself (no_route, no_healthy_upstream, circuit_open, "
             "rate_limited, ...) as a share of all requests."), "server", "failed", "reason"), 12, 8)
    L.add(traced(timeseries("Gateway-made responses by reason", targets((
        "sum by (reason) (%s)" % rate("portico_http_gateway_responses_total", R), "{{reason}}")),
        "reqps", stack=True, legend_table=True,
        desc="portico_http_gateway_responses_total; the error code is also the Portico-Error header."),
        "server", "failed", "reason"), 12, 8)
    L.add(traced(table("Gateway-made responses in range by route and reason", targets((
        "sort_desc(sum by (route, reason) (%s) > 0)"
        % rate("portico_http_gateway_responses_total", R, window="$__range", fn="increase"), ""),
        instant=True, fmt="table"), rename={"Value": "responses"}, order=("route", "reason", "Value"),
        sort_by="responses", desc="Counts over the selected time range."),
        "server", "failed", "route", "reason", table=True), 12, 8)

    L.row("Latency")
    q = "histogram_quantile(%s, sum by (le) (%s))"
    L.add(traced(timeseries("Request latency p50 / p90 / p99", targets(
        (q % ("0.5", rate(dur + "_bucket", R)), "p50"),
        (q % ("0.9", rate(dur + "_bucket", R)), "p90"),
        (q % ("0.99", rate(dur + "_bucket", R)), "p99"),
    ), "s", desc="From portico_http_request_duration_seconds, all status classes."), "server", "slow"), 12, 8)
    L.add(traced(timeseries("Request latency p99 by route", targets((
        "histogram_quantile(0.99, sum by (route, le) (%s))" % rate(dur + "_bucket", R), "{{route}}")),
        "s", legend_table=True), "server", "slow", "route"), 12, 8)
    slow = ("1 - sum(%s) / sum(%s)"
            % (rate(dur + "_bucket", R, 'status_class!="5xx"', 'le="%s"' % LATENCY_THRESHOLD),
               rate(dur + "_count", R, 'status_class!="5xx"')))
    L.add(traced(timeseries("Share of requests slower than %s s" % LATENCY_THRESHOLD,
                            targets((slow, "slower than 0.5 s")),
                            "percentunit", thresholds=steps((LATENCY_BUDGET, "red")), threshold_lines=True,
                            desc="Non-5xx requests above the 0.5 s bucket boundary; the latency SLO "
                                 "allows 1 %."), "server", "slow"), 12, 7)
    L.add(traced(timeseries("Average latency by status class", targets((
        "sum by (status_class) (%s) / sum by (status_class) (%s)"
        % (rate(dur + "_sum", R), rate(dur + "_count", R)), "{{status_class}}")), "s"),
        "server", "slow"), 12, 7)

    L.row("SLO (all routes)")
    budget = round(1 - SLO_AVAILABILITY, 6)

    def burn(window):
        return ("(sum(%s) / sum(%s)) / %s"
                % (rate(req, 'code=~"5.."', window=window), rate(req, window=window), budget))

    def slow_share(window):
        return ("1 - sum(%s) / sum(%s)"
                % (rate(dur + "_bucket", 'status_class!="5xx"', 'le="%s"' % LATENCY_THRESHOLD, window=window),
                   rate(dur + "_count", 'status_class!="5xx"', window=window)))

    burn_desc = ("Availability SLO 99.9 %% (5xx = error). Burn rate = error ratio / %s; 1 spends the "
                 "30-day budget exactly in 30 days. Page when 1h > 14.4 or 6h > 6." % budget)
    L.add(traced(stat("Error budget burn rate (1h)", targets((burn("1h"), "1h")), "short", decimals=2,
                      thresholds=steps((1, "orange"), (14.4, "red")), desc=burn_desc),
                 "server", "failed"), 6, 5)
    L.add(traced(stat("Error budget burn rate (6h)", targets((burn("6h"), "6h")), "short", decimals=2,
                      thresholds=steps((1, "orange"), (6, "red")), desc=burn_desc),
                 "server", "failed"), 6, 5)
    lat_desc = "Latency SLO: 99 % of non-5xx requests faster than 0.5 s (budget 1 %)."
    L.add(traced(stat("Slower than 0.5 s (1h)", targets((slow_share("1h"), "1h")), "percentunit",
                      decimals=2, thresholds=steps((LATENCY_BUDGET, "red")), desc=lat_desc),
                 "server", "slow"), 6, 5)
    L.add(traced(stat("Slower than 0.5 s (6h)", targets((slow_share("6h"), "6h")), "percentunit",
                      decimals=2, thresholds=steps((LATENCY_BUDGET, "red")), desc=lat_desc),
                 "server", "slow"), 6, 5)
    L.add(traced(timeseries("Availability burn rate",
                            targets((burn("1h"), "1h window"), (burn("6h"), "6h window")),
                            "short", thresholds=steps((6, "orange"), (14.4, "red")), threshold_lines=True,
                            axis_label="x budget", desc=burn_desc), "server", "failed"), 12, 8)
    L.add(traced(timeseries("Latency burn rate", targets(
        ("(%s) / %s" % (slow_share("1h"), LATENCY_BUDGET), "1h window"),
        ("(%s) / %s" % (slow_share("6h"), LATENCY_BUDGET), "6h window")),
        "short", thresholds=steps((6, "orange"), (14.4, "red")), threshold_lines=True,
        axis_label="x budget", desc=lat_desc), "server", "slow"), 12, 8)

    L.row("Configuration and build")
    L.add(table("Config hash per instance", targets((
        "max by (job, instance, hash) (portico_config_info%s)" % sel(), ""), instant=True, fmt="table"),
        exclude=("Value",), order=("job", "instance", "hash"),
        desc="Replicas with different hashes run different configurations."), 8, 7)
    L.add(table("Build info", targets((
        "max by (job, instance, version) (portico_build_info%s)" % sel(), ""), instant=True, fmt="table"),
        exclude=("Value",), order=("job", "instance", "version")), 8, 7)
    L.add(stat("Last reload successful", targets((
        "portico_config_last_reload_successful%s" % sel(), "{{instance}}")), "short",
        mappings=value_map({0: ("failed", "red"), 1: ("ok", "green")}), color_mode="background"), 8, 7)
    L.add(timeseries("Config reloads by result", targets((
        "sum by (result) (%s)" % rate("portico_config_reloads_total", fn="increase"), "{{result}}")),
        "short", bars=True), 12, 7)
    L.add(stat("Since last successful reload", targets((
        "time() - portico_config_last_reload_success_timestamp_seconds%s" % sel(), "{{instance}}")), "s"),
        6, 7)
    L.add(stat("Uptime", targets((
        "time() - process_start_time_seconds%s" % sel(), "{{instance}}")), "s"), 6, 7)

    L.row("Process")
    L.add(timeseries("CPU", targets((
        "sum by (instance) (%s)" % rate("process_cpu_seconds_total"), "{{instance}}")), "short",
        axis_label="cores"), 6, 7)
    L.add(timeseries("Memory", targets(
        ("process_resident_memory_bytes%s" % sel(), "{{instance}} RSS"),
        ("process_virtual_memory_bytes%s" % sel(), "{{instance}} virtual")), "bytes"), 6, 7)
    L.add(timeseries("File descriptors", targets(
        ("process_open_fds%s" % sel(), "{{instance}} open"),
        ("process_max_fds%s" % sel(), "{{instance}} max")), "short"), 6, 7)
    L.add(timeseries("Threads", targets((
        "process_threads%s" % sel(), "{{instance}}")), "short"), 6, 7)

    annotations = [
        prom_annotation("Config reloads",
                        "changes(portico_config_last_reload_success_timestamp_seconds%s[%s]) > 0" % (sel(), RI),
                        "Config reloaded", "blue"),
        prom_annotation("Restarts",
                        "changes(process_start_time_seconds%s[%s]) > 0" % (sel(), RI),
                        "Portico restarted", "red"),
    ]
    return dashboard("portico-overview", "Portico / Overview",
                     "Golden signals, SLO burn, configuration and process health of the Portico gateway.",
                     L.done(), extra_vars=[ROUTE_VAR], annotations=annotations)


# --------------------------------------------------------------------------------------------
# Portico / Upstreams
# --------------------------------------------------------------------------------------------


def upstreams():
    L = Layout()
    S = 'service=~"$service"'
    att = "portico_upstream_attempts_total"
    inst_note = " The upstream is the `address` label; `instance` is the gateway."

    L.row("Instances")
    L.add(state_timeline("Upstream instance health", targets((
        "min by (service, address) (portico_upstream_instance_healthy%s)" % sel(S),
        "{{service}} {{address}}")),
        mappings=value_map({0: ("unhealthy", "red"), 1: ("healthy", "green")}),
        thresholds=steps((1, "green"), base="red"),
        desc="Health-check verdict per upstream instance; unhealthy if any selected gateway sees it "
             "unhealthy." + inst_note), 24, 9)
    L.add(timeseries("Instances known vs healthy", targets(
        ("max by (service) (portico_upstream_instances%s)" % sel(S), "{{service}} known"),
        ("min by (service) (sum by (instance, service) (portico_upstream_instance_healthy%s))" % sel(S),
         "{{service}} healthy")), "short",
        desc="Known = static + registry instances; healthy = worst selected gateway."), 12, 7)
    L.add(stat("Healthy share per service", targets((
        "min by (service) (sum by (instance, service) (portico_upstream_instance_healthy%s)"
        " / sum by (instance, service) (portico_upstream_instances%s))" % (sel(S), sel(S)),
        "{{service}}")), "percentunit",
        thresholds=steps((0.5, "orange"), (1, "green"), base="red"), color_mode="background"), 12, 7)

    L.row("Attempts and errors")
    L.add(timeseries("Attempts by status class", targets((
        "sum by (status_class) (%s)" % rate(att, S), "{{status_class}}")), "reqps", stack=True,
        desc="Every try to an upstream, retries included; error = no HTTP response."), 12, 8)
    L.add(traced(timeseries("Attempt failure ratio by service", targets((
        "sum by (service) (%s) / sum by (service) (%s)"
        % (rate(att, S, 'status_class=~"5xx|error"'), rate(att, S)), "{{service}}")), "percentunit",
        thresholds=steps((0.1, "red")), threshold_lines=True,
        desc="Share of attempts answered 5xx or failed without a response."), "client", "failed"), 12, 8)
    L.add(traced(timeseries("Errors by kind", targets((
        "sum by (service, kind) (%s)" % rate("portico_upstream_errors_total", S),
        "{{service}} {{kind}}")), "ops", stack=True, legend_table=True), "client", "failed", "kind"), 12, 8)
    L.add(timeseries("Attempt rate by service", targets((
        "sum by (service) (%s)" % rate(att, S), "{{service}}")), "reqps", legend_table=True), 12, 8)

    L.row("Latency")
    rq = "histogram_quantile(%s, sum by (service, le) (%s))"
    resp = "portico_upstream_response_duration_seconds_bucket"
    L.add(traced(timeseries("Upstream response latency p50 / p99", targets(
        (rq % ("0.5", rate(resp, S)), "{{service}} p50"),
        (rq % ("0.99", rate(resp, S)), "{{service}} p99")), "s", legend_table=True,
        desc="portico_upstream_response_duration_seconds per service."), "client", "slow"), 12, 8)
    L.add(traced(timeseries("Connect latency p99", targets((
        rq % ("0.99", rate("portico_upstream_connect_duration_seconds_bucket", S)), "{{service}}")), "s",
        legend_table=True, desc="New connections only (pooled connections are not measured)."),
        "client", "slow"), 12, 8)
    L.add(timeseries("Upstream connection reuse", targets((
        "sum by (service) (%s) / sum by (service) (%s)"
        % (rate("portico_upstream_connections_total", S, 'kind="reused"'),
           rate("portico_upstream_connections_total", S)), "{{service}}")),
        "percentunit", legend_table=True,
        desc="Share of requests sent on a pooled connection; the rest paid a TCP (and TLS) "
             "handshake. The pool is per worker thread."), 24, 7)

    L.row("Retries")
    L.add(timeseries("Retries by reason", targets((
        "sum by (service, reason) (%s)" % rate("portico_upstream_retries_total", S),
        "{{service}} {{reason}}")), "ops", stack=True), 8, 7)
    L.add(timeseries("Retry ratio", targets((
        "sum by (service) (%s) / sum by (service) (%s)"
        % (rate("portico_upstream_retries_total", S), rate(att, S)), "{{service}}")), "percentunit",
        thresholds=steps((0.2, "red")), threshold_lines=True, desc="Retries per attempt."), 8, 7)
    L.add(timeseries("Retry budget exhausted", targets((
        "sum by (service) (%s)" % rate("portico_upstream_retry_budget_exhausted_total", S),
        "{{service}}")), "ops", desc="Retries refused because the service's retry budget ran out."), 8, 7)

    L.row("Circuit breakers")
    L.add(state_timeline("Breaker state", targets((
        "max by (service, address, state) (portico_circuit_breaker_state%s == 1)" % sel(S),
        "{{service}} {{address}} {{state}}")),
        mappings=value_map({1: ("active", "text")}),
        overrides=[
            {"matcher": {"id": "byRegexp", "options": ".* open$"},
             "properties": [{"id": "mappings", "value": value_map({1: ("open", "red")})}]},
            {"matcher": {"id": "byRegexp", "options": ".* half_open$"},
             "properties": [{"id": "mappings", "value": value_map({1: ("half_open", "orange")})}]},
            {"matcher": {"id": "byRegexp", "options": ".* closed$"},
             "properties": [{"id": "mappings", "value": value_map({1: ("closed", "green")})}]},
        ],
        desc="One-hot portico_circuit_breaker_state: a bar shows the state each upstream instance's "
             "breaker is in." + inst_note), 24, 9)
    L.add(stat("Open breakers", targets((
        "sum(portico_circuit_breaker_state%s)" % sel(S, 'state="open"'), "open")), "short",
        thresholds=steps((1, "red")), no_value="0",
        desc="Open breakers, counted per gateway and upstream instance."), 4, 7)
    L.add(timeseries("Breaker transitions", targets((
        "sum by (service, from, to) (%s)" % rate("portico_circuit_breaker_transitions_total", S, fn="increase"),
        "{{service}} {{from}} -> {{to}}")), "short", bars=True), 10, 7)
    L.add(timeseries("Short-circuited requests", targets((
        "sum by (service, mode) (%s)" % rate("portico_circuit_breaker_short_circuited_total", S),
        "{{service}} {{mode}}")), "reqps",
        desc="enforced = refused by an open breaker; shadow = would have been refused (shadow mode)."),
        10, 7)
    L.add(timeseries("Panic selections", targets((
        "sum by (service) (%s)" % rate("portico_upstream_panic_selections_total", S), "{{service}}")),
        "ops", desc="Selections made in fail-open panic mode (too few healthy instances)."), 12, 7)
    L.add(timeseries("Host-name lookup failures", targets((
        "sum by (service) (%s)" % rate("portico_upstream_dns_failures_total", S, fn="increase"),
        "{{service}}")), "short", bars=True,
        desc="Failed lookups of static instances' host names; the last good addresses stay in use."),
        12, 7)

    L.add(timeseries("Cross-zone share (zone-aware services)", targets((
        "sum by (service) (%s) / sum by (service) (%s)"
        % (rate("portico_upstream_zone_requests_total", S, 'locality="cross_zone"'),
           rate("portico_upstream_zone_requests_total", S)), "{{service}}")), "percentunit",
        desc="Share of a zone-aware service's attempts sent out of the gateway's zone: 0 while "
             "at least min_healthy of the local zone is available, rising in proportion as it "
             "loses instances."), 24, 7)

    L.row("Traffic splits")
    L.add(timeseries("Split share by route and service", targets((
        "sum by (route, service) (%s) / ignoring(service) group_left sum by (route) (%s)"
        % (rate("portico_split_requests_total"), rate("portico_split_requests_total")),
        "{{route}} → {{service}}")), "percentunit", stack=True,
        desc="Share of each split route's requests each service took: the weights, plus requests "
             "forced by `when`, minus a side that had no available instance (failed over)."),
        24, 7)

    L.row("Request mirrors")
    L.add(timeseries("Mirror comparisons by route and result", targets((
        "sum by (route, result) (%s)" % rate("portico_mirror_comparisons_total"),
        "{{route}} {{result}}")), "reqps", stack=True,
        desc="Mirrored requests of a route with `compare`: match, status_mismatch, body_mismatch "
             "(same status, other body; with compare_body) or error (either side without a "
             "complete answer). Shift traffic to the mirror's version once only match is left."),
        8, 7)
    L.add(timeseries("Mirror copies: answered, failed, dropped", targets(
        ("sum by (route, outcome) (%s)" % rate("portico_mirror_requests_total"),
         "{{route}} {{outcome}}"),
        ("sum by (route, reason) (%s)" % rate("portico_mirror_dropped_total"),
         "{{route}} dropped: {{reason}}")), "reqps",
        desc="Copies sent to each route's mirror by outcome, and sampled requests not copied: "
             "max_in_flight copies already out (a slow mirror) or a body over max_body."),
        8, 7)
    L.add(timeseries("Mirror copies in flight", targets((
        "sum by (route) (portico_mirror_in_flight%s)" % sel(), "{{route}}")), "short",
        desc="Copies being sent or answered now, per route; at the route's max_in_flight further "
             "sampled requests are dropped (counted above)."), 8, 7)

    return dashboard("portico-upstreams", "Portico / Upstreams",
                     "Upstream services: instance health, attempts, errors, latency, retries and circuit "
                     "breakers.", L.done(), extra_vars=[SERVICE_VAR])


# --------------------------------------------------------------------------------------------
# Portico / Rate limiting & dependencies
# --------------------------------------------------------------------------------------------


def ratelimit_deps():
    L = Layout()
    RR = ('route=~"$route"', 'rule=~"$rule"')
    RU = 'rule=~"$rule"'
    dec = "portico_ratelimit_decisions_total"

    L.row("Rate limiting")
    L.add(timeseries("Decisions by route / rule / decision / store", targets((
        "sum by (route, rule, decision, store) (%s)" % rate(dec, *RR),
        "{{route}} {{rule}} {{decision}} ({{store}})")), "reqps", legend_table=True,
        desc="One decision per request and rule; store = local, redis or fallback."), 12, 8)
    L.add(timeseries("Limited share by route / rule", targets((
        "sum by (route, rule) (%s) / sum by (route, rule) (%s)"
        % (rate(dec, *(RR + ('decision="limited"',))), rate(dec, *RR)), "{{route}} {{rule}}")),
        "percentunit", thresholds=steps((0.2, "red")), threshold_lines=True,
        desc="Share of decisions that refused the request (429)."), 12, 8)
    L.add(timeseries("Shadow-limited", targets((
        "sum by (route, rule) (%s)" % rate(dec, *(RR + ('decision="shadow_limited"',))),
        "{{route}} {{rule}}")), "reqps", desc="Requests a shadow rule would have refused."), 8, 7)
    L.add(timeseries("Store errors", targets((
        "sum by (rule, kind) (%s)" % rate("portico_ratelimit_store_errors_total", RU),
        "{{rule}} {{kind}}")), "ops",
        desc="Redis store errors; unavailable = skipped while Redis is marked down (500 ms)."), 8, 7)
    L.add(timeseries("Fallback decisions", targets((
        "sum by (rule, policy) (%s)" % rate("portico_ratelimit_fallback_decisions_total", RU),
        "{{rule}} {{policy}}")), "reqps", desc="Decisions taken by the rule's on_store_error policy."),
        8, 7)
    L.add(timeseries("Local keys", targets((
        "sum by (instance, rule, store) (portico_ratelimit_local_keys%s)" % sel(RU),
        "{{instance}} {{rule}} ({{store}})")), "short",
        desc="Buckets held in memory per gateway, capped by max_keys per rule."), 12, 7)
    L.add(timeseries("Local evictions", targets((
        "sum by (rule, store) (%s)" % rate("portico_ratelimit_local_evictions_total", RU),
        "{{rule}} ({{store}})")), "ops",
        desc="Active keys evicted under a flood of distinct keys (exactness degrades)."), 12, 7)
    L.add(timeseries("Policy refusals by route / policy / mode", targets((
        "sum by (route, policy, mode) (%s)" % rate("portico_policy_refusals_total", 'route=~"$route"'),
        "{{route}} {{policy}} ({{mode}})")), "reqps", legend_table=True,
        desc="Requests a route policy refused: enforce = answered by Portico, shadow = counted and let "
             "through."), 12, 7)
    L.add(timeseries("Redis-store decisions per script call", targets((
        "sum(%s) / sum(%s)" % (rate("portico_ratelimit_redis_batch_decisions_sum"),
                               rate("portico_ratelimit_redis_batch_decisions_count")),
        "mean")), "short",
        desc="Concurrent Redis-store decisions share a script call while one is out: 1 = no sharing "
             "(light load), higher = fewer round trips per request."), 12, 7)

    L.row("Edge policies")
    L.add(timeseries("Concurrency slots in use by route", targets((
        "sum by (route) (portico_concurrency_in_flight%s)" % sel('route=~"$route"'), "{{route}}")),
        "short", legend_table=True,
        desc="Requests holding a slot of the route's concurrency limit; at the limit the next "
             "request gets 503 overloaded."), 8, 7)
    L.add(traced(timeseries("Forbidden and overloaded", targets((
        "sum by (route, reason) (%s)" % rate("portico_http_gateway_responses_total",
                                               'route=~"$route"', 'reason=~"forbidden|overloaded"'),
        "{{route}} {{reason}}")), "reqps", stack=True,
        desc="403 from IP rules or CORS reject; 503 from concurrency limits or full instances."),
        "server", "failed", "route", "reason"), 8, 7)
    L.add(timeseries("Redis IP deny set", targets(
        ("max(portico_ip_deny_entries%s)" % sel(), "entries"),
        ("sum(%s)" % rate("portico_ip_deny_sync_failures_total", fn="increase"), "failed reads")),
        "short",
        desc="Entries of the shared deny set in force (the last good read) and failed reads."), 8, 7)
    L.add(timeseries("Compression ratio by route", targets((
        "sum by (route) (%s) / sum by (route) (%s)"
        % (rate("portico_compression_bytes_total", 'route=~"$route"', 'side="out"'),
           rate("portico_compression_bytes_total", 'route=~"$route"', 'side="in"')), "{{route}}")),
        "percentunit", desc="Compressed bytes out per body byte in; lower is better."), 6, 7)
    L.add(timeseries("Compressed responses by algorithm", targets((
        "sum by (algorithm) (%s)" % rate("portico_compression_responses_total", 'route=~"$route"'),
        "{{algorithm}}")), "reqps", stack=True, desc="br, zstd or gzip, as clients negotiated."), 6, 7)
    L.add(traced(timeseries("Gateway answers by reason", targets((
        "sum by (route, reason) (%s)" % rate("portico_http_gateway_responses_total",
                                               'route=~"$route"',
                                               'reason=~"redirect|static_response|cors_preflight"'),
        "{{route}} {{reason}}")), "reqps", stack=True,
        desc="Redirects, static responses and CORS preflights the gateway answered itself."),
        "server", "failed", "route", "reason"), 12, 7)

    L.row("Tracing")
    L.add(timeseries("Span export failures", targets(
        ("sum(%s)" % rate("portico_tracing_export_failures_total", fn="increase"), "failed batches"),
        ("sum(%s)" % rate("portico_tracing_spans_dropped_total", fn="increase"), "spans lost")),
        "short", desc="Span batches the OTLP exporter could not deliver, and the spans they "
                      "carried; requests are never affected."), 24, 6)

    L.row("Identity")
    L.add(timeseries("Auth decisions by route and result", targets((
        "sum by (route, result) (%s)" % rate("portico_auth_decisions_total", 'route=~"$route"'),
        "{{route}} {{result}}")), "reqps", stack=True, legend_table=True,
        desc="Per auth policy tried: allowed, missing (no credential of its kind), invalid, expired, "
             "forbidden (authenticated, not in allow_groups), error (could not be checked)."), 8, 7)
    L.add(traced(timeseries("Refused by authentication", targets((
        "sum by (route, reason) (%s)" % rate("portico_http_gateway_responses_total",
                                               'route=~"$route"',
                                               'reason=~"unauthorized|auth_unavailable|auth_denied"'),
        "{{route}} {{reason}}")), "reqps", stack=True,
        desc="401 unauthorized, 503 auth_unavailable (JWKS never read, auth service down) and the "
             "forward-auth service's own refusals (auth_denied)."), "server", "failed", "route", "reason"), 8, 7)
    L.add(timeseries("Verified-token cache hit ratio", targets((
        "sum by (policy) (%s) / sum by (policy) (%s)"
        % (rate("portico_auth_token_cache_total", 'result="hit"'),
           rate("portico_auth_token_cache_total")), "{{policy}}")),
        "percentunit", desc="JWTs served without a signature check; a low ratio with many "
                            "invalid decisions can mean forged tokens."), 8, 7)
    L.add(timeseries("JWKS keys and failed reads", targets(
        ("min by (policy) (portico_jwks_keys%s)" % sel(), "{{policy}} keys"),
        ("sum by (policy) (%s)" % rate("portico_jwks_refreshes_total", 'result="error"', fn="increase"),
         "{{policy}} failed reads")), "short",
        desc="Signing keys in force per JWT policy (0: never read, every token answered 503) and "
             "failed JWKS reads (the last keys stay in force)."), 12, 7)
    L.add(timeseries("Consumers", targets(
        ("max by (source) (portico_consumers%s)" % sel(), "{{source}}"),
        ("sum(%s)" % rate("portico_consumer_sync_failures_total", fn="increase"), "failed Redis reads")),
        "short", desc="Consumers in force from the configuration and from Redis (the last good "
                      "read), and failed reads of the Redis consumers."), 12, 7)

    L.row("Redis")
    L.add(stat("Redis up", targets((
        "min by (client) (portico_redis_up%s)" % sel(), "{{client}}")), "short",
        mappings=value_map({0: ("down", "red"), 1: ("up", "green")}),
        thresholds=steps((1, "green"), base="red"), color_mode="background",
        desc="Per client (registry, ratelimit, events); down if any selected gateway is down."), 6, 8)
    L.add(timeseries("Redis command latency p99", targets((
        "histogram_quantile(0.99, sum by (client, command, le) (%s))"
        % rate("portico_redis_command_duration_seconds_bucket"), "{{client}} {{command}}")), "s",
        legend_table=True, thresholds=steps((0.05, "red")), threshold_lines=True,
        desc="The rate-limit command timeout defaults to 50 ms."), 9, 8)
    L.add(timeseries("Redis errors by kind", targets((
        "sum by (client, kind) (%s)" % rate("portico_redis_errors_total"), "{{client}} {{kind}}")),
        "ops", stack=True), 9, 8)
    L.add(timeseries("Redis commands", targets((
        "sum by (client, command) (%s)" % rate("portico_redis_command_duration_seconds_count"),
        "{{client}} {{command}}")), "ops", legend_table=True), 24, 7)
    L.add(stat("Redis topology", targets((
        "max by (topology, tls) (portico_redis_topology_info%s)" % sel(),
        "{{topology}} (tls {{tls}})")), "short",
        desc="single, cluster or sentinel, and whether connections use TLS."), 6, 7)
    L.add(stat("Gateways live", targets((
        "max(portico_gateways_live%s)" % sel(), "live")), "short", graph=True,
        desc="Gateways heartbeating into the membership list; divides the local fallback share "
             "of Redis-stored limits. Compare with the replica count you expect."), 6, 7)
    L.add(timeseries("Redis dials by client / result", targets((
        "sum by (client, result) (%s)" % rate("portico_redis_connects_total"),
        "{{client}} {{result}}")), "ops", stack=True,
        desc="Every success after the first per client is a reconnect; failures back off "
             "100 ms to 1 s."), 6, 7)
    L.add(timeseries("Sentinel primary switches", targets((
        "sum(increase(portico_redis_primary_switches_total%s[$__range]))" % sel(), "switches")),
        "short", bars=True,
        desc="Times the sentinels named a new primary and every client redialled."), 6, 7)

    L.row("Service registry")
    L.add(stat("Registry last-sync age", targets((
        "time() - portico_registry_last_sync_success_timestamp_seconds%s" % sel(), "{{instance}}")), "s",
        thresholds=steps((60, "orange"), (120, "red")), graph=True,
        desc="Seconds since the last successful registry pass; stale data is kept while Redis is away."),
        6, 8)
    L.add(timeseries("Registry syncs by result", targets((
        "sum by (result) (%s)" % rate("portico_registry_syncs_total"), "{{result}}")), "ops",
        stack=True), 9, 8)
    L.add(timeseries("Registry instances by state", targets((
        "max by (service, state) (portico_registry_instances%s)" % sel(), "{{service}} {{state}}")),
        "short", legend_table=True, desc="live, draining, expired (ignored), invalid (ignored)."), 9, 8)
    L.add(timeseries("Expired instances removed / data loss detected", targets(
        ("sum by (service) (%s)" % rate("portico_registry_expired_removed_total", fn="increase"),
         "{{service}} expired removed"),
        ("sum(%s)" % rate("portico_registry_data_loss_detected_total", fn="increase"), "data loss detected")),
        "short", bars=True,
        desc="Janitor removals, and Redis epoch token vanishing (Redis restarted empty or failed over)."),
        24, 7)

    L.row("Events and access log")
    L.add(timeseries("Events published", targets((
        "sum(%s)" % rate("portico_events_published_total"), "published")), "ops",
        desc="Business events written to the Redis Stream."), 8, 7)
    L.add(timeseries("Events dropped", targets((
        "sum by (reason) (%s)" % rate("portico_events_dropped_total"), "{{reason}}")), "ops", stack=True,
        desc="queue_full = bounded queue full; redis_error = write failed."), 8, 7)
    L.add(timeseries("Access-log lines dropped", targets((
        "sum by (instance) (%s)" % rate("portico_access_log_dropped_total"), "{{instance}}")), "ops"),
        8, 7)

    return dashboard("portico-ratelimit-deps", "Portico / Rate limiting & dependencies",
                     "Rate-limit decisions and stores, Redis clients, the service registry, event "
                     "publishing and access-log drops.", L.done(), extra_vars=[ROUTE_VAR, RULE_VAR])


# --------------------------------------------------------------------------------------------
# Portico / Business KPIs
# --------------------------------------------------------------------------------------------


def business():
    L = Layout()
    ev = "portico_business_events_total"
    K = 'kpi=~"$kpi"'

    L.row("Seed KPIs (events in the selected time range)")
    for kpi, title in SEED_KPIS:
        thresholds = steps((1, "red"), base="text") if kpi == "payments_failed" else steps(base="text")
        L.add(stat(title, targets((
            "sum(%s)" % rate(ev, 'kpi="%s"' % kpi, window="$__range", fn="increase"), kpi), instant=True),
            "short", decimals=0, thresholds=thresholds, no_value="0",
            desc="increase(portico_business_events_total{kpi=\"%s\"}) over the dashboard range." % kpi),
            3, 4)

    L.row("Trends")
    L.add(timeseries("Events by KPI", targets((
        "sum by (kpi) (%s)" % rate(ev, K), "{{kpi}}")), "ops", legend_table=True,
        desc="sum by (kpi) (rate(portico_business_events_total[$__rate_interval]))"), 12, 9)
    wow = ("sum by (kpi) (increase(%s%s[1h])) / sum by (kpi) (increase(%s%s[1h] offset 1w))"
           % (ev, sel(K), ev, sel(K)))
    L.add(timeseries("Week-over-week ratio (1h window)", targets((wow, "{{kpi}}")), "percentunit",
                     legend_table=True, thresholds=steps((0.5, "green"), base="red"), threshold_lines=True,
                     desc="Events in the last hour / events in the same hour one week earlier; 100 % = "
                          "unchanged. Needs a week of data."), 12, 9)
    succeeded = rate(ev, 'kpi="payments_succeeded"')
    both = rate(ev, 'kpi=~"payments_succeeded|payments_failed"')
    pay_desc = "payments_succeeded / (payments_succeeded + payments_failed)."
    L.add(timeseries("Payment success ratio", targets((
        "sum(%s) / sum(%s)" % (succeeded, both), "success ratio")), "percentunit", maximum=1,
        thresholds=steps((0.95, "green"), base="red"), threshold_lines=True, desc=pay_desc), 12, 8)
    L.add(stat("Payment success ratio (range)", targets((
        "sum(%s) / sum(%s)" % (rate(ev, 'kpi="payments_succeeded"', window="$__range", fn="increase"),
                               rate(ev, 'kpi=~"payments_succeeded|payments_failed"', window="$__range",
                                    fn="increase")), "success ratio"), instant=True),
        "percentunit", decimals=2, thresholds=steps((0.9, "orange"), (0.95, "green"), base="red"),
        desc=pay_desc + " Over the selected time range."), 4, 8)
    L.add(table("KPI by route (selected range)", targets((
        "sort_desc(sum by (kpi, route) (%s))" % rate(ev, K, window="$__range", fn="increase"), ""),
        instant=True, fmt="table"), rename={"Value": "events"}, order=("kpi", "route", "Value"),
        sort_by="events", desc="route=\"_other\" collects routes beyond the KPI's max_series."), 8, 8)
    L.add(table("KPI by consumer (selected range, top 20)", targets((
        "topk(20, sum by (kpi, consumer) (%s))"
        % rate("portico_business_events_by_consumer_total", K, window="$__range", fn="increase"), ""),
        instant=True, fmt="table"), rename={"Value": "events"}, order=("kpi", "consumer", "Value"),
        sort_by="events", desc="KPIs with by_consumer: true, per authenticated consumer; "
                               "consumer=\"_other\" collects consumers beyond max_consumers, "
                               "\"_anonymous\" requests naming none."), 24, 8)

    return dashboard("portico-business", "Portico / Business KPIs",
                     "Business KPIs counted by Portico from traffic (portico_business_events_total).",
                     L.done(), extra_vars=[KPI_VAR])


DASHBOARDS = [
    ("portico-overview.json", overview),
    ("portico-upstreams.json", upstreams),
    ("portico-ratelimit-deps.json", ratelimit_deps),
    ("portico-business.json", business),
]


def render(board):
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE, help="output directory (default: this directory)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for filename, build in DASHBOARDS:
        path = os.path.join(args.out, filename)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(render(build()))
        print("wrote", os.path.relpath(path))


if __name__ == "__main__":
    main()
