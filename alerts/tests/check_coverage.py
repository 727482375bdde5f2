#!/usr/bin/env python3
"""Self-check for the Portico alert rules (run from anywhere; needs PyYAML).

- every alert has labels.severity in {critical, warning} and summary + description annotations;
- every alert has a `runbook_url` annotation `http(s)://<wherever RUNBOOK.md is hosted>#<anchor>`
  whose anchor is a heading of alerts/RUNBOOK.md (GitHub-style anchor) and is the alert's own
  section (`## <AlertName>`), and every `## Portico...` section of RUNBOOK.md is an alert;
- every alert has a `dashboard` annotation `/d/<uid>?viewPanel=<id>` naming a dashboard uid of
  dashboards/*.json and a (non-row) panel id of that dashboard;
- every alert appears in at least one alert_rule_test with a non-empty exp_alerts in tests/*.test.yml;
- lists the alerts that also have a negative (exp_alerts: []) case.
Exit status 1 on any problem.
"""
import glob
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "..", "portico-alerts.yml")
RUNBOOK = os.path.join(HERE, "..", "RUNBOOK.md")
DASHBOARDS = os.path.join(HERE, "..", "..", "dashboards", "*.json")
RUNBOOK_URL = re.compile(r"^https?://[^\s#]+#([\w-]+)$")
DASHBOARD_URL = re.compile(r"^/d/([\w-]+)\?viewPanel=(\d+)$")


def github_anchor(heading):
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_headings(path):
    """{anchor: heading text} of RUNBOOK.md (outside code fences; duplicates get -1, -2...)."""
    anchors, seen, fenced = {}, {}, False
    for line in open(path, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            base = github_anchor(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            anchors[base if n == 0 else "%s-%d" % (base, n)] = (len(m.group(1)), m.group(2))
    return anchors


def dashboard_panels(pattern):
    """{uid: {panel id: (type, title)}} over every dashboard file, rows' nested panels included."""
    out = {}
    for path in sorted(glob.glob(pattern)):
        board = json.load(open(path, encoding="utf-8"))
        panels, stack = {}, list(board.get("panels", []))
        while stack:
            p = stack.pop()
            panels[p.get("id")] = (p.get("type"), p.get("title"))
            stack.extend(p.get("panels") or [])
        out[board.get("uid")] = panels
    return out


problems = []
try:
    anchors = runbook_headings(RUNBOOK)
except OSError as e:
    anchors = {}
    problems.append("cannot read %s: %s" % (RUNBOOK, e))
boards = dashboard_panels(DASHBOARDS)
if not boards:
    problems.append("no dashboards found at %s" % DASHBOARDS)
alerts = []
for group in yaml.safe_load(open(ALERTS))["groups"]:
    for rule in group["rules"]:
        if "alert" not in rule:
            continue
        name = rule["alert"]
        alerts.append(name)
        if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
            problems.append(f"{name}: severity must be critical or warning")
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url", "dashboard"):
            if not ann.get(key):
                problems.append(f"{name}: missing annotation {key}")
        m = RUNBOOK_URL.match(ann.get("runbook_url") or "")
        if ann.get("runbook_url") and not m:
            problems.append(f"{name}: runbook_url {ann['runbook_url']!r} is not http(s)://<base>#<anchor>")
        elif m and m.group(1) not in anchors:
            problems.append(f"{name}: runbook anchor #{m.group(1)} has no heading in RUNBOOK.md")
        elif m and m.group(1) != github_anchor(name):
            problems.append(f"{name}: runbook anchor #{m.group(1)} is not the alert's own section "
                            f"#{github_anchor(name)}")
        d = DASHBOARD_URL.match(ann.get("dashboard") or "")
        if ann.get("dashboard") and not d:
            problems.append(f"{name}: dashboard {ann['dashboard']!r} is not /d/<uid>?viewPanel=<id>")
        elif d and d.group(1) not in boards:
            problems.append(f"{name}: dashboard uid {d.group(1)!r} is not in dashboards/*.json")
        elif d and int(d.group(2)) not in boards[d.group(1)]:
            problems.append(f"{name}: dashboard {d.group(1)} has no panel id {d.group(2)}")
        elif d and boards[d.group(1)][int(d.group(2))][0] == "row":
            problems.append(f"{name}: panel {d.group(2)} of {d.group(1)} is a row")
if len(alerts) != len(set(alerts)):
    problems.append("duplicate alert names")
for anchor, (level, text) in sorted(anchors.items()):
    if level == 2 and text.startswith("Portico") and text not in alerts:
        problems.append(f"RUNBOOK.md section {text!r} names no alert")

positive, negative = {}, set()
for path in sorted(glob.glob(os.path.join(HERE, "*.test.yml"))):
    for test in yaml.safe_load(open(path))["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                positive.setdefault(case["alertname"], os.path.basename(path))
            else:
                negative.add(case["alertname"])

unknown = sorted((set(positive) | negative) - set(alerts))
if unknown:
    problems.append(f"tests name alerts that do not exist: {unknown}")
missing = [a for a in alerts if a not in positive]
for a in missing:
    problems.append(f"{a}: no test makes it fire")

print(f"{len(alerts)} alerts; {len(alerts) - len(missing)} fire in a test; "
      f"{len(negative & set(alerts))} also have a negative case; "
      f"runbook: {len(anchors)} headings; dashboards: {', '.join(sorted(boards))}")
for a in alerts:
    print(f"  {'ok  ' if a in positive else 'MISS'} {a:45} {positive.get(a, '-'):26} {'neg' if a in negative else ''}")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
