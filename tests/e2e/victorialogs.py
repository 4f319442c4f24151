"""Checks the violations that reached a real VictoriaLogs over OTLP/HTTP, queried back with
LogsQL over its HTTP API (/select/logsql/query), as a user would find them.

* Every violation the demo shop injected (SENT.json, --record) is there exactly once, and
  nothing else is.
* Each record has the layout docs/deploy.md ("A violation in the logs backend") gives:
  trace_id and span_id (the first trigger span), _time (its start), severity_text (the rule's severity word)
  and severity_number, event_name betrace.violation, the message as the log message
  (_msg), betrace.rule.id / .name / .severity, betrace.signal.type, betrace.mode live,
  betrace.trace.complete, betrace.violation.span_ids, betrace.compliance.* and one
  betrace.context.<key> per context key, and nothing more of them. The values are
  checked against `betrace replay` of the same traces (REPLAY.jsonl): the same engine run
  offline, so each field is compared with what it should be, not merely present.
* The queries docs/deploy.md gives a user — violations of rule X in the last hour,
  everything about trace T, violations per rule — read from that page and run as written
  (the page's example rule and trace replaced by this run's): each finds exactly its
  violations, and the trace query finds nothing for a trace that broke no rule.

usage: victorialogs.py VICTORIALOGS_URL SENT.json REPLAY.jsonl"""

import calendar
import json
import re
import sys
import time
import urllib.parse
import urllib.request

SEVERITY_NUMBER = {"critical": 21, "high": 17, "medium": 13, "low": 10, "info": 9}
DOCS = "docs/deploy.md"


def query(url, logsql, limit=10000):
    body = urllib.parse.urlencode({"query": logsql, "limit": str(limit)}).encode()
    with urllib.request.urlopen(url + "/select/logsql/query", body, timeout=30) as r:
        return [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]


def nanos(rfc3339):
    """2024-11-25T08:42:17.384Z (any number of fraction digits) → nanoseconds since 1970."""
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 10**9 + int((frac + "000000000")[:9])


def doc_queries():
    """The LogsQL lines of docs/deploy.md's code blocks tagged logsql, with the example rule
    id and trace id they name."""
    text = open(DOCS).read()
    lines = [l.strip() for block in re.findall(r"```logsql\n(.*?)```", text, re.S)
             for l in block.splitlines() if l.strip() and not l.strip().startswith("#")]
    by_rule = [l for l in lines if "betrace.rule.id:=" in l]
    by_trace = [l for l in lines if l.startswith("trace_id:=")]
    per_rule = [l for l in lines if "| stats by (betrace.rule.id)" in l]
    if len(by_rule) != 1 or len(by_trace) != 1 or len(per_rule) != 1:
        sys.exit(f"victorialogs: {DOCS} should have one rule query, one trace query and one count per rule in ```logsql blocks, found {lines}")
    rule = re.search(r'betrace\.rule\.id:="([^"]+)"', by_rule[0])
    trace = re.search(r'trace_id:="?([0-9a-f]{32})"?', by_trace[0])
    if not rule or not trace:
        sys.exit(f"victorialogs: cannot find the example rule or trace in {by_rule[0]!r} {by_trace[0]!r}")
    return by_rule[0], rule.group(1), by_trace[0], trace.group(1), per_rule[0]


def main(url, sent_path, replay_path):
    url = url.rstrip("/")
    sent = json.load(open(sent_path))
    expected = {(e["trace_id"], e["rule_id"]) for e in sent["expected"]}
    replayed = {}
    for line in open(replay_path):
        if line.strip():
            s = json.loads(line)
            replayed[(s["trace_id"], s["rule_id"])] = s
    problems = []
    if set(replayed) != expected:
        problems.append(f"replay of the sent traces found {sorted(set(replayed))}, the shop injected {sorted(expected)}")

    # Data ingested in the last second becomes searchable at the next flush: force it, then
    # wait (bounded) until the count stops changing.
    everything = 'event_name:="betrace.violation"'
    records, last = [], -1
    for _ in range(40):
        urllib.request.urlopen(url + "/internal/force_flush", timeout=10).read()
        records = query(url, everything)
        if len(records) == last and len(records) >= len(expected):
            break
        last = len(records)
        time.sleep(0.5)

    seen, exact = {}, set()
    for r in records:
        key = (r.get("trace_id"), r.get("betrace.rule.id"))
        seen[key] = seen.get(key, 0) + 1
        want = replayed.get(key)
        if want is None:
            continue
        before = len(problems)
        fields = {
            "span_id": want["span_id"],
            "severity_text": want["severity"],
            "severity_number": str(SEVERITY_NUMBER[want["severity"]]),
            "event_name": "betrace.violation",
            "_msg": want["message"],
            "betrace.rule.name": want["rule_name"],
            "betrace.rule.severity": want["severity"],
            "betrace.signal.type": want["signal_type"],
            "betrace.mode": "live",
            "betrace.trace.complete": "true" if want["complete"] else "false",
            "scope.name": "betrace",
        }
        for k, v in (want.get("context") or {}).items():
            fields["betrace.context." + k] = v if isinstance(v, str) else json.dumps(v)
        for k, v in (want.get("compliance") or {}).items():
            fields["betrace.compliance." + k] = v
        if nanos(r.get("_time", "1970-01-01T00:00:00Z")) != nanos(want["time"]):
            problems.append(f"{key}: _time is {r.get('_time')}, the first trigger span started at {want['time']}")
        for k, v in fields.items():
            if r.get(k) != v:
                problems.append(f"{key}: {k} is {r.get(k)!r}, should be {v!r}")
        extra = sorted(k for k in r if k.startswith(("betrace.context.", "betrace.compliance.")) and k not in fields)
        if extra:
            problems.append(f"{key}: fields replay does not have: {extra}")
        span_ids = r.get("betrace.violation.span_ids", "")
        if want["span_id"] not in span_ids or set(json.loads(span_ids)) != set(want["span_ids"]):
            problems.append(f"{key}: betrace.violation.span_ids {span_ids!r}, replay {want['span_ids']}")
        if len(problems) == before:
            exact.add(key)
    for k in sorted(expected - set(seen)):
        problems.append(f"expected violation not in VictoriaLogs: {k}")
    for k in sorted(set(seen) - expected):
        problems.append(f"violation in VictoriaLogs the shop did not inject: {k}")
    for k, n in sorted(seen.items()):
        if n != 1:
            problems.append(f"{k}: {n} records in VictoriaLogs, should be 1")

    # The user's queries, as docs/deploy.md writes them.
    rule_q, doc_rule, trace_q, doc_trace, per_rule_q = doc_queries()
    for rule in sorted({r for _, r in expected}):
        q = rule_q.replace(doc_rule, rule)
        got = sorted(r.get("trace_id") for r in query(url, q))
        want = sorted(t for t, r in expected if r == rule)
        if got != want:
            problems.append(f"{q!r} found traces {got}, should find {want}")
    for trace in sorted({t for t, _ in expected}):
        q = trace_q.replace(doc_trace, trace)
        got = sorted(r.get("betrace.rule.id") for r in query(url, q))
        want = sorted(r for t, r in expected if t == trace)
        if got != want:
            problems.append(f"{q!r} found rules {got}, should find {want}")
    counts = {r.get("betrace.rule.id"): int(r.get("violations", -1)) for r in query(url, per_rule_q)}
    want_counts = {}
    for _, rule in expected:
        want_counts[rule] = want_counts.get(rule, 0) + 1
    if counts != want_counts:
        problems.append(f"{per_rule_q!r} counted {counts}, should count {want_counts}")
    clean = sorted({s["trace_id"] for s in sent["spans"]} - {t for t, _ in expected})
    if not clean:
        problems.append("the shop sent no trace without a violation: the trace query's negative case is untested")
    for trace in clean[:5]:
        q = trace_q.replace(doc_trace, trace)
        got = query(url, q)
        if got:
            problems.append(f"{q!r} (a trace that broke no rule) found {len(got)} records")

    for p in problems[:30]:
        print("e2e: " + p)
    status = "ok" if not problems else f"FAILED ({len(problems)} problems)"
    print(f"e2e {status} (VictoriaLogs, LogsQL): {len(records)} violation records queried back, {len(expected)} injected, "
          f"{len(exact & expected)} found with every field as replay has it; the rule query for "
          f"{len({r for _, r in expected})} rules and the trace query for {len({t for t, _ in expected})} traces "
          f"(and {min(len(clean), 5)} clean ones) as {DOCS} writes them")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:4]))
