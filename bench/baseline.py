#!/usr/bin/env python3
"""The baseline a user would write by hand: read the collector file exporter's JSON lines,
group spans by trace, and check five of the playbook's rules in plain Python.

    python3 bench/baseline.py FILE_OR_DIR...

Prints one JSON object per violation ({"trace_id", "rule_id"}) and a count on stderr.
The rules, as examples/rules states them:
  payment-requires-inventory       when payment.charge, always inventory.reserve before it
  payment-retry-idempotent         when a charge has attempt > 1, all charges share one
                                   payment_intent_id
  high-value-payment-fraud-check   when a charge has amount > 1000, always payment.fraud_check
  tenant-queries-filter-by-tenant  never a tenant_data query without tenant_filter
  soc2-admin-actions-audited       when admin.action, always audit.log
"""
import json
import os
import sys
from collections import defaultdict


def value(v):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return v["boolValue"]
    return None


def number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read(paths):
    traces = defaultdict(list)
    for path in paths:
        files = [path]
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path))
        for name in files:
            with open(name) as f:
                for line in f:
                    if not line.strip():
                        continue
                    batch = json.loads(line)
                    for rs in batch.get("resourceSpans", []):
                        resource = {a["key"]: value(a["value"]) for a in rs.get("resource", {}).get("attributes", [])}
                        for ss in rs.get("scopeSpans", []):
                            for span in ss.get("spans", []):
                                attrs = dict(resource)
                                attrs.update({a["key"]: value(a["value"]) for a in span.get("attributes", [])})
                                traces[span["traceId"]].append({
                                    "name": span["name"],
                                    "start": int(span["startTimeUnixNano"]),
                                    "attrs": attrs,
                                })
    return traces


def check(spans):
    by_name = defaultdict(list)
    for s in spans:
        by_name[s["name"]].append(s)
    charges = by_name["payment.charge"]
    found = []

    if charges:
        reserves = by_name["inventory.reserve"]
        if not reserves or min(s["start"] for s in reserves) >= min(s["start"] for s in charges):
            found.append("payment-requires-inventory")

    if any((number(s["attrs"].get("attempt")) or 0) > 1 for s in charges):
        intents = {s["attrs"]["payment_intent_id"] for s in charges if "payment_intent_id" in s["attrs"]}
        if len(intents) != 1:
            found.append("payment-retry-idempotent")

    if any((number(s["attrs"].get("amount")) or 0) > 1000 for s in charges):
        if not by_name["payment.fraud_check"]:
            found.append("high-value-payment-fraud-check")

    for q in by_name["database.query"]:
        table = q["attrs"].get("table")
        if isinstance(table, str) and "tenant_data" in table and q["attrs"].get("tenant_filter") is not True:
            found.append("tenant-queries-filter-by-tenant")
            break

    if by_name["admin.action"] and not by_name["audit.log"]:
        found.append("soc2-admin-actions-audited")
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    traces = read(sys.argv[1:])
    spans = violations = 0
    out = sys.stdout
    for trace_id, trace_spans in traces.items():
        spans += len(trace_spans)
        for rule in check(trace_spans):
            violations += 1
            out.write(json.dumps({"trace_id": trace_id.lower(), "rule_id": rule}) + "\n")
    print(f"{len(traces)} traces, {spans} spans, {violations} violations", file=sys.stderr)


if __name__ == "__main__":
    main()
