"""The soak test: a real collector (built with ocb) with the betrace connector, fed by the
load generator over OTLP/HTTP for a long time, traces with known violations throughout,
rules reloaded every few minutes (good edits, and one bad edit that must be refused while
the old rules keep running), and in the middle the collector killed (SIGKILL) and started
again on its storage (the file_storage extension; the load generator retries what the dead
collector refused, as an SDK's exporter does). At the end it checks that every expected
signal was delivered exactly once across the kill, that memory stayed flat after warm-up,
that nothing was logged at error level, and that the engine's counters add up. Prints a
summary and writes soak.json.

usage: soak.py [--minutes M] [--rate SPANS_PER_S] [--out DIR]   (make soak / make soak-short)"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTOR = os.path.join(ROOT, "target/otelcol-betrace/otelcol-betrace")
CONFIG = """receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
extensions:
  file_storage/betrace:
    directory: {out}/storage
    create_directory: true
connectors:
  betrace:
    rules: [{out}/rules]
    trace_idle_timeout: 2s
    max_trace_age: 30s
    reload_interval: 1s
    storage: file_storage/betrace
exporters:
  file/violations:
    path: {out}/violations.jsonl
    rotation:
      max_megabytes: 100000
service:
  extensions: [file_storage/betrace]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [betrace]
    logs/violations:
      receivers: [betrace]
      exporters: [file/violations]
"""
QUIET_RULE = """rules:
  - id: soak-quiet
    name: A rule that never fires ({edit})
    condition: soak.never.sent
"""
BAD_RULE = """rules:
  - id: soak-broken
    name: A careless edit
    condition: when { checkout } always { payment.where(amount >>= 1) }
"""


def sh(cmd, cwd=ROOT, **kw):
    subprocess.run(cmd, check=True, cwd=cwd, **kw)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"(otelcol_connector_betrace_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def rss_mb(pid):
    """The process's resident memory in MB, or None when it is gone (killed mid-run)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def slope_mb_per_min(samples):
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (r - mr) for t, r in samples) / var if var else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=10000, help="spans per second offered")
    ap.add_argument("--out", default=os.path.join(ROOT, "target/soak"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "rules"))
    for f in sorted(os.listdir(os.path.join(ROOT, "examples/rules"))):
        if f.endswith(".yaml"):
            shutil.copy(os.path.join(ROOT, "examples/rules", f), os.path.join(out, "rules", f))

    traces, spans_per_batch = 4000, 200
    wrote = subprocess.run([os.path.join(ROOT, "target/release/betrace-corpus"), "--seed", "11", "--traces", str(traces),
                            "--rate", "0.05", "--format", "proto", "--spans-per-batch", str(spans_per_batch),
                            "--batches-per-file", "1000000", "--out", os.path.join(out, "corpus"),
                            "--expected", os.path.join(out, "expected.jsonl")],
                           check=True, capture_output=True, text=True).stderr
    spans_per_loop = int(re.search(r"(\d+) spans", wrote).group(1))
    sh(["go", "build", "-o", os.path.join(ROOT, "target/loadgen"), "."], cwd=os.path.join(ROOT, "bench/loadgen"))
    expected_one = [json.loads(l) for l in open(os.path.join(out, "expected.jsonl"))]
    batch_files = os.listdir(os.path.join(out, "corpus"))
    batches = 0
    for f in batch_files:
        data = open(os.path.join(out, "corpus", f), "rb").read()
        at = 0
        while at < len(data):
            at += 4 + int.from_bytes(data[at:at + 4], "big")
            batches += 1
    batch_rate = args.rate / spans_per_batch
    loops = max(1, math.ceil(args.minutes * 60 * batch_rate / batches))

    port, metrics_port = free_port(), free_port()
    with open(os.path.join(out, "soak.yaml"), "w") as f:
        f.write(CONFIG.format(port=port, out=out, metrics_port=metrics_port))
    runs = []  # (process, log path), one per start

    def start_collector():
        path = os.path.join(out, f"collector.{len(runs) + 1}.log")
        log = open(path, "w")
        proc = subprocess.Popen([COLLECTOR, "--config", os.path.join(out, "soak.yaml")], stdout=log, stderr=subprocess.STDOUT)
        runs.append((proc, path))
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    sys.exit("soak: the collector did not start:\n" + open(path).read()[-3000:])
                time.sleep(0.2)

    start_collector()
    try:
        samples, stop = [], threading.Event()
        start = time.time()

        def sample():
            while not stop.wait(2):
                run = len(runs)
                rss = rss_mb(runs[-1][0].pid)
                if rss is not None:  # None: the collector was killed between the two reads
                    samples.append((time.time() - start, rss, run))

        threading.Thread(target=sample, daemon=True).start()
        load = subprocess.Popen([os.path.join(ROOT, "target/loadgen"), "-endpoint", f"http://127.0.0.1:{port}/v1/traces",
                                 "-rate", str(batch_rate), "-in-flight", "4", "-loops", str(loops), "-retry", "120s",
                                 os.path.join(out, "corpus")],
                                stdout=subprocess.PIPE, text=True)
        # Rule edits through the run: good ones, and one bad one in the middle.
        edits, reload_log = 6, []
        for i in range(edits):
            if load.poll() is not None:
                break
            time.sleep(args.minutes * 60 / (edits + 1))
            if i == edits // 2:
                with open(os.path.join(out, "rules", "zz-broken.yaml"), "w") as f:
                    f.write(BAD_RULE)
                t0 = time.time()
                while "rules not reloaded" not in open(runs[-1][1]).read() and time.time() - t0 < 20:
                    time.sleep(0.2)
                os.remove(os.path.join(out, "rules", "zz-broken.yaml"))
                reload_log.append((round(time.time() - start), "bad edit"))
                # The collector killed mid-load, and started again two seconds later.
                runs[-1][0].kill()
                runs[-1][0].wait()
                killed_at = round(time.time() - start)
                time.sleep(2)
                start_collector()
                reload_log.append((killed_at, "SIGKILL, started again"))
            else:
                with open(os.path.join(out, "rules", "zz-quiet.yaml.tmp"), "w") as f:
                    f.write(QUIET_RULE.format(edit=i))
                os.replace(os.path.join(out, "rules", "zz-quiet.yaml.tmp"), os.path.join(out, "rules", "zz-quiet.yaml"))
                reload_log.append((round(time.time() - start), f"good edit {i}"))
        load_out, _ = load.communicate()
        sent = json.loads(load_out.strip().splitlines()[-1])
        time.sleep(8)  # every trace judged (idle 2s) and released (2s more), with ticks to spare
        final = metrics(metrics_port)
        stop.set()
    finally:
        for proc, _ in runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)

    problems = []
    if load.returncode != 0 or sent.get("failed"):
        problems.append(f"the load generator failed: {sent}")
    # Every expected signal exactly once, nothing else.
    want = {}
    for k in range(loops):
        for e in expected_one:
            tid = bytes.fromhex(e["trace_id"])
            tid = (int.from_bytes(tid[:4], "big") ^ k).to_bytes(4, "big") + tid[4:]
            want[(tid.hex(), e["rule_id"])] = 0
    extra = {}
    for line in open(os.path.join(out, "violations.jsonl")):
        for rl in json.loads(line).get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for r in sl.get("logRecords", []):
                    rule = next(a["value"]["stringValue"] for a in r["attributes"] if a["key"] == "betrace.rule.id")
                    key = (r["traceId"], rule)
                    if key in want:
                        want[key] += 1
                    else:
                        extra[key] = extra.get(key, 0) + 1
    missing = [k for k, n in want.items() if n == 0]
    dup = [k for k, n in want.items() if n > 1]
    if missing or dup or extra:
        problems.append(f"signals: {len(missing)} missing, {len(dup)} duplicated, {len(extra)} unexpected (of {len(want)})")
    # Memory flat after warm-up, in the longest-lived run.
    if samples:
        longest = max(set(r for _, _, r in samples), key=lambda r: sum(1 for s in samples if s[2] == r))
        samples = [(t, rss) for t, rss, r in samples if r == longest]
    warm = [s for s in samples if s[0] >= samples[0][0] + 0.25 * (samples[-1][0] - samples[0][0])] if samples else []
    slope = slope_mb_per_min(warm)
    peak = max((r for _, r in samples), default=0)
    q = len(warm) // 4
    if q >= 2:
        early = sum(r for _, r in warm[:q]) / q
        late = sum(r for _, r in warm[-q:]) / q
        if late > 1.3 * early and late - early > 50:
            problems.append(f"RSS grew after warm-up: {early:.0f} MB → {late:.0f} MB")
    # Nothing at error level; the bad edit refused, with its location.
    text = "".join(open(path).read() for _, path in runs)
    if len(runs) > 1 and "the traces held before the restart are back in the engine" not in open(runs[-1][1]).read():
        problems.append("the restart after the kill did not bring back what the storage held")
    errors = [l for l in text.splitlines() if "\terror\t" in l]
    if errors:
        problems.append(f"{len(errors)} lines at error level, first: {errors[0][:300]}")
    if "zz-broken.yaml:4:" not in text:
        problems.append("the refused edit was not logged with its file, line and column")
    # Counters add up. They are the last run's (the killed one's went with it): its totals
    # are a part of the whole, and spans the load generator sent again after the kill may
    # have been stored already (duplicates, counted once).
    c = final
    signals_total = sum(want.values()) + sum(extra.values())
    killed = len(runs) > 1
    if not killed and c.get("otelcol_connector_betrace_signals", 0) != signals_total:
        problems.append(f"signals counter {c.get('otelcol_connector_betrace_signals')} vs {signals_total} delivered")
    for name in ("otelcol_connector_betrace_late_spans", "otelcol_connector_betrace_late_spans_unjudged", "otelcol_connector_betrace_invalid_spans",
                 "otelcol_connector_betrace_traces_judged_early", "otelcol_connector_betrace_signals_dropped", "otelcol_connector_betrace_decode_errors",
                 *(() if killed else ("otelcol_connector_betrace_duplicate_spans",))):
        if c.get(name, 0) != 0:
            problems.append(f"{name} = {c.get(name)}, expected 0")
    judged, received = c.get("otelcol_connector_betrace_traces_judged", 0), c.get("otelcol_connector_betrace_spans_received", 0)
    if (judged > traces * loops) if killed else (judged != traces * loops):
        problems.append(f"traces judged {judged} vs {traces * loops} sent")
    if (received > spans_per_loop * loops + 2 * spans_per_batch * 4) if killed else (received != spans_per_loop * loops):
        problems.append(f"spans received {received} vs {spans_per_loop * loops} sent")
    if c.get("otelcol_connector_betrace_held_spans", -1) != 0:
        problems.append(f"held spans at the end: {c.get('otelcol_connector_betrace_held_spans')}")

    seconds = sent.get("seconds", 0) or 1
    spans_received = c.get("otelcol_connector_betrace_spans_received", 0)
    summary = {
        "minutes": round(seconds / 60, 1), "loops": loops, "traces": traces * loops,
        "spans_received": int(spans_received), "spans_per_second_held": round(spans_received / seconds),
        "offered_spans_per_second": args.rate, "behind_at_end_seconds": sent.get("behind_at_end_seconds"),
        "signals_expected": len(want), "signals_delivered": signals_total,
        "rss_peak_mb": round(peak), "rss_slope_after_warmup_mb_per_min": round(slope, 2),
        "rule_edits": reload_log, "counters": {k.removeprefix("otelcol_connector_betrace_"): v for k, v in sorted(c.items())},
        "problems": problems,
    }
    json.dump(summary, open(os.path.join(out, "soak.json"), "w"), indent=1)
    print(json.dumps(summary, indent=1))
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
