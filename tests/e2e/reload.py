"""Hot reload, end to end: a real collector whose betrace connector re-reads its rule
directory. A good edit applies to the traffic that follows; a bad edit is refused with its
location in the collector's log while the previous rules keep running.

usage: reload.py COLLECTOR_BINARY OUT_DIR"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

RULE = """rules:
  - id: {id}
    name: Probe {id}
    severity: high
    condition: {condition}
"""
BAD = """rules:
  - id: probe-broken
    name: A careless edit
    condition: when { probe.two } always { probe.three.where(x >>= 1) }
"""


def send(trace_id, names):
    spans = [
        {"traceId": trace_id, "spanId": f"{i + 1:016x}", "name": n,
         "startTimeUnixNano": str(time.time_ns()), "endTimeUnixNano": str(time.time_ns() + 1000)}
        for i, n in enumerate(names)
    ]
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "reload-probe"}}]},
        "scopeSpans": [{"spans": spans}]}]}).encode()
    req = urllib.request.Request("http://127.0.0.1:4318/v1/traces", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def wait_for(what, check, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"reload: timed out waiting for {what}")


def main(binary, out):
    rules = os.path.join(out, "reload-rules")
    os.makedirs(rules, exist_ok=True)
    rule_file = os.path.join(rules, "probe.yaml")
    with open(rule_file, "w") as f:
        f.write(RULE.format(id="probe-one", condition="probe.one"))
    log_path = os.path.join(out, "reload-collector.log")
    violations = os.path.join(out, "reload-violations.jsonl")
    log = open(log_path, "w")
    env = dict(os.environ, BETRACE_OUT=out)
    proc = subprocess.Popen([binary, "--config", "tests/e2e/reload.yaml"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", 4318), 0.2).close()
                return True
            except OSError:
                return proc.poll() is not None and sys.exit(open(log_path).read()[-3000:])
        wait_for("the collector", up)
        collector_log = lambda: open(log_path).read()

        send("a1" * 16, ["probe.one", "probe.two"])
        # A good edit: probe-one goes, probe-two comes.
        time.sleep(1.0)
        with open(rule_file + ".tmp", "w") as f:
            f.write(RULE.format(id="probe-two", condition="probe.two"))
        os.replace(rule_file + ".tmp", rule_file)
        wait_for("the good edit to load", lambda: collector_log().count("rules reloaded") >= 1)
        send("b2" * 16, ["probe.one", "probe.two"])
        # A bad edit: refused, located, and probe-two keeps running.
        time.sleep(1.0)
        with open(rule_file + ".tmp", "w") as f:
            f.write(BAD)
        os.replace(rule_file + ".tmp", rule_file)
        wait_for("the bad edit to be refused", lambda: "rules not reloaded" in collector_log())
        send("c3" * 16, ["probe.one", "probe.two"])
        time.sleep(1.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

    text = open(log_path).read()
    problems = []
    if "probe.yaml:4:" not in text or ">>=" not in text:
        problems.append("the refused edit's error does not name its file, line and column")
    # Re-read every 300 ms for about seven seconds: a log line per change, not per reload.
    if text.count("rules reloaded") != 1 or "probe-two" not in text.split("rules reloaded", 1)[1].split("\n", 1)[0]:
        problems.append(f"{text.count('rules reloaded')} 'rules reloaded' lines for one change (naming probe-two)")
    if text.count("rules not reloaded") != 1:
        problems.append(f"{text.count('rules not reloaded')} warnings for one bad edit left in place")
    got = set()
    for line in open(violations):
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    rule = next(a["value"]["stringValue"] for a in r["attributes"] if a["key"] == "betrace.rule.id")
                    got.add((r["traceId"], rule))
    want = {("a1" * 16, "probe-one"), ("b2" * 16, "probe-two"), ("c3" * 16, "probe-two")}
    if got != want:
        problems.append(f"signals {sorted(got)}, expected {sorted(want)}")
    if problems:
        print("\n".join(problems))
        print(text[-4000:])
        sys.exit(1)
    print("reload: a good edit applied to the traffic after it; a bad edit was refused, located, and the old rules kept running")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
