"""Two tiers, on loopback, with real collectors (the ocb build of go-shim/builder-config.yaml)
and the configurations of examples/deploy: a first tier (tier1.yaml) whose loadbalancing
exporter routes every span by trace id (static resolver) to three second-tier collectors
(tier2.yaml) running the betrace connector and processor — and, fed the same traffic by
the first tier, one single collector with tier2.yaml as the reference.

Traffic: a corpus with known injected violations (betrace-corpus, sent by the load
generator, bench/loadgen) and the demo shop (the OpenTelemetry Python SDK).

Checks: every injected violation arrives exactly once across the three backends, as a log
record (connector) and as a violation span (processor); nothing arrives twice; and the
backends' signals equal the single collector's, field by field (detection time aside).

With --restart, the failure a user will meet instead: one backend is stopped mid-run
(SIGTERM, or SIGKILL with --kill) and started again; the run measures what happened to the
traces it held and to spans routed to it while it was down, and prints the figures
docs/deploy.md quotes. Without storage it checks only what must hold even then (no signal
twice). With --storage the backends run examples/deploy/tier2-storage.yaml too (the
file_storage extension), and the restart must lose nothing: exactly the single collector's
signals, none missing, none extra, none twice.

usage: scale.py COLLECTOR OUT [--traces N] [--restart [--kill]] [--storage]"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BACKENDS = 3


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tier2(name, receiver, metrics_port, out):
    """examples/deploy/tier2.yaml's environment for a backend called `name` (and
    tier2-storage.yaml's: a storage directory of its own)."""
    return {"BETRACE_RULES": f"{ROOT}/examples/rules", "BETRACE_OTLP_GRPC": str(receiver), "BETRACE_OUT": out,
            "BETRACE_NAME": name, "BETRACE_METRICS_PORT": str(metrics_port),
            "BETRACE_STORAGE": os.path.join(out, f"storage-{name}")}


# The test's addition to examples/deploy/tier1.yaml: the same traffic also to one single
# collector, the reference.
REFERENCE = """
exporters:
  otlp_grpc/reference:
    endpoint: 127.0.0.1:${env:BETRACE_REFERENCE}
    tls:
      insecure: true
service:
  pipelines:
    traces:
      exporters: [load_balancing, otlp_grpc/reference]
"""


class Collector:
    def __init__(self, binary, out, name, configs, env, wait_port):
        self.binary, self.out, self.name, self.wait_port = binary, out, name, wait_port
        self.configs, self.env = configs, dict(os.environ, **env)
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.log_path = os.path.join(self.out, f"{self.name}.{self.starts}.log")
        self.log = open(self.log_path, "w")
        args = [self.binary]
        for c in self.configs:
            args += ["--config", c]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"scale: {self.name} died:\n" + open(self.log_path).read()[-3000:])
            try:
                socket.create_connection(("127.0.0.1", self.wait_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"scale: {self.name} did not listen on {self.wait_port}")

    def stop(self, sig=signal.SIGTERM):
        began = time.time()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=120)
        self.log.close()
        return time.time() - began, code


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("otelcol_connector_betrace_") and " " in line:
            name = line.split("{")[0].split(" ")[0].removesuffix("_total")
            out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return out


def attrs(kvs):
    out = {}
    for kv in kvs or []:
        v = kv.get("value", {})
        out[kv["key"]] = json.dumps(v, sort_keys=True)
    return out


# What may differ between two collectors judging the same trace: when it was judged, and
# whether that was live or at shutdown.
VOLATILE = {"betrace.mode"}


def documents(path):
    """The JSON documents of a file exporter's output. A collector killed mid-write leaves a
    partial line, which the next instance's first document follows on the same line: each
    line is read as a sequence of documents, and what does not parse is skipped."""
    decoder = json.JSONDecoder()
    for line in open(path):
        i, line = 0, line.strip()
        while i < len(line):
            try:
                doc, end = decoder.raw_decode(line, i)
            except json.JSONDecodeError:
                nxt = line.find('{"resource', i + 1)
                if nxt < 0:
                    break
                i = nxt
                continue
            yield doc
            i = end


def records(path):
    """(trace, rule) -> [record fields], from a file exporter's log records."""
    out = {}
    if not os.path.exists(path):
        return out
    for batch in documents(path):
        for rl in batch.get("resourceLogs", []):
            resource = attrs(rl.get("resource", {}).get("attributes"))
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    a = attrs(r.get("attributes"))
                    key = (r.get("traceId"), json.loads(a["betrace.rule.id"])["stringValue"])
                    fields = {
                        "spanId": r.get("spanId"), "severity": r.get("severityNumber"), "body": r.get("body"),
                        "time": r.get("timeUnixNano"), "event": r.get("eventName"), "resource": resource,
                        "attributes": {k: v for k, v in a.items() if k not in VOLATILE},
                    }
                    out.setdefault(key, []).append(fields)
    return out


def violation_spans(path):
    """(trace, rule) -> [span fields], from a file exporter's traces (only betrace.violation spans)."""
    out = {}
    if not os.path.exists(path):
        return out
    for batch in documents(path):
        for rs in batch.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    if s.get("name") != "betrace.violation":
                        continue
                    a = attrs(s.get("attributes"))
                    key = (s.get("traceId"), json.loads(a["betrace.rule.id"])["stringValue"])
                    fields = {"spanId": s.get("spanId"), "parent": s.get("parentSpanId"), "start": s.get("startTimeUnixNano"),
                              "status": s.get("status"), "attributes": {k: v for k, v in a.items() if k not in VOLATILE}}
                    out.setdefault(key, []).append(fields)
    return out


def merged(parts):
    out = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).extend(v)
    return out


def compare(what, backends, reference, expected, problems):
    twice = {k: len(v) for k, v in backends.items() if len(v) > 1}
    if twice:
        problems.append(f"{what}: {len(twice)} signals arrived more than once, e.g. {sorted(twice.items())[:3]}")
    missing = expected - set(backends)
    if missing:
        problems.append(f"{what}: {len(missing)} injected violations missing across the backends, e.g. {sorted(missing)[:3]}")
    only_b, only_r = set(backends) - set(reference), set(reference) - set(backends)
    if only_b or only_r:
        problems.append(f"{what}: {len(only_b)} signals only on the backends, {len(only_r)} only on the single collector, "
                        f"e.g. {sorted(only_b)[:2]} {sorted(only_r)[:2]}")
    differ = [k for k in set(backends) & set(reference) if backends[k][0] != reference[k][0]]
    if differ:
        k = sorted(differ)[0]
        problems.append(f"{what}: {len(differ)} signals differ field by field from the single collector's, e.g. {k}:\n"
                        f"  backends  {backends[k][0]}\n  reference {reference[k][0]}")
    return len(backends)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("collector")
    ap.add_argument("out")
    ap.add_argument("--traces", type=int, default=6000)
    ap.add_argument("--restart", action="store_true")
    ap.add_argument("--kill", action="store_true")
    ap.add_argument("--storage", action="store_true")
    args = ap.parse_args()
    name = "scale-restart" if args.restart else "scale"
    out = os.path.abspath(os.path.join(args.out, name + ("-storage" if args.storage else "")))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    corpus, expected_path = os.path.join(out, "corpus"), os.path.join(out, "expected.jsonl")
    subprocess.run([f"{ROOT}/target/release/betrace-corpus", "--seed", "5", "--traces", str(args.traces), "--format", "proto",
                    "--spans-per-batch", "100", "--out", corpus, "--expected", expected_path], check=True, stdout=subprocess.DEVNULL)
    expected = {(e["trace_id"], e["rule_id"]) for e in map(json.loads, open(expected_path))}
    loadgen = f"{ROOT}/target/loadgen"
    if not os.path.exists(loadgen):
        subprocess.run(["go", "build", "-o", loadgen, "."], cwd=f"{ROOT}/bench/loadgen", check=True)

    ports = free_ports(2 * BACKENDS + 4)
    grpc, mports = ports[:BACKENDS], ports[BACKENDS:2 * BACKENDS]
    ref_grpc, ref_metrics, http, t1_metrics = ports[2 * BACKENDS:]
    deploy = f"{ROOT}/examples/deploy"
    backend_configs = [f"{deploy}/tier2.yaml"] + ([f"{deploy}/tier2-storage.yaml"] if args.storage else [])
    backends = [Collector(args.collector, out, f"backend{i + 1}", backend_configs,
                          tier2(f"backend{i + 1}", grpc[i], mports[i], out), grpc[i])
                for i in range(BACKENDS)]
    reference = Collector(args.collector, out, "single", [f"{deploy}/tier2.yaml"], tier2("single", ref_grpc, ref_metrics, out), ref_grpc)
    reference_yaml = os.path.join(out, "tier1-reference.yaml")
    with open(reference_yaml, "w") as f:
        f.write(REFERENCE)
    tier1_env = {"BETRACE_TIER1_HTTP": str(http), "BETRACE_METRICS_PORT": str(t1_metrics), "BETRACE_REFERENCE": str(ref_grpc),
                 **{f"BETRACE_BACKEND{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(grpc)}}
    tier1 = Collector(args.collector, out, "tier1", [f"{deploy}/tier1.yaml", reference_yaml], tier1_env, http)
    everyone = [tier1, *backends, reference]
    try:
        batches = sum(1 for _ in os.scandir(corpus))  # files; the load generator counts batches
        load = subprocess.Popen([loadgen, "-endpoint", f"http://127.0.0.1:{http}/v1/traces", "-rate", "200", corpus],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        restart = {}
        if args.restart:
            victim = backends[1]
            time.sleep(3)  # a third of the corpus or so is in
            m = metrics(mports[1])
            restart["held_traces_at_stop"] = m.get("otelcol_connector_betrace_held_traces", 0)
            before = len(records(os.path.join(out, "backend2-violations.jsonl")))
            took, code = victim.stop(signal.SIGKILL if args.kill else signal.SIGTERM)
            restart["signals_written_at_stop"] = len(records(os.path.join(out, "backend2-violations.jsonl"))) - before
            restart["stop_seconds"], restart["exit_code"] = round(took, 2), code
            time.sleep(3)
            victim.start()
        load_out, load_err = load.communicate()
        if load.returncode != 0:
            # While a backend is down the first tier may refuse requests (503: its queue for
            # that backend is full); an SDK would retry them, the load generator does not.
            if not args.restart:
                sys.exit("scale: the load generator failed:\n" + load_err[-2000:])
            restart["refused_by_tier1"] = load_err.strip().splitlines()[-1]
        shop = subprocess.run([f"{ROOT}/target/demo-venv/bin/python", f"{ROOT}/examples/demo-app/shop.py", "--endpoint",
                               f"http://127.0.0.1:{http}", "--traces", "5", "--incident", "retry-new-intent",
                               "--incident", "ship-before-confirm", "--incident", "admin-without-audit",
                               "--incident", "phi-without-auth", "--record", os.path.join(out, "shop-sent.json")],
                              capture_output=True, text=True)
        if shop.returncode != 0:
            sys.exit("scale: the demo shop failed:\n" + shop.stderr[-2000:])
        # Until the first tier has delivered everything (the backends receive nothing new
        # for 3 s; at most a minute), then past the idle timeout.
        received, still = -1, 0
        for _ in range(60):
            now = sum(metrics(p).get("otelcol_connector_betrace_spans_received", 0) for p in mports)
            still = still + 1 if now == received else 0
            if still == 3:
                break
            received = now
            time.sleep(1)
        time.sleep(3)
        spread = [metrics(p).get("otelcol_connector_betrace_spans_received", 0) for p in mports]
    finally:
        # The first tier first (it flushes to the second), then the rest: shutdown judges
        # and delivers what they hold.
        for c in everyone:
            if c.proc.poll() is None:
                c.stop()

    problems = []
    logs_b = merged(records(os.path.join(out, f"backend{i + 1}-violations.jsonl")) for i in range(BACKENDS))
    logs_r = records(os.path.join(out, "single-violations.jsonl"))
    spans_b = merged(violation_spans(os.path.join(out, f"backend{i + 1}-spans.jsonl")) for i in range(BACKENDS))
    spans_r = violation_spans(os.path.join(out, "single-spans.jsonl"))
    if args.restart:
        missing = expected - set(logs_b)
        extra = set(logs_b) - set(logs_r)
        incomplete = sum(1 for k in extra
                         if logs_b[k][0]["attributes"].get("betrace.trace.complete") == json.dumps({"boolValue": False}))
        twice = sum(1 for v in logs_b.values() if len(v) > 1)
        restart.update({
            "signal": "SIGKILL" if args.kill else "SIGTERM", "storage": args.storage, "traces": args.traces,
            "injected": len(expected),
            "missing_injected": len(missing), "missing_vs_single": len(set(logs_r) - set(logs_b)),
            "extra_vs_single": len(extra), "extra_marked_incomplete": incomplete, "twice": twice,
        })
        print("scale restart: " + json.dumps(restart))
        with open(os.path.join(out, "restart.json"), "w") as f:
            json.dump(restart, f)
        if twice:
            problems.append(f"restart: {twice} signals arrived twice")
        if args.storage and (missing or restart["missing_vs_single"] or extra):
            problems.append(f"restart with storage: {len(missing)} injected violations missing, "
                            f"{restart['missing_vs_single']} of the single collector's signals missing, {len(extra)} extra, "
                            f"e.g. missing {sorted(set(logs_r) - set(logs_b))[:2]} extra {sorted(extra)[:2]}")
    else:
        n = compare("log records", logs_b, logs_r, expected, problems)
        compare("violation spans", spans_b, spans_r, expected, problems)
        if min(spread) == 0:
            problems.append(f"scale: a backend received nothing: spans per backend {spread}")
        print(f"scale: {args.traces} traces ({batches} files) and the demo shop through a loadbalancing tier to "
              f"{BACKENDS} backends (spans received {[int(s) for s in spread]}): {n} signals, each once, "
              f"all {len(expected)} injected violations, equal to a single collector's field by field — as log records and as violation spans")
    if problems:
        print("\n".join("scale FAILED: " + p for p in problems))
        sys.exit(1)


if __name__ == "__main__":
    main()
