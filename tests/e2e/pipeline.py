"""When the pipeline around BeTrace misbehaves, in a real collector (the ocb build of
go-shim/builder-config.yaml), as a platform engineer would meet it:

1. a logs exporter retrying a dead backend, without a sending queue: judging goes on at
   the idle timeout, SIGTERM exits promptly and cleanly, and the loss is counted and logged;
2. the processor's own violation spans sent on into a connector on the same pipeline: left
   alone (counted), never judged again, one signal per violation;
3. spans with an empty trace id or span id, which the receiver accepts: counted as invalid;
4. one trace larger than max_spans: judged early on what it had, counted and logged with
   its trace id, while the other traces held are left alone;
5. a configuration that would silently misbehave (`rules` and `rules_inline` together,
   max_trace_age below trace_idle_timeout): the collector refuses to start, saying why;
6. the processor listed in two pipelines whose receivers split a trace: one engine judges
   each trace whole (no false alarm for a reservation that came the other way) and each
   violation span goes down every pipeline that carried part of its trace.

usage: pipeline.py COLLECTOR_BINARY OUT_DIR"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

RULES = """rules:
  - id: payment-requires-inventory
    name: Payment requires an inventory reservation
    severity: critical
    condition: when { payment.charge } always { inventory.reserve }
"""

TELEMETRY = """
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: 8888
"""


def span(trace_id, span_id, name, parent=""):
    now = time.time_ns()
    return {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name,
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}


def send(spans, port=4318):
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "pipeline-probe"}}]},
        "scopeSpans": [{"spans": spans}]}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def metrics():
    text = urllib.request.urlopen("http://127.0.0.1:8888/metrics", timeout=5).read().decode()
    values = {}
    for m in re.finditer(r'^(otelcol_(?:connector|processor)_betrace_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.e+]+)$', text, re.M):
        values[m.group(1)] = values.get(m.group(1), 0) + float(m.group(2))
    return values


def wait_for(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    sys.exit(f"pipeline: timed out waiting for {what}")


class Collector:
    def __init__(self, binary, out, name, config):
        self.path = os.path.join(out, f"pipeline-{name}.yaml")
        with open(self.path, "w") as f:
            f.write(config)
        self.log_path = os.path.join(out, f"pipeline-{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "--config", self.path], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, BETRACE_OUT=out))

    def text(self):
        return open(self.log_path).read()

    def wait_listening(self):
        def up():
            if self.proc.poll() is not None:
                sys.exit("pipeline: the collector died:\n" + self.text()[-3000:])
            try:
                socket.create_connection(("127.0.0.1", 4318), 0.2).close()
                socket.create_connection(("127.0.0.1", 8888), 0.2).close()
                return True
            except OSError:
                return False
        wait_for("the collector", up)

    def stop(self):
        """SIGTERM; returns (seconds to exit, exit code)."""
        began = time.time()
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "killed after 60 s"
        self.log.close()
        return time.time() - began, code


def tid(n):
    return f"{n:032x}"


def sid(n):
    return f"{n:016x}"


def check(problems, ok, message):
    if not ok:
        problems.append(message)


def stalled_exporter(binary, out, problems):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there
    c = Collector(binary, out, "stall", f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
connectors:
  betrace:
    rules_inline: |
{indent(RULES, 6)}
    trace_idle_timeout: 1s
    max_trace_age: 10s
exporters:
  otlp/dead:
    endpoint: 127.0.0.1:{port}
    tls:
      insecure: true
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_elapsed_time: 60s
    sending_queue:
      enabled: false
service:{TELEMETRY}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [betrace]
    logs:
      receivers: [betrace]
      exporters: [otlp/dead]
""")
    c.wait_listening()
    # A first wave is judged and its delivery starts retrying; a second wave must still be
    # judged at its idle timeout.
    for n in range(1, 11):
        send([span(tid(0x5000 + n), sid(1), "payment.charge")])
    time.sleep(2)
    for n in range(11, 21):
        send([span(tid(0x5000 + n), sid(1), "payment.charge")])
    time.sleep(3)
    m = metrics()
    check(problems, m.get("otelcol_connector_betrace_traces_judged") == 20,
          f"stall: {m.get('otelcol_connector_betrace_traces_judged')} of 20 traces judged 3 s after the last arrived, with a 1 s idle timeout")
    took, code = c.stop()
    check(problems, took < 15, f"stall: SIGTERM took {took:.1f} s")
    check(problems, code == 0, f"stall: the collector exited {code}")
    check(problems, "shutdown ran out of time delivering signals" in c.text(),
          "stall: the undelivered signals at shutdown are not logged")
    print(f"pipeline: a dead backend behind a retrying exporter: {m.get('otelcol_connector_betrace_traces_judged', 0):.0f} of 20 traces judged on time; SIGTERM: exit {code} in {took:.1f} s")


def indent(text, n):
    return "\n".join(" " * n + line for line in text.splitlines())


# The processor sending violation spans, as the cases below configure it.
VIOLATION_SPANS_PROCESSOR = f"""  betrace:
    rules_inline: |
{indent(RULES, 6)}
    trace_idle_timeout: 300ms
    max_trace_age: 10s
    emit_violation_spans: true"""


def own_spans(binary, out, problems):
    violations = os.path.join(out, "pipeline-own-violations.jsonl")
    if os.path.exists(violations):
        os.remove(violations)
    c = Collector(binary, out, "own", f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
processors:
{VIOLATION_SPANS_PROCESSOR}
connectors:
  betrace:
    rules_inline: |
{indent(RULES, 6)}
    trace_idle_timeout: 300ms
    max_trace_age: 10s
exporters:
  file/violations:
    path: {violations}
    flush_interval: 100ms
service:{TELEMETRY}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [betrace]
      exporters: [betrace]
    logs:
      receivers: [betrace]
      exporters: [file/violations]
""")
    c.wait_listening()
    for n in range(1, 6):
        send([span(tid(0x6000 + n), sid(1), "payment.charge")])
    time.sleep(2)
    m = metrics()
    took, code = c.stop()
    records = 0
    for line in open(violations):
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                records += len(sl.get("logRecords", []))
    check(problems, records == 5, f"own spans: {records} violation records for 5 violations")
    check(problems, m.get("otelcol_connector_betrace_own_spans", 0) >= 5,
          f"own spans: {m.get('otelcol_connector_betrace_own_spans')} own spans counted, 5 sent back in")
    check(problems, m.get("otelcol_connector_betrace_late_spans", 0) == 0,
          f"own spans: {m.get('otelcol_connector_betrace_late_spans')} late spans (the violation spans were judged as late)")
    print(f"pipeline: the processor's violation spans into a connector: {m.get('otelcol_connector_betrace_own_spans', 0):.0f} own spans left alone, "
          f"{m.get('otelcol_connector_betrace_late_spans', 0):.0f} late spans, {records} records for 5 violations")


def limits_and_ids(binary, out, problems):
    c = Collector(binary, out, "limits", f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
connectors:
  betrace:
    rules_inline: |
{indent(RULES, 6)}
    trace_idle_timeout: 30s
    max_trace_age: 60s
    max_spans: 100
exporters:
  debug:
    verbosity: basic
service:{TELEMETRY}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [betrace]
    logs:
      receivers: [betrace]
      exporters: [debug]
""")
    c.wait_listening()
    # Ten small traces held, then one that grows past max_spans on its own.
    for n in range(1, 11):
        send([span(tid(0x7000 + n), sid(i + 1), "step") for i in range(3)])
    # 30 + 40 spans fit in 100; then 70 more of the big trace would make it 110 alone.
    big = tid(0xb16)
    first = 1
    for size in (40, 70, 50):
        send([span(big, sid(first + i), "bulk.item") for i in range(size)])
        first += size
    # Spans with an empty trace id and an empty span id.
    send([span("", sid(1), "no.trace.id"), span(tid(0x7100), "", "no.span.id")])
    time.sleep(1.5)
    m = metrics()
    took, code = c.stop()
    check(problems, m.get("otelcol_connector_betrace_traces_oversized") == 1,
          f"max_spans: {m.get('otelcol_connector_betrace_traces_oversized')} oversized traces counted, want 1")
    check(problems, m.get("otelcol_connector_betrace_traces_judged_early") == 1,
          f"max_spans: {m.get('otelcol_connector_betrace_traces_judged_early')} traces judged early; only the big one should be")
    check(problems, m.get("otelcol_connector_betrace_late_spans_unjudged") == 50,
          f"max_spans: {m.get('otelcol_connector_betrace_late_spans_unjudged')} of its later spans counted late, want 50")
    check(problems, big in c.text() and "larger than max_spans" in c.text(),
          "max_spans: the log does not name the oversized trace")
    check(problems, m.get("otelcol_connector_betrace_invalid_spans") == 2,
          f"empty ids: {m.get('otelcol_connector_betrace_invalid_spans')} invalid spans counted, want 2")
    print(f"pipeline: a trace past max_spans: {m.get('otelcol_connector_betrace_traces_oversized', 0):.0f} counted oversized, "
          f"{m.get('otelcol_connector_betrace_traces_judged_early', 0):.0f} judged early; spans with empty ids: {m.get('otelcol_connector_betrace_invalid_spans', 0):.0f} counted invalid")


def refused_configs(binary, out, problems):
    base = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
connectors:
  betrace:
{keys}
exporters:
  debug: {{}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [betrace]
    logs:
      receivers: [betrace]
      exporters: [debug]
"""
    rules_file = os.path.join(out, "pipeline-rules.yaml")
    with open(rules_file, "w") as f:
        f.write(RULES)
    cases = {
        "both": (f"    rules: [{rules_file}]\n    rules_inline: |\n{indent(RULES, 6)}", "both `rules` and `rules_inline`"),
        "age": (f"    rules: [{rules_file}]\n    trace_idle_timeout: 10s\n    max_trace_age: 5s", "max_trace_age (5s) is below trace_idle_timeout (10s)"),
    }
    for name, (keys, want) in cases.items():
        c = Collector(binary, out, f"refused-{name}", base.format(keys=keys))
        try:
            code = c.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            c.stop()
            problems.append(f"config {name}: the collector started")
            continue
        c.log.close()
        check(problems, code != 0 and want in c.text(), f"config {name}: exit {code}, log lacks {want!r}:\n{c.text()[-800:]}")
    print("pipeline: `rules` with `rules_inline`, and max_trace_age below the idle timeout: checked at start")


def violation_traces(path):
    """The trace ids of the violation spans in a file exporter's traces output."""
    found = []
    if not os.path.exists(path):
        return found
    for line in open(path):
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                found += [sp["traceId"] for sp in ss.get("spans", []) if sp["name"] == "betrace.violation"]
    return sorted(found)


def two_pipelines(binary, out, problems):
    files = {p: os.path.join(out, f"pipeline-two-{p}.jsonl") for p in "ab"}
    for f in files.values():
        if os.path.exists(f):
            os.remove(f)
    c = Collector(binary, out, "two", f"""
receivers:
  otlp/a:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
  otlp/b:
    protocols:
      http:
        endpoint: 127.0.0.1:4319
processors:
{VIOLATION_SPANS_PROCESSOR}
exporters:
  file/a:
    path: {files["a"]}
    flush_interval: 100ms
  file/b:
    path: {files["b"]}
    flush_interval: 100ms
service:{TELEMETRY}
  pipelines:
    traces/a:
      receivers: [otlp/a]
      processors: [betrace]
      exporters: [file/a]
    traces/b:
      receivers: [otlp/b]
      processors: [betrace]
      exporters: [file/b]
""")
    c.wait_listening()
    send([span(tid(0x7001), sid(1), "payment.charge")], 4318)     # only through a
    send([span(tid(0x7002), sid(1), "payment.charge")], 4319)     # only through b
    send([span(tid(0x7003), sid(1), "payment.charge")], 4318)     # split, reserved through b:
    send([span(tid(0x7003), sid(2), "inventory.reserve", sid(1))], 4319)  # no violation
    send([span(tid(0x7004), sid(1), "payment.charge")], 4318)     # split, no reservation:
    send([span(tid(0x7004), sid(2), "checkout", sid(1))], 4319)   # a violation in both
    time.sleep(1.5)
    m = metrics()
    took, code = c.stop()
    got = {p: violation_traces(f) for p, f in files.items()}
    want = {"a": [tid(0x7001), tid(0x7004)], "b": [tid(0x7002), tid(0x7004)]}
    check(problems, got == want, f"two pipelines: violation spans {got}, want {want}")
    judged = m.get("otelcol_processor_betrace_traces_judged", 0)
    check(problems, judged == 4, f"two pipelines: {judged} traces judged, want 4 (one engine, each trace once)")
    check(problems, code == 0, f"two pipelines: exit {code}")
    print(f"pipeline: the processor in two pipelines that split traces: {judged:.0f} traces judged by one engine, "
          f"violation spans {len(got['a'])} down a and {len(got['b'])} down b (want 2 and 2, none for the trace reserved the other way)")


def main(binary, out):
    problems = []
    two_pipelines(binary, out, problems)
    stalled_exporter(binary, out, problems)
    own_spans(binary, out, problems)
    limits_and_ids(binary, out, problems)
    refused_configs(binary, out, problems)
    if problems:
        print("\n".join("pipeline FAILED: " + p for p in problems))
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
