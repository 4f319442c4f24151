#!/usr/bin/env python3
"""`make bench-index` (also run at the end of `make bench`): a replay through the index
against a plain replay, on ten times W1 — ten seeds, each W1's size, about 10M spans —
where one trace in a hundred also carries a `refund.review` span, and one rule needs it.
Protobuf with per-message zstd, and JSON lines, 512 spans per batch.

Stages, each its own process, run in turn (the median run by CPU kept):

  index/FORMAT           `betrace index --force` over the ten seeds' files
  replay/FORMAT/plain    `betrace replay --no-index` with the one rule
  replay/FORMAT/indexed  the same through the indexes

Checks: the indexed replay's signals are byte for byte the plain replay's, and so is its
evidence (`--format summary`, run once each, unmeasured); there are signals to compare.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import REL, ROOT, SPANS_PER_BATCH, generator_digest, log, rounds, sh  # noqa: E402

RULE = """rules:
  - id: refund-review-audited
    name: A refund review is audit-logged
    severity: high
    condition: |
      when { refund.review }
        always { audit.log }
"""
FORMATS = (("proto", "zstd"), ("json", "none"))


def generate(out, traces, copies):
    """Ten W1-sized corpora (seeds 1…copies), 1% of traces with a `refund.review` span."""
    root = f"{out}/w10"
    stamp = f"{root}/stamp"
    want = f"traces={traces} copies={copies} rare=0.01 spans_per_batch={SPANS_PER_BATCH} generator={generator_digest()}"
    if os.path.exists(stamp) and open(stamp).read() == want:
        log(f"ten times W1 already generated ({want})")
        return root
    shutil.rmtree(root, ignore_errors=True)
    for fmt, comp in FORMATS:
        for seed in range(1, copies + 1):
            sh([f"{REL}/betrace-corpus", "--seed", str(seed), "--traces", str(traces), "--rare", "0.01",
                "--format", fmt, "--compression", comp, "--spans-per-batch", str(SPANS_PER_BATCH),
                "--batches-per-file", "200", "--out", f"{root}/{fmt}/seed-{seed}"])
    with open(stamp, "w") as f:
        f.write(want)
    return root


def size(path, index):
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(f"{d}/{f}") for f in files if f.endswith(".betrace-idx") == index)
    return total


def summary(rule, extra, inputs):
    return subprocess.run([f"{REL}/betrace", "replay", "--rules", rule, "--format", "summary"] + extra + [inputs],
                          check=True, cwd=ROOT, capture_output=True).stdout


def run(out, traces, copies, runs):
    started = time.monotonic()
    root = generate(out, traces, copies)
    rule = f"{root}/refund-rule.yaml"
    with open(rule, "w") as f:
        f.write(RULE)
    stages, files = [], {}
    for fmt, _ in FORMATS:
        d = f"{root}/{fmt}"
        for kind, extra in (("plain", ["--no-index"]), ("indexed", [])):
            files[(fmt, kind)] = f"{out}/index-{fmt}-{kind}.jsonl"
        stages += [
            (f"index/{fmt}", [f"{REL}/betrace", "index", "--force", d], {"stdout_file": f"{out}/index-{fmt}.txt"}),
            (f"replay/{fmt}/plain", [f"{REL}/betrace", "replay", "--no-index", "--rules", rule, "--format", "jsonl",
                                     "--output", files[(fmt, "plain")], d], {}),
            (f"replay/{fmt}/indexed", [f"{REL}/betrace", "replay", "--rules", rule, "--format", "jsonl",
                                       "--output", files[(fmt, "indexed")], d], {}),
        ]
    measured = rounds(runs, stages)
    lines = [
        f"#### The index — ten times W1 ({copies} seeds × {traces:,} traces), one rule on 1% of traces",
        "",
        "| stage | wall (s) | CPU-s | peak RSS (MB) | CPU-s of each run | check |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    ratios = []
    for fmt, _ in FORMATS:
        d = f"{root}/{fmt}"
        plain, indexed = open(files[(fmt, "plain")], "rb").read(), open(files[(fmt, "indexed")], "rb").read()
        n = plain.count(b"\n")
        if plain != indexed or n == 0:
            sys.exit(f"bench: {fmt}: the indexed replay's {indexed.count(chr(10).encode())} signals differ "
                     f"from the plain replay's {n}")
        if summary(rule, ["--no-index"], d) != summary(rule, [], d):
            sys.exit(f"bench: {fmt}: the indexed replay's evidence differs from the plain replay's")
        checks = {
            f"index/{fmt}": f"{size(d, True):,} B of index for {size(d, False):,} B of input",
            f"replay/{fmt}/plain": f"{n:,} signals",
            f"replay/{fmt}/indexed": f"{n:,} signals, byte for byte the plain replay's; evidence equal",
        }
        for name in checks:
            m = measured[name]
            lines.append(f"| {name} | {m.wall:.2f} | {m.cpu:.2f} | {m.rss_kb / 1024:,.0f} | "
                         f"{', '.join(f'{c:.2f}' for c in m.cpus)} | {checks[name]} |")
        p, i, b = measured[f"replay/{fmt}/plain"], measured[f"replay/{fmt}/indexed"], measured[f"index/{fmt}"]
        ratios += [
            (f"{fmt}: plain ÷ indexed replay, wall (goal ≥ 20)", p.wall / i.wall),
            (f"{fmt}: plain ÷ indexed replay, CPU", p.cpu / i.cpu),
            (f"{fmt}: index size ÷ input size (goal ≤ 0.05)", size(d, True) / size(d, False)),
            (f"{fmt}: index build ÷ plain replay, wall (goal < 1)", b.wall / p.wall),
        ]
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in ratios]
    lines += ["", f"Run took {(time.monotonic() - started) / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=int, default=50_000, help="traces per seed (default 50,000: W1)")
    ap.add_argument("--copies", type=int, default=10, help="seeds (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each stage (default 3)")
    ap.add_argument("--out", default="target/bench", help="where the corpora and results go")
    args = ap.parse_args()
    os.chdir(ROOT)
    os.makedirs(args.out, exist_ok=True)
    report = run(args.out, args.traces, args.copies, args.runs)
    with open(f"{args.out}/results-index.md", "w") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
