"""Checks that replay found exactly what the live connector found: the same (trace, rule)
pairs, each with the same trigger span and message. Exits non-zero on any difference.

usage: same_signals.py LIVE_VIOLATIONS.jsonl (collector log records) REPLAY.jsonl (betrace replay)"""

import json
import sys


def attrs(kvs):
    return {kv["key"]: kv.get("value", {}).get("stringValue") for kv in kvs or []}


def live(path):
    out = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            for rl in json.loads(line).get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    for r in sl.get("logRecords", []):
                        a = attrs(r.get("attributes"))
                        key = (r.get("traceId"), a.get("betrace.rule.id"))
                        out[key] = (r.get("spanId"), r.get("body", {}).get("stringValue"))
    return out


def replayed(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                s = json.loads(line)
                out[(s["trace_id"], s["rule_id"])] = (s["span_id"], s["message"])
    return out


def main(live_path, replay_path):
    a, b = live(live_path), replayed(replay_path)
    problems = []
    for k in sorted(set(a) - set(b)):
        problems.append(f"live only: {k}")
    for k in sorted(set(b) - set(a)):
        problems.append(f"replay only: {k}")
    for k in sorted(set(a) & set(b)):
        if a[k] != b[k]:
            problems.append(f"{k}: live {a[k]} replay {b[k]}")
    for p in problems[:30]:
        print("e2e: " + p)
    if not a:
        problems.append("no live signals: nothing was compared")
        print("e2e: no live signals: nothing was compared")
    status = "ok" if not problems else f"FAILED ({len(problems)} problems)"
    print(f"e2e {status}: replay from Jaeger found {len(b)} signals, the live connector {len(a)}; {len(set(a) & set(b))} the same")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
