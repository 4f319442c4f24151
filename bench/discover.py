#!/usr/bin/env python3
"""`make bench-discover`: what `betrace discover` costs (BENCHMARKS.md, "discover").

Each figure is measured, one process per run (CPU time and peak RSS from the kernel, as
`make bench` measures its stages), the median of --runs kept:

  throughput   W1 (the corpus of `make bench`, ~1M spans) mined with every template on one
               core (--threads 1) and on every core, beside a replay of W1 with the five
               rules on one core (the decode floor's neighbour): spans per CPU-second.
  spans        W1's first 1, 3 and 10 files on one core: CPU and memory as the spans grow.
  names        synthetic corpora of 10,000 traces of 20 spans whose names are drawn from
               10, 100 and 1,000 distinct names (each trace a random sequence of them):
               CPU and memory as the pairs grow.
  keys         the same corpus (100 names) with 0, 8 and 64 attribute keys per span, each
               taking one of 20 values.

Results go to target/bench/discover.md (and stdout).
"""
import argparse
import json
import os
import random
import subprocess
import sys
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import REL, ROOT, generate, median, run_measured, sh  # noqa: E402


def synthetic(out, names, keys, traces=10_000, spans=20, seed=1):
    """A corpus of `traces` traces of `spans` spans (a root, then children at increasing
    times), names drawn from `names` distinct ones, `keys` attributes per span."""
    d = f"{out}/discover-n{names}-k{keys}"
    stamp = f"{d}/stamp"
    want = f"traces={traces} spans={spans} names={names} keys={keys} seed={seed}"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return d
    os.makedirs(d, exist_ok=True)
    rng = random.Random(seed)
    base = 1_732_521_600_000_000_000
    with open(f"{d}/traces.json", "w") as f:
        batch = []
        for t in range(traces):
            tid = f"{t + 1:032x}"
            start = base + t * 20_000_000_000
            root = f"{1:016x}"
            out_spans = [{"traceId": tid, "spanId": root, "name": "root",
                          "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 10_000_000)}]
            for s in range(1, spans):
                at = start + s * 100_000
                attrs = [{"key": f"k{k}", "value": {"stringValue": f"v{rng.randrange(20)}"}} for k in range(keys)]
                out_spans.append({"traceId": tid, "spanId": f"{s + 1:016x}", "parentSpanId": root,
                                  "name": f"op.{rng.randrange(names)}",
                                  "startTimeUnixNano": str(at), "endTimeUnixNano": str(at + 50_000),
                                  "attributes": attrs})
            batch.extend(out_spans)
            if len(batch) >= 512 or t == traces - 1:
                f.write(json.dumps({"resourceSpans": [{"resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "synthetic"}}]},
                    "scopeSpans": [{"spans": batch}]}]}) + "\n")
                batch = []
    with open(stamp, "w") as f:
        f.write(want)
    return d


def w1_spans(betrace, w1):
    """W1's spans, as discover's summary counts them."""
    p = subprocess.run([betrace, "discover", "--top", "1", f"{w1}/proto"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    return int(p.stderr.split("discover: ", 1)[1].split(" spans", 1)[0])


def measure(name, cmd, runs):
    ms = [run_measured(name, cmd, stdout_file="/dev/null") for _ in range(runs)]
    return median(ms)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=50_000, help="traces in W1 (default 50,000, as make bench)")
    ap.add_argument("--seed", type=int, default=1, help="W1's seed (default 1, as make bench)")
    ap.add_argument("--runs", type=int, default=3, help="runs per point; the median is kept")
    ap.add_argument("--out", default="target/bench", help="where W1 and the corpora go")
    args = ap.parse_args()
    out = os.path.join(ROOT, args.out)
    sh(["cargo", "build", "--release", "--locked", "-p", "betrace", "-p", "betrace-corpus"])
    w1 = generate(out, args.traces, args.seed)
    betrace = f"{REL}/betrace"
    lines = [f"## discover — {date.today()}", "",
             f"Machine: {os.cpu_count()} CPUs. Median of {args.runs} runs; CPU = user + system seconds of the process.", ""]
    # Throughput on W1.
    one = measure("discover W1, one core", [betrace, "discover", "--threads", "1", "--top", "0", f"{w1}/proto"], args.runs)
    every = measure("discover W1, every core", [betrace, "discover", "--top", "0", f"{w1}/proto"], args.runs)
    floor = measure("replay W1, five rules, one core",
                    [betrace, "replay", "--no-index", "--threads", "1", "--rules", f"{w1}/five-rules.yaml", f"{w1}/proto"], args.runs)
    spans = w1_spans(betrace, w1)
    lines += ["| W1 | CPU-s | wall s | peak RSS MB | spans per CPU-s |", "| --- | ---: | ---: | ---: | ---: |"]
    for m in (one, every, floor):
        rate = f"{spans / m.cpu:,.0f}"
        lines.append(f"| {m.name} | {m.cpu:.2f} | {m.wall:.2f} | {m.rss_kb / 1024:.0f} | {rate} |")
    # Spans: the first 1, 3 and all 10 files of W1 (about 99,000 spans each), one core:
    # CPU should grow with the spans, memory not.
    files = sorted(os.path.join(w1, "proto", f) for f in os.listdir(os.path.join(w1, "proto")))
    lines += ["", "| W1's first files, one core | spans | CPU-s | peak RSS MB | spans per CPU-s |", "| --- | ---: | ---: | ---: | ---: |"]
    for n in (1, 3, len(files)):
        base = [betrace, "discover", "--threads", "1", "--format", "jsonl"]
        m = measure(f"discover W1, {n} files", base + ["--top", "0"] + files[:n], args.runs)
        p = subprocess.run(base + ["--top", "1"] + files[:n], cwd=ROOT, capture_output=True, text=True, check=True)
        n_spans = int(p.stderr.split("discover: ", 1)[1].split(" spans", 1)[0])
        lines.append(f"| {n} of {len(files)} | {n_spans:,} | {m.cpu:.2f} | {m.rss_kb / 1024:.0f} | {n_spans / m.cpu:,.0f} |")
    lines += ["", "| corpus (10,000 traces × 20 spans) | CPU-s | peak RSS MB | found |", "| --- | ---: | ---: | ---: |"]
    for names, keys in ((10, 8), (100, 8), (1000, 8), (100, 0), (100, 64)):
        d = synthetic(out, names, keys)
        m = measure(f"discover {names} names, {keys} keys", [betrace, "discover", "--format", "jsonl", "--top", "0", f"{d}/traces.json"], args.runs)
        found = run_measured("count", [betrace, "discover", "--format", "jsonl", "--top", "0", f"{d}/traces.json"]).out.count("\n")
        lines.append(f"| {names} names, {keys} keys | {m.cpu:.2f} | {m.rss_kb / 1024:.0f} | {found} |")
    text = "\n".join(lines) + "\n"
    with open(f"{out}/discover.md", "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
