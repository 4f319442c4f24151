"""Checks that examples/alerts/betrace.rules.yaml and its promtool test speak of the series
the components really export, and route the rules the library really has:

1. every otelcol_…_betrace_… metric name in the rules and in the test's input series
   (an alternation such as otelcol_(connector|processor)_betrace_(a|b) is expanded) is an
   instrument of the component's documentation.md, generated from its metadata.yaml — so
   renaming an instrument breaks this check until the rules follow;
2. with METRICS.txt (a scrape of a running collector's :8888/metrics with the connector,
   as `make e2e` saves it): every connector name the rules use is a sample name there,
   exactly as written, and every label the rules read off those series is a label there;
3. the betrace:rule_info series (severity and owner of each rule, for routing) name rules
   of examples/rules with the severity and compliance framework the engine reads from them
   (`betrace test --json`: the signals of the rules' own examples), and list every
   critical rule and every rule with a compliance framework.

usage: names.py RULES.yaml TEST.yaml BETRACE_BINARY [METRICS.txt]"""

import itertools
import json
import re
import subprocess
import sys

DOCS = {
    "connector": "go-shim/connector/betraceconnector/documentation.md",
    "processor": "go-shim/processor/betraceprocessor/documentation.md",
}
NAME = re.compile(r"otelcol_(?:\([a-z_|]+\)|[a-z_])+")


def expand(name):
    """otelcol_(connector|processor)_betrace_(x|y) → the four names it stands for."""
    parts = re.split(r"\(([a-z_|]+)\)", name)
    choices = [[p] if i % 2 == 0 else p.split("|") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def names_in(text):
    out = set()
    for m in NAME.finditer(text):
        out.update(n for n in expand(m.group(0)) if "_betrace_" in n)
    return out


def documented():
    out = {}
    for kind, path in DOCS.items():
        out[kind] = set(re.findall(r"^### (otelcol_\w+)", open(path).read(), re.M))
        if len(out[kind]) < 20:
            sys.exit(f"names: {path} lists {len(out[kind])} instruments")
    return out


def library(betrace):
    """rule id → (severity, compliance framework or None), as the engine reads examples/rules."""
    run = subprocess.run([betrace, "test", "--json", "examples/rules"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"names: betrace test examples/rules failed:\n{run.stderr[-2000:]}")
    rules, ids = {}, set()
    for line in run.stdout.splitlines():
        o = json.loads(line)
        ids.add(o["rule_id"])
        s = o.get("signal")
        if s:
            rules[s["rule_id"]] = (s["severity"], (s.get("compliance") or {}).get("framework"))
    if ids - set(rules):
        sys.exit(f"names: rules without an example that fires, so of unknown severity: {sorted(ids - set(rules))}")
    return rules


def main(rules_path, test_path, betrace, metrics_path=None):
    rules_text = open(rules_path).read()
    test_text = open(test_path).read()
    docs = documented()
    problems = []

    used = names_in(rules_text)
    fed = names_in(test_text)
    if len(used) < 10:
        problems.append(f"{rules_path} uses only {sorted(used)}")
    for where, names in ((rules_path, used), (test_path, fed)):
        for n in sorted(names):
            kind = n.split("_")[1]
            if n not in docs.get(kind, ()):
                problems.append(f"{where}: {n} is not an instrument of {DOCS.get(kind, kind)}")
    # The test must feed every series the rules read, for the connector and the processor.
    for n in sorted(used - fed):
        problems.append(f"{test_path} has no input series {n}, which {rules_path} reads")

    if metrics_path:
        scraped = open(metrics_path).read()
        samples = set(re.findall(r"^(otelcol_\w+)[{ ]", scraped, re.M))
        labels = set(re.findall(r"[{,](\w+)=\"", scraped))
        for n in sorted(x for x in used if x.startswith("otelcol_connector_")):
            if n not in samples:
                problems.append(f"{n} is not a series of the running collector (its :8888/metrics has "
                                f"{sorted(s for s in samples if s.startswith('otelcol_connector_'))[:5]}…)")
        read = set()
        for group in re.findall(r"\b(?:by|on|group_left|without)\s*\(([^)]*)\)", rules_text):
            read.update(x.strip() for x in group.split(",") if x.strip())
        read.update(re.findall(r"\$labels\.(\w+)", rules_text))
        # job and instance are the scrape's; the routing labels come from betrace:rule_info.
        for label in sorted(read - {"job", "instance", "betrace_rule_severity", "compliance_framework", "owner"}):
            if label not in labels:
                problems.append(f"label {label} is not a label of the running collector's series")

    # Routing labels against the library.
    info = {}
    for m in re.finditer(r"record: betrace:rule_info, expr: vector\(1\), labels: \{([^}]*)\}", rules_text):
        labels = dict(kv.split(": ", 1) for kv in (x.strip() for x in m.group(1).split(",")))
        info[labels["betrace_rule_id"]] = (labels.get("betrace_rule_severity"), labels.get("compliance_framework"))
    lib = library(betrace)
    for rule, got in sorted(info.items()):
        if rule not in lib:
            problems.append(f"betrace:rule_info names {rule}, which is not a rule of examples/rules")
        elif got != lib[rule]:
            problems.append(f"betrace:rule_info gives {rule} {got}, the rule says {lib[rule]}")
    for rule, (severity, framework) in sorted(lib.items()):
        if (severity == "critical" or framework) and rule not in info:
            problems.append(f"{rule} ({severity}, {framework}) is not in betrace:rule_info: it would not page or reach its owner")

    for p in problems:
        print("alerts: " + p)
    status = "ok" if not problems else f"FAILED ({len(problems)} problems)"
    print(f"alerts {status}: {len(used)} metric names in the rules, each an instrument of documentation.md"
          + (", each on the running collector's :8888/metrics" if metrics_path else "")
          + f"; {len(info)} rules routed, as {len(lib)} library rules say")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
