#!/usr/bin/env python3
"""Self-check for the Portico alert rules (run from anywhere; needs PyYAML).

- every alert has labels.severity in {critical, warning} and summary + description annotations;
- every alert appears in at least one alert_rule_test with a non-empty exp_alerts in tests/*.test.yml;
- lists the alerts that also have a negative (exp_alerts: []) case.
Exit status 1 on any problem.
"""
import glob
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "..", "portico-alerts.yml")

problems = []
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
        for key in ("summary", "description"):
            if not ann.get(key):
                problems.append(f"{name}: missing annotation {key}")
if len(alerts) != len(set(alerts)):
    problems.append("duplicate alert names")

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
      f"{len(negative & set(alerts))} also have a negative case")
for a in alerts:
    print(f"  {'ok  ' if a in positive else 'MISS'} {a:45} {positive.get(a, '-'):26} {'neg' if a in negative else ''}")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
