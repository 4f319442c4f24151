"""Checks an end-to-end run: the collector's file-exporter output against what the demo
app sent (--record). Exits non-zero on any difference, and prints one closing line.

usage: check.py SENT.json TRACES.jsonl VIOLATIONS.jsonl   (the connector: log records)
       check.py SENT.json TRACES.jsonl                    (the processor: violation spans)"""

import json
import sys



def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def attrs(kvs):
    out = {}
    for kv in kvs or []:
        v = kv.get("value", {})
        if "stringValue" in v:
            out[kv["key"]] = v["stringValue"]
        elif "intValue" in v:
            out[kv["key"]] = int(v["intValue"])
        elif "doubleValue" in v:
            out[kv["key"]] = float(v["doubleValue"])
        elif "boolValue" in v:
            out[kv["key"]] = v["boolValue"]
        elif "arrayValue" in v:
            out[kv["key"]] = [x.get("stringValue") for x in v["arrayValue"].get("values", [])]
    return out


def main(record_path, traces_path, violations_path=None):
    sent = json.load(open(record_path))
    problems = []
    violation_spans = []

    # Every span the app sent came out of the traces pipeline, unchanged.
    out_spans = {}
    for batch in lines(traces_path):
        for rs in batch.get("resourceSpans", []):
            service = attrs(rs.get("resource", {}).get("attributes")).get("service.name")
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    if violations_path is None and s.get("name") == "betrace.violation":
                        violation_spans.append(s)
                        continue
                    out_spans[(s["traceId"], s["spanId"])] = (s, service)
    for s in sent["spans"]:
        got = out_spans.get((s["trace_id"], s["span_id"]))
        if got is None:
            problems.append(f"span {s['name']} {s['span_id']} of trace {s['trace_id']} did not come out")
            continue
        span, service = got
        if span["name"] != s["name"] or service != s["service"] or span.get("parentSpanId", "") != s["parent_span_id"] or attrs(span.get("attributes")) != s["attributes"]:
            problems.append(f"span {s['span_id']} changed on its way: {span}")
    extra = set(out_spans) - {(s["trace_id"], s["span_id"]) for s in sent["spans"]}
    if extra:
        problems.append(f"{len(extra)} spans came out that the app did not send")

    # Exactly the expected violations arrived as log records, with the spec's fields.
    expected = {(e["trace_id"], e["rule_id"]) for e in sent["expected"]}
    arrived = set()
    span_ids_of = {}
    for s in sent["spans"]:
        span_ids_of.setdefault(s["trace_id"], set()).add(s["span_id"])
    for s in violation_spans:
        a = attrs(s.get("attributes"))
        key = (s.get("traceId"), a.get("betrace.rule.id"))
        arrived.add(key)
        if s.get("parentSpanId") not in span_ids_of.get(s.get("traceId"), ()):
            problems.append(f"{key}: the violation span's parent {s.get('parentSpanId')} is not a span of the trace")
        for k in ("betrace.rule.name", "betrace.rule.severity", "betrace.violation.span_ids"):
            if not a.get(k):
                problems.append(f"{key}: missing {k}")
    for batch in lines(violations_path) if violations_path else []:
        for rl in batch.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                if sl.get("scope", {}).get("name") != "betrace":
                    problems.append(f"scope {sl.get('scope')}")
                for r in sl.get("logRecords", []):
                    a = attrs(r.get("attributes"))
                    key = (r.get("traceId"), a.get("betrace.rule.id"))
                    arrived.add(key)
                    if r.get("eventName") != "betrace.violation":
                        problems.append(f"{key}: eventName {r.get('eventName')}")
                    if r.get("spanId") not in span_ids_of.get(r.get("traceId"), ()):
                        problems.append(f"{key}: spanId {r.get('spanId')} is not a span of the trace")
                    sev = a.get("betrace.rule.severity")
                    if r.get("severityText") != sev or r.get("severityNumber") != {"critical": 21, "high": 17, "medium": 13, "low": 10, "info": 9}.get(sev):
                        problems.append(f"{key}: severity {r.get('severityText')} {r.get('severityNumber')}")
                    for k in ("betrace.rule.name", "betrace.signal.type", "betrace.violation.span_ids"):
                        if not a.get(k):
                            problems.append(f"{key}: missing {k}")
                    if a.get("betrace.mode") != "live" or not r.get("body", {}).get("stringValue"):
                        problems.append(f"{key}: mode {a.get('betrace.mode')} body {r.get('body')}")
    for k in sorted(expected - arrived):
        problems.append(f"expected violation did not arrive: {k}")
    for k in sorted(arrived - expected):
        problems.append(f"unexpected violation: {k}")

    traces = len({s["trace_id"] for s in sent["spans"]})
    for p in problems[:30]:
        print("e2e: " + p)
    status = "ok" if not problems else f"FAILED ({len(problems)} problems)"
    how = "as log records" if violations_path else "as violation spans"
    print(f"e2e {status} ({how}): {traces} traces and {len(sent['spans'])} spans sent, {len(expected)} violations expected, "
          f"{len(arrived & expected)} arrived, {len(arrived - expected)} unexpected; "
          f"{len(sent['spans']) - sum(1 for p in problems if p.startswith('span '))} spans passed through unchanged")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
