#!/usr/bin/env python3
"""`make bench`: BeTrace against what a user would otherwise run, on workload W1, one
process per measurement, and a table of spans/s per core, CPU-seconds per million spans
and peak RSS.

W1 is the corpus generator's output for one seed: traces of 5-50 spans (median about 12)
with 6-10 attributes per span, 5% of traces carrying one injected violation, written as
the collector's file exporter writes it (protobuf, and JSON lines), 512 spans per batch.
The rules are examples/rules.

Stages, each its own process, run several times in turn (the median run kept), CPU time (user + system) and peak RSS taken from the kernel
(wait4 for a child that runs to the end, /proc for the collector, which is measured from
just before the load starts until its output has settled):

  decode         prost decode of every batch, nothing else: the floor
  engine         decode + assemble + judge every trace + signals out, in process
  c-abi          the same through ffi/betrace.h, from a C host
  collector/*    a real ocb-built collector, OTLP/HTTP in over loopback from a bounded
                 generator at a fixed rate, to the nop exporter; without checks, with the
                 betrace connector (also with `storage`), and with tail_sampling + OTTL
  replay/*       `betrace replay` over W1's JSON lines, with all rules and with five
  python         bench/baseline.py: the same five rules, by hand, over the same JSON lines

Every stage's result is checked against the violations injected into W1; a stage that
finds anything else fails the run. Results go to target/bench/results.md (and stdout).
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
FIVE = [
    "payment-requires-inventory",
    "payment-retry-idempotent",
    "high-value-payment-fraud-check",
    "tenant-queries-filter-by-tenant",
    "soc2-admin-actions-audited",
]
SPANS_PER_BATCH = 512
DECISION_WAIT_S = 5  # tail_sampling decision_wait = betrace trace_idle_timeout


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, cwd=ROOT, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=cwd, **kw)


class Measured:
    def __init__(self, name, wall, cpu, rss_kb, out):
        self.name, self.wall, self.cpu, self.rss_kb, self.out = name, wall, cpu, rss_kb, out
        self.cpus = [cpu]


def rounds(runs, stages):
    """Runs each (name, cmd, kwargs) stage `runs` times, each its own process, taking the
    stages in turn round after round so that drift on a shared machine hits them alike.
    The run with the median CPU time stands for a stage; the others show the spread."""
    results = {name: [] for name, _, _ in stages}
    for _ in range(runs):
        for name, cmd, kw in stages:
            results[name].append(run_measured(name, cmd, **kw))
    return {name: median(ms) for name, ms in results.items()}


def median(ms):
    """The run with the median CPU time (the lower middle one for an even count), carrying
    every run's CPU time."""
    ms = sorted(ms, key=lambda m: m.cpu)
    m = ms[(len(ms) - 1) // 2]
    m.cpus = [x.cpu for x in ms]
    return m


def run_measured(name, cmd, env=None, stdout_file=None):
    """Runs cmd to the end; CPU and peak RSS of that process from wait4."""
    log(f"{name}: " + " ".join(cmd))
    out = open(stdout_file, "wb") if stdout_file else subprocess.PIPE
    start = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, env=env)
    data = p.stdout.read() if not stdout_file else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if stdout_file:
        out.close()
    if p.returncode != 0:
        sys.exit(f"bench: {name} failed with exit code {p.returncode}")
    return Measured(name, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, data.decode())


def proc_cpu(pid):
    """User + system CPU seconds of a running process, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc, log_path):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"bench: collector exited early; see {log_path}")
            time.sleep(0.1)
    sys.exit(f"bench: collector did not open port {port}; see {log_path}")


# ---------------------------------------------------------------------------------------
# Building and generating


def build(out):
    sh(["cargo", "build", "--release", "--locked", "-p", "betrace", "-p", "betrace-bench", "-p", "betrace-corpus"])
    cc = os.environ.get("CC", "cc")
    sh([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I", "ffi", "bench/cabi.c",
        "-L", "target/release", "-lbetrace", "-lpthread", "-o", f"{ROOT}/target/bench-cabi"])
    sh(["go", "build", "-o", f"{ROOT}/target/loadgen", "."], cwd=f"{ROOT}/bench/loadgen")
    sh(["go-shim/ocb.sh", "bench/collector/builder-config.yaml", f"{out}/ocb.log"])


def generator_digest():
    """A digest of the corpus generator's source: a corpus written by another generator (the
    library's rules changed what it must carry) is written again, not reused."""
    h = hashlib.sha256()
    src = f"{ROOT}/testdata/corpus/src"
    for name in sorted(os.listdir(src)):
        with open(f"{src}/{name}", "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def generate(out, traces, seed):
    w1 = f"{out}/w1"
    stamp = f"{w1}/stamp"
    want = f"seed={seed} traces={traces} spans_per_batch={SPANS_PER_BATCH} generator={generator_digest()}"
    if os.path.exists(stamp) and open(stamp).read() == want:
        log(f"W1 already generated ({want})")
        return w1
    shutil.rmtree(w1, ignore_errors=True)
    os.makedirs(w1)
    for fmt, extra in (("proto", ["--expected", f"{w1}/expected.jsonl"]), ("json", [])):
        sh([f"{REL}/betrace-corpus", "--seed", str(seed), "--traces", str(traces), "--format", fmt,
            "--spans-per-batch", str(SPANS_PER_BATCH), "--batches-per-file", "200",
            "--out", f"{w1}/{fmt}"] + extra)
    with open(stamp, "w") as f:
        f.write(want)
    return w1


def five_rules(path):
    """The five rules, cut out of examples/rules as written, into one rule file."""
    blocks = {}
    for name in sorted(os.listdir(f"{ROOT}/examples/rules")):
        text = open(f"{ROOT}/examples/rules/{name}").read()
        for block in re.split(r"(?m)^(?=  - id: )", text)[1:]:
            blocks[block.split(None, 3)[2]] = block.rstrip() + "\n"
    with open(path, "w") as f:
        f.write("rules:\n" + "".join(blocks[r] for r in FIVE))
    sh([f"{REL}/betrace", "check", path], stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------
# Checks


def expected(w1, rules=None):
    pairs = set()
    for line in open(f"{w1}/expected.jsonl"):
        e = json.loads(line)
        if rules is None or e["rule_id"] in rules:
            pairs.add((e["trace_id"], e["rule_id"]))
    return pairs


def pairs_from_jsonl(path):
    out = set()
    for line in open(path):
        if line.strip():
            e = json.loads(line)
            out.add((e["trace_id"].lower(), e["rule_id"]))
    return out


def otlp_items(path, top, scope, items):
    """Every item (span or log record) of a file exporter's OTLP/JSON lines output."""
    if not os.path.exists(path):
        return
    for line in open(path):
        for r in json.loads(line).get(top, []):
            for sc in r.get(scope, []):
                yield from sc.get(items, [])


def log_record_pairs(path):
    """(trace id, rule id) of every violation log record the file exporter wrote."""
    out = set()
    for rec in otlp_items(path, "resourceLogs", "scopeLogs", "logRecords"):
        attrs = {a["key"]: a["value"].get("stringValue") for a in rec.get("attributes", [])}
        out.add((rec.get("traceId", "").lower(), attrs.get("betrace.rule.id")))
    return out


def sampled_traces(path):
    return {sp["traceId"].lower() for sp in otlp_items(path, "resourceSpans", "scopeSpans", "spans")}


def verdict(name, got, want):
    if got == want:
        return f"exactly the {len(want)} expected"
    sys.exit(f"bench: {name}: found {len(got)}, expected {len(want)} "
             f"({len(want - got)} missed, {len(got - want)} unexpected), e.g. "
             f"{sorted(want - got)[:3]} / {sorted(got - want)[:3]}")


# ---------------------------------------------------------------------------------------
# The collector runs


def run_collector(name, out, configs, w1, batches_per_second, port):
    run_dir = f"{out}/{name.replace('/', '-')}"
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    env = dict(os.environ, BENCH_OUT=run_dir, BENCH_OTLP_PORT=str(port))
    cmd = [f"{ROOT}/target/otelcol-bench/otelcol-bench"] + [a for c in configs for a in ("--config", c)]
    log(f"{name}: " + " ".join(cmd))
    log_path = f"{run_dir}/collector.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, log_path)
        time.sleep(1)  # let start-up (rule loading, OTTL parsing) finish before measuring
        cpu0, t0 = proc_cpu(proc.pid), time.monotonic()
        gen = run_measured(f"{name} load", [f"{ROOT}/target/loadgen", "-endpoint", f"http://127.0.0.1:{port}/v1/traces",
                                            "-rate", f"{batches_per_second:.3f}", f"{w1}/proto"])
        load = json.loads(gen.out)
        # Held traces are decided DECISION_WAIT_S after their last span; then wait until
        # the collector is idle (no CPU used for a second) so all the work is counted.
        time.sleep(DECISION_WAIT_S + 1)
        last = proc_cpu(proc.pid)
        for _ in range(30):
            time.sleep(1)
            now = proc_cpu(proc.pid)
            if now - last < 0.02:
                break
            last = now
        cpu, wall, hwm = proc_cpu(proc.pid) - cpu0, time.monotonic() - t0, proc_hwm_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if proc.returncode not in (0, -15):
        sys.exit(f"bench: {name}: collector exited with {proc.returncode}; see {log_path}")
    m = Measured(name, wall, cpu, hwm, "")
    m.load = load
    m.run_dir = run_dir
    return m


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=50_000, help="traces in W1 (default 50,000, about 1M spans)")
    ap.add_argument("--seed", type=int, default=1, help="W1's seed (default 1)")
    ap.add_argument("--rate", type=int, default=25_000, help="spans/s sent to each collector (default 25,000)")
    ap.add_argument("--port", type=int, default=4318, help="loopback port for the collectors' OTLP/HTTP receiver")
    ap.add_argument("--out", default="target/bench", help="where builds, W1 and results go")
    ap.add_argument("--runs", type=int, default=3, help="runs of each stage but the collectors; the median is kept (default 3)")
    ap.add_argument("--collector-runs", type=int, default=2,
                    help="runs of each collector, taken in turn; the lower is kept (default 2)")
    ap.add_argument("--no-build", action="store_true", help="use what target/ already has")
    args = ap.parse_args()
    os.chdir(ROOT)
    out = args.out
    os.makedirs(out, exist_ok=True)
    started = time.monotonic()

    if not args.no_build:
        build(out)
    w1 = generate(out, args.traces, args.seed)
    five_path = f"{w1}/five-rules.yaml"
    five_rules(five_path)
    policies = f"{out}/tail-sampling-policies.yaml"
    ts = json.loads(subprocess.run([f"{REL}/betrace-bench", "tail-sampling", "--rules", "examples/rules",
                                    "--out", policies], check=True, cwd=ROOT, capture_output=True).stdout)
    expressed = set(ts["expressed"])

    want_all = expected(w1)
    proto_files = [f"{w1}/proto/{f}" for f in sorted(os.listdir(f"{w1}/proto"))]
    rows, checks = [], {}

    # One unmeasured decode first: it reads W1 into the page cache and counts it.
    info = json.loads(run_measured("warm-up", [f"{REL}/betrace-bench", "decode", f"{w1}/proto"]).out)
    spans, batches = info["spans"], info["batches"]
    bps = args.rate / (spans / batches)  # batches per second for the collectors and the clock
    rule_files = [f"examples/rules/{f}" for f in sorted(os.listdir("examples/rules"))]
    live = rounds(args.runs, [
        ("decode", [f"{REL}/betrace-floor", f"{w1}/proto"], {}),
        ("decode/mimalloc", [f"{REL}/betrace-bench", "decode", f"{w1}/proto"], {}),
        ("wire-walk", [f"{REL}/betrace-bench", "wire-walk", f"{w1}/proto"], {}),
        ("engine", [f"{REL}/betrace-bench", "engine", "--rules", "examples/rules",
                    "--batches-per-second", f"{bps:.3f}", f"{w1}/proto"], {}),
        ("c-abi", [f"{ROOT}/target/bench-cabi", f"{bps:.3f}"] + rule_files + ["--"] + proto_files,
         {"env": dict(os.environ, LD_LIBRARY_PATH=REL)}),
    ])
    for name in ("decode", "decode/mimalloc", "wire-walk"):
        got = json.loads(live[name].out)
        if got["batches"] != batches:
            sys.exit(f"bench: {name}: {got}, expected {batches} batches")
        rows.append(live[name])
        checks[name] = (f"{got['spans']:,} spans in {batches:,} batches" if "spans" in got
                        else f"{got['fields']:,} fields in {batches:,} batches")
    for name in ("engine", "c-abi"):
        got = json.loads(live[name].out)
        if got["signals"] != len(want_all) or got["spans"] != spans:
            sys.exit(f"bench: {name}: {got}, expected {len(want_all)} signals over {spans} spans")
        rows.append(live[name])
        checks[name] = f"{got['signals']:,} signals = injected"

    # Memory per held span: every trace held to the end (100 h timeouts).
    held = rounds(1, [
        ("engine/held", [f"{REL}/betrace-bench", "engine", "--hold", "--rules", "examples/rules", f"{w1}/proto"], {}),
    ])["engine/held"]
    got = json.loads(held.out)
    if got["signals"] != len(want_all) or got["held_spans"] != spans:
        sys.exit(f"bench: engine/held: {got}, expected {len(want_all)} signals, {spans} spans held")
    rows.append(held)
    checks["engine/held"] = (f"{got['signals']:,} signals = injected; {got['held_spans']:,} spans held in "
                             f"{(got['peak_rss_kb_before_shutdown'] - got['rss_after_rules_kb']) / 1024:,.0f} MB: "
                             f"**{got['bytes_per_held_span']:.0f} B per held span**; the engine's estimate "
                             f"(`held_bytes`, what memory_limit_mib bounds) is {got['held_bytes_of_rss_growth']:.2f} of it")
    memory = {"engine": got["bytes_per_held_span"]}

    cfg = "bench/collector"
    want_ts = {t for t, r in want_all if r in expressed}
    collectors = [
        ("collector/nop", [f"{cfg}/nop.yaml"],
         lambda m: f"{m.load['batches']:,} batches accepted"),
        ("collector/betrace", [f"{cfg}/betrace.yaml"],
         lambda m: verdict(m.name, log_record_pairs(f"{m.run_dir}/violations.jsonl"), want_all)),
        ("collector/betrace+storage", [f"{cfg}/betrace.yaml", f"{cfg}/storage.yaml"],
         lambda m: verdict(m.name, log_record_pairs(f"{m.run_dir}/violations.jsonl"), want_all)),
        ("collector/tail_sampling", [f"{cfg}/tail-sampling.yaml", policies],
         lambda m: verdict(m.name, sampled_traces(f"{m.run_dir}/sampled.jsonl"), want_ts)
         + f" traces ({len(expressed)} of {len(expressed) + len(ts['unexpressed'])} rules)"),
    ]
    runs = {name: [] for name, _, _ in collectors}
    for _ in range(args.collector_runs):
        for name, configs, check in collectors:
            m = run_collector(name, out, configs, w1, bps, args.port)
            checks[name] = check(m)  # every run is checked, before the next overwrites its output
            runs[name].append(m)
    rows += [median(runs[name]) for name, _, _ in collectors]

    five = expected(w1, set(FIVE))
    files = {name: f"{out}/{name.replace('/', '-')}.jsonl"
             for name in ("replay/all-rules", "replay/five-rules", "python/five-rules")}
    files["replay/proto"] = f"{out}/replay-proto.jsonl"
    files["replay/one-core"] = f"{out}/replay-one-core.jsonl"
    files["replay/held"] = f"{out}/replay-held.jsonl"
    offline = rounds(args.runs, [
        ("replay/all-rules", [f"{REL}/betrace", "replay", "--rules", "examples/rules", "--format", "jsonl",
                              "--output", files["replay/all-rules"], f"{w1}/json"], {}),
        ("replay/one-core", ["taskset", "-c", "0", f"{REL}/betrace", "replay", "--threads", "1", "--rules",
                             "examples/rules", "--format", "jsonl", "--output", files["replay/one-core"],
                             f"{w1}/json"], {}),
        ("replay/proto", [f"{REL}/betrace", "replay", "--rules", "examples/rules", "--format", "jsonl",
                          "--output", files["replay/proto"], f"{w1}/proto"], {}),
        ("replay/five-rules", [f"{REL}/betrace", "replay", "--rules", five_path, "--format", "jsonl",
                               "--output", files["replay/five-rules"], f"{w1}/json"], {}),
        ("python/five-rules", [sys.executable, "bench/baseline.py", f"{w1}/json"],
         {"stdout_file": files["python/five-rules"]}),
    ])
    for name, want in (("replay/all-rules", want_all), ("replay/one-core", want_all), ("replay/proto", want_all),
                       ("replay/five-rules", five), ("python/five-rules", five)):
        checks[name] = verdict(name, pairs_from_jsonl(files[name]), want)
        rows.append(offline[name])
    # Replay's memory per held span: nothing judged before the end.
    rh = rounds(1, [("replay/held", [f"{REL}/betrace", "replay", "--trace-idle-timeout", "100h",
                                     "--max-trace-age", "100h", "--max-traces", "100000000",
                                     "--max-spans", "100000000", "--rules", "examples/rules",
                                     "--format", "jsonl", "--output", files["replay/held"], f"{w1}/proto"], {})])
    rh = rh["replay/held"]
    checks["replay/held"] = verdict("replay/held", pairs_from_jsonl(files["replay/held"]), want_all)
    memory["replay"] = rh.rss_kb * 1024 / spans
    checks["replay/held"] += f"; peak RSS ÷ spans held: **{memory['replay']:.0f} B per span**"
    rows.append(rh)
    args.memory = memory

    report = render(rows, checks, spans, batches, args, ts, want_all, time.monotonic() - started)
    import index  # the index's stages: ten times W1, indexed against plain replay
    report += "\n" + index.run(out, args.traces, 10, args.runs)
    with open(f"{out}/results.md", "w") as f:
        f.write(report)
    print(report)


def render(rows, checks, spans, batches, args, ts, want_all, elapsed):
    by = {m.name: m for m in rows}
    cpu_model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"### {date.today().isoformat()} — W1: seed {args.seed}, {args.traces:,} traces, {spans:,} spans, "
        f"{batches:,} batches, {len(want_all):,} injected violations",
        "",
        f"Machine: {os.cpu_count()} vCPU {cpu_model}, {mem_gib:.0f} GiB, Linux {platform.release()}. "
        f"Collectors fed at {args.rate:,} spans/s, each run {args.collector_runs}×, every other stage "
        f"{args.runs}×, in turn; the median run by CPU is kept (the lower middle one for an even count). Run took {elapsed / 60:.1f} min.",
        "",
        "| stage | spans/s per core | CPU-s per M spans | peak RSS (MB) | wall (s) | CPU-s of each run | check |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for m in rows:
        lines.append(f"| {m.name} | {spans / m.cpu:,.0f} | {m.cpu / spans * 1e6:.2f} | {m.rss_kb / 1024:,.0f} | "
                     f"{m.wall:.1f} | {', '.join(f'{c:.2f}' for c in m.cpus)} | {checks[m.name]} |")
    nop, bt, tsr = by["collector/nop"], by["collector/betrace"], by["collector/tail_sampling"]
    one, allc = by["replay/one-core"], by["replay/all-rules"]
    ratios = [
        ("engine ÷ decode floor (CPU per span)", by["engine"].cpu / by["decode"].cpu),
        ("engine ÷ decode floor with the engine's allocator (CPU per span)", by["engine"].cpu / by["decode/mimalloc"].cpu),
        ("engine ÷ wire-walk (CPU per span)", by["engine"].cpu / by["wire-walk"].cpu),
        ("collector: betrace ÷ nop (CPU per span)", by["collector/betrace"].cpu / by["collector/nop"].cpu),
        ("collector: betrace with storage ÷ without (CPU per span; goal ≤ 1.25)",
         by["collector/betrace+storage"].cpu / by["collector/betrace"].cpu),
        ("C ABI ÷ engine in process (CPU per span)", by["c-abi"].cpu / by["engine"].cpu),
        ("collector: betrace ÷ tail_sampling (CPU per span, whole collector)", bt.cpu / tsr.cpu),
        ("collector: betrace ÷ tail_sampling (CPU per span above the nop collector)",
         (bt.cpu - nop.cpu) / (tsr.cpu - nop.cpu) if tsr.cpu > nop.cpu else float("nan")),
        ("replay (five rules) ÷ Python script (CPU per span)", by["replay/five-rules"].cpu / by["python/five-rules"].cpu),
        ("replay (all rules) ÷ Python script, five rules (CPU per span)", by["replay/all-rules"].cpu / by["python/five-rules"].cpu),
        (f"replay wall-clock speed-up, one core → all {os.cpu_count()} (JSON, all rules)", one.wall / allc.wall),
        ("collector: betrace ÷ tail_sampling, peak RSS", bt.rss_kb / tsr.rss_kb),
    ]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios]
    lines += ["", f"tail_sampling could express {len(ts['expressed'])} of "
                  f"{len(ts['expressed']) + len(ts['unexpressed'])} rules; not expressible:", ""]
    reasons = {}
    for u in ts["unexpressed"]:
        reasons.setdefault(u["why"], []).append(u["id"])
    for why, ids in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"* {why} ({len(ids)}): {', '.join(ids)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
