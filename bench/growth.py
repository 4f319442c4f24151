#!/usr/bin/env python3
"""`make bench-growth`: how the engine's cost grows — the growth table of BENCHMARKS.md.

Three axes, each figure measured (one process per point, CPU time and peak RSS from the
kernel, as `make bench` measures its stages), none extrapolated:

  rules        W1 against the playbook library (87 rules), and the library copied 10 and
               100 times with distinct ids (870, 8,700 rules); engine stage, live clock.
               Check: exactly copies × W1's injected violations.
  trace size   W1's spans re-cut into traces of exactly 10, 100, 1,000 and 10,000 spans
               (`betrace-bench reshape`: batches, resources and span contents unchanged);
               every trace held to the end, then judged once.
  concurrency  the corpus generator's traces, 10k, 100k and 1M of them, every one held at
               once (`engine --hold`): bytes per held span and peak RSS.
  loading      `betrace check` (the load path every reload pays) over 5k … 40k rule files of
               one rule each, and over one rule with 5k … 40k alternatives
               (`k == "v0" or k == "v1" or …`): CPU must grow linearly.
  per span     a rule judged per occurrence (a binding, `until`, a join, `own`) against two
               trace-level rules on traces of 10 … 10,000 spans (criterion's `per-occurrence`
               group of benches/engine.rs): not quadratic, and within 2× is the goal.

Results go to target/bench/growth.md (and stdout).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import REL, ROOT, SPANS_PER_BATCH, expected, generate, median, run_measured, sh  # noqa: E402


def copied_rules(out, copies):
    """examples/rules copied `copies` times into one directory, each copy's ids suffixed."""
    d = f"{out}/rules-x{copies}"
    if os.path.isdir(d):
        return d
    os.makedirs(d)
    for name in sorted(os.listdir(f"{ROOT}/examples/rules")):
        text = open(f"{ROOT}/examples/rules/{name}").read()
        for c in range(copies):
            suffixed = re.sub(r"(?m)^(  - id: )(\S+)", rf"\g<1>\g<2>-c{c}", text) if copies > 1 else text
            with open(f"{d}/c{c:03}-{name}", "w") as f:
                f.write(suffixed)
    return d


RUNS = 3

LOAD_POINTS = (5_000, 10_000, 20_000, 40_000)


def load_inputs(g, n):
    """`n` rule files of one rule each, and one rule file with `n` alternatives."""
    d = f"{g}/load-{n}"
    if not os.path.exists(f"{d}/done"):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(f"{d}/files")
        for i in range(n):
            with open(f"{d}/files/r{i:05}.yaml", "w") as f:
                f.write(f"rules:\n  - id: r{i}\n    name: R{i}\n    severity: low\n"
                        f"    condition: x{i}.where(k == {i})\n")
        alternatives = " or ".join(f'k == "v{i}"' for i in range(n))
        with open(f"{d}/alternatives.yaml", "w") as f:
            f.write("rules:\n  - id: r\n    name: R\n    severity: low\n"
                    f"    condition: x.where({alternatives})\n")
        open(f"{d}/done", "w").close()
    return f"{d}/files", f"{d}/alternatives.yaml"


def load_row(axis, n, path):
    """`betrace check` over `path`, RUNS times; the median run by CPU."""
    m = median([run_measured(f"check {axis} {n}", [f"{REL}/betrace", "check", path]) for _ in range(RUNS)])
    runs = ", ".join(f"{c:.2f}" for c in m.cpus)
    print(f"growth: check {axis} {n}: {m.cpu:.2f} CPU-s", file=sys.stderr, flush=True)
    return f"| {axis} | {n:,} | {m.cpu:.2f} | {runs} | {m.rss_kb / 1024:,.0f} |"


def engine(name, rules, inputs, hold=False, bps=None):
    """The engine stage, RUNS times; the run with the median CPU time stands for the point."""
    cmd = [f"{REL}/betrace-bench", "engine", "--rules", rules]
    cmd += ["--hold"] if hold else ["--batches-per-second", f"{bps:.3f}"]
    m = median([run_measured(name, cmd + (inputs if isinstance(inputs, list) else [inputs]))
                for _ in range(RUNS)])
    m.json = json.loads(m.out)
    print(f"growth: {name}: {m.cpu:.2f} CPU-s, {m.rss_kb / 1024:,.0f} MB peak, {m.out.strip()}",
          file=sys.stderr, flush=True)
    return m


def row(axis, point, m, check):
    spans = m.json["spans"]
    held = m.json.get("bytes_per_held_span")
    runs = ", ".join(f"{c:.2f}" for c in m.cpus)
    return (f"| {axis} | {point} | {spans / m.cpu:,.0f} | {m.cpu * 1e6 / spans:.2f} | {runs} | "
            f"{m.rss_kb / 1024:,.0f} | {f'{held:.0f}' if held else '—'} | {check} |")


def per_occurrence():
    """The criterion group `per-occurrence`: medians in µs per trace size, and the ratios."""
    sh(["cargo", "bench", "--locked", "--bench", "engine", "--", "per-occurrence",
        "--warm-up-time", "2", "--measurement-time", "5"], stdout=subprocess.DEVNULL)
    base = f"{ROOT}/target/criterion/per-occurrence"

    def median_us(rule, n):
        with open(f"{base}/{rule}/{n}/new/estimates.json") as f:
            return json.load(f)["median"]["point_estimate"] / 1000

    rows = []
    for n in (10, 100, 1000, 10000):
        order, level, span = (median_us(r, n) for r in ("trace-order", "trace-level", "per-span"))
        print(f"growth: per span {n}: {span:.2f} µs, {span / level:.2f}× trace-level", file=sys.stderr, flush=True)
        rows.append(f"| per span | {n:,} | {order:,.2f} | {level:,.2f} | {span:,.2f} | {span * 1000 / n:,.0f} "
                    f"| {span / level:.2f} | {span / order:.2f} |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="target/bench", help="where W1 is (or is generated) and results go")
    ap.add_argument("--traces", type=int, default=50_000, help="traces in W1 (default 50,000)")
    ap.add_argument("--concurrent", default="10000,100000,1000000",
                    help="trace counts of the concurrency axis (default 10000,100000,1000000)")
    ap.add_argument("--rate", type=float, default=25_000, help="spans/s of the live clock (default 25,000)")
    args = ap.parse_args()
    started = time.monotonic()
    out = os.path.join(ROOT, args.out)
    w1 = generate(out, args.traces, 1)
    proto = f"{w1}/proto"
    want = len(expected(w1))
    bps = args.rate / SPANS_PER_BATCH
    g = f"{out}/growth"
    os.makedirs(g, exist_ok=True)
    rows = []

    library = sum(open(f"{ROOT}/examples/rules/{n}").read().count("\n  - id: ")
                  for n in os.listdir(f"{ROOT}/examples/rules"))
    for copies in (1, 10, 100):
        rules = copied_rules(g, copies)
        m = engine(f"rules x{copies}", rules, proto, bps=bps)
        got = m.json["signals"]
        if got != want * copies:
            sys.exit(f"growth: {copies} copies: {got} signals, expected {want * copies}")
        rows.append(row("rules", f"{library * copies:,}", m,
                        f"{got:,} signals = {copies} × injected; RSS after loading the rules "
                        f"{m.json['rss_after_rules_kb'] / 1024:,.0f} MB"))

    for size in (10, 100, 1000, 10000):
        d = f"{g}/size-{size}"
        if not os.path.isdir(d):
            sh([f"{REL}/betrace-bench", "reshape", "--spans-per-trace", str(size), "--out", d, proto],
               stdout=subprocess.DEVNULL)
        m = engine(f"trace size {size}", "examples/rules", d, hold=True)
        rows.append(row("trace size (spans)", f"{size:,}", m,
                        f"{m.json['traces']:,} traces, {m.json['signals']:,} signals"))

    for n in [int(x) for x in args.concurrent.split(",")]:
        # The generator holds its whole corpus in memory: big counts are written in parts of
        # at most 200,000 traces, each part its own seed (trace ids are random, so distinct).
        d = f"{g}/traces-{n}"
        if not os.path.exists(f"{d}/done"):
            shutil.rmtree(d, ignore_errors=True)
            part, left = 0, n
            while left > 0:
                k = min(left, 200_000)
                sh([f"{REL}/betrace-corpus", "--seed", str(1 + part), "--traces", str(k), "--format", "proto",
                    "--spans-per-batch", str(SPANS_PER_BATCH), "--batches-per-file", "200",
                    "--out", f"{d}/part-{part:02}"], stdout=subprocess.DEVNULL)
                part, left = part + 1, left - k
            open(f"{d}/done", "w").close()
        parts = sorted(f"{d}/{p}" for p in os.listdir(d) if p.startswith("part-"))
        m = engine(f"{n} traces held", "examples/rules", parts, hold=True)
        if m.json["held_spans"] != m.json["spans"]:
            sys.exit(f"growth: {n} traces: not every span was held: {m.json}")
        rows.append(row("concurrent traces", f"{n:,}", m,
                        f"{m.json['held_spans']:,} spans held at once"))

    load_rows = []
    for axis, pick in (("rule files", 0), ("alternatives in one rule", 1)):
        for n in LOAD_POINTS:
            load_rows.append(load_row(axis, n, load_inputs(g, n)[pick]))

    occurrence_rows = per_occurrence()

    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                     "unknown CPU")
    lines = [
        f"### {date.today().isoformat()} — growth: W1 (seed 1, {args.traces:,} traces) and the corpus generator",
        "",
        f"Machine: {os.cpu_count()} vCPU {cpu_model}. `make bench-growth` (bench/growth.py), {RUNS} runs a point, "
        f"the median by CPU kept; "
        f"took {(time.monotonic() - started) / 60:.1f} min.",
        "",
        "| axis | point | spans/s per core | CPU-s per M spans | CPU-s of each run | peak RSS (MB) | B per held span | check |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ] + rows + [
        "",
        "| load (`betrace check`) | point | CPU-s | CPU-s of each run | peak RSS (MB) |",
        "| --- | ---: | ---: | --- | ---: |",
    ] + load_rows + [
        "",
        "| per span (criterion) | spans | trace-order (µs) | trace-level (µs) | per-span (µs) | ns per span | per-span ÷ trace-level | per-span ÷ trace-order |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ] + occurrence_rows
    report = "\n".join(lines) + "\n"
    with open(f"{out}/growth.md", "w") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
