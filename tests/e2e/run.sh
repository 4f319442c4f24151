#!/usr/bin/env bash
# End to end, with real parts: builds a collector with ocb (otlp receiver, betrace
# connector and processor, debug/file/otlp_grpc/otlp_http exporters), starts every collector
# configuration the documents show (tests/configs/check.py: each must start without a
# warning), starts it on loopback with
# examples/collector.yaml (the connector) and the playbook rules, plus
# examples/victorialogs.yaml (its logs also to a real VictoriaLogs, built from its module,
# over OTLP/HTTP), runs the demo shop (the OpenTelemetry Python SDK over OTLP/HTTP) with
# every incident switched on, stops the collector (which judges and delivers everything
# held), and checks the file exporters' output: exactly the expected violation records,
# and every span the app sent passed through unchanged; then queries VictoriaLogs with
# LogsQL (tests/e2e/victorialogs.py) and checks the alerting rules and Alertmanager
# routes of examples/alerts against the telemetry just scraped (tests/alerts/check.sh).
# Then the same with the processor (tests/e2e/processor.yaml): the
# expected violations as spans in their traces. Then hot reload (a log line per change, not
# per reload). Then the pipeline around it misbehaving (tests/e2e/pipeline.py: a dead
# backend, its own spans sent back, empty ids, a trace past max_spans, bad configs). Then
# Jaeger v2 (built from
# its module): the shop's traces through the collector into Jaeger, replayed from it — the
# live signals exactly, and the live per-rule applied/violated counts exactly; and a
# 20,000-trace corpus loaded into Jaeger, replayed from it and from its files: the same;
# and discovered from it and from its files: the same candidates.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=target/e2e
rm -rf "$OUT" && mkdir -p "$OUT"

go-shim/ocb.sh go-shim/builder-config.yaml "$OUT/ocb.log"

echo "e2e: every collector configuration of the documents starts on this build without a warning"
python3 tests/configs/check.py target/otelcol-betrace/otelcol-betrace

if [ ! -x target/demo-venv/bin/python ]; then
  python3 -m venv target/demo-venv
fi
target/demo-venv/bin/pip install -q -r examples/demo-app/requirements.txt

# Whatever this script started and has not stopped yet is stopped when it exits, failed or
# not: the collector, VictoriaLogs, Jaeger (each variable is emptied once it has stopped).
COLLECTOR= VL_PID= JAEGER_PID=
trap 'kill $COLLECTOR $VL_PID $JAEGER_PID 2>/dev/null || true' EXIT

# Waits until the collector started as $COLLECTOR listens on 4318; shows its log ($1) if it
# died instead.
wait_for_collector() {
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', 4318), 0.2)" 2>/dev/null; then return; fi
    if ! kill -0 $COLLECTOR 2>/dev/null; then tail -30 "$1"; exit 1; fi
    sleep 0.2
  done
  echo "e2e: the collector did not listen on 4318 within 20 s"; tail -30 "$1"; exit 1
}

# Starts the collector with config $1 (and any further configs merged over it, $3…), its
# log in $2; it listens when this returns.
start_collector() {
  local log=$2 configs=(--config "$1")
  shift 2
  for c in "$@"; do configs+=(--config "$c"); done
  BETRACE_OUT="$OUT" target/otelcol-betrace/otelcol-betrace "${configs[@]}" > "$log" 2>&1 &
  COLLECTOR=$!
  wait_for_collector "$log"
}

# Stops the collector: shutdown judges and delivers everything held.
stop_collector() {
  kill -TERM $COLLECTOR
  wait $COLLECTOR || true
  COLLECTOR=
}

# The demo shop with every incident switched on; what it sent is recorded in $1.
run_shop() {
  target/demo-venv/bin/python examples/demo-app/shop.py --endpoint http://127.0.0.1:4318 --traces 5 \
    --incident retry-new-intent --incident ship-before-confirm --incident admin-without-audit --incident phi-without-auth \
    --record "$1"
}

echo "e2e: VictoriaLogs (built from its module), a real logs backend"
VICTORIALOGS=$(tests/e2e/victorialogs.sh)
VL_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export VICTORIALOGS_URL=http://127.0.0.1:$VL_PORT
"$VICTORIALOGS" -storageDataPath "$OUT/victorialogs" -httpListenAddr "127.0.0.1:$VL_PORT" \
  -retentionPeriod 1d > "$OUT/victorialogs.log" 2>&1 &
VL_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('$VICTORIALOGS_URL/health', timeout=0.5)" 2>/dev/null; then break; fi
  if ! kill -0 $VL_PID 2>/dev/null; then tail -30 "$OUT/victorialogs.log"; exit 1; fi
  sleep 0.2
done

echo "e2e: starting the collector"
start_collector examples/collector.yaml "$OUT/collector.log" examples/victorialogs.yaml
run_shop "$OUT/sent.json"

# Let the idle timeout pass for some traces, then stop: shutdown judges the rest.
sleep 3
# The components' own telemetry, the collector way (its Prometheus endpoint).
python3 - "$OUT/metrics.txt" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8888/metrics", timeout=5).read().decode()
open(sys.argv[1], "w").write(text)  # the alerting rules' metric names are checked against it
# Every instrument the connector's generated documentation.md lists (from metadata.yaml).
names = re.findall(r"^### (otelcol_connector_betrace_\w+)", open("go-shim/connector/betraceconnector/documentation.md").read(), re.M)
if len(names) < 20:
    sys.exit(f"e2e: documentation.md lists {len(names)} instruments")
missing = [n for n in names if not re.search("^" + n + r"(_total|_seconds_total)?[{ ]", text, re.M)]
if missing:
    sys.exit(f"e2e: {missing} missing from the collector's telemetry")
print(f"e2e: all {len(names)} instruments of the connector's metadata.yaml present on :8888/metrics")
PY
stop_collector
grep -q '"rules loaded"\|rules loaded' "$OUT/collector.log" || { echo "e2e: the engine's log events are not in the collector's log"; exit 1; }

python3 tests/e2e/check.py "$OUT/sent.json" "$OUT/traces.jsonl" "$OUT/violations.jsonl"

echo "e2e: the violations in VictoriaLogs, queried with LogsQL"
# What each record should hold: the same engine, offline, over the traces that went through.
target/release/betrace replay --rules examples/rules "$OUT/traces.jsonl" --output "$OUT/replay.jsonl" 2> "$OUT/replay.log" \
  || { cat "$OUT/replay.log"; exit 1; }
python3 tests/e2e/victorialogs.py "$VICTORIALOGS_URL" "$OUT/sent.json" "$OUT/replay.jsonl"
kill $VL_PID && wait $VL_PID || true
VL_PID=

echo "e2e: alerting rules and Alertmanager routes (examples/alerts)"
tests/alerts/check.sh "$OUT/metrics.txt"

echo "e2e: the processor, violations as spans"
start_collector tests/e2e/processor.yaml "$OUT/processor.log"
run_shop "$OUT/processor-sent.json"
sleep 2
stop_collector
python3 tests/e2e/check.py "$OUT/processor-sent.json" "$OUT/processor-traces.jsonl"

echo "e2e: hot reload"
python3 tests/e2e/reload.py target/otelcol-betrace/otelcol-betrace "$OUT"

echo "e2e: when the pipeline around BeTrace misbehaves"
python3 tests/e2e/pipeline.py target/otelcol-betrace/otelcol-betrace "$OUT"

echo "e2e: Jaeger — the live path into it, then replay from it"
JAEGER=$(tests/e2e/jaeger.sh)
read -r JQ JQG JOG JOH < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export JAEGER_QUERY_PORT=$JQ JAEGER_QUERY_GRPC_PORT=$JQG JAEGER_OTLP_GRPC_PORT=$JOG JAEGER_OTLP_HTTP_PORT=$JOH
# Jaeger's query extension would trace itself to localhost:4317, where a BeTrace collector
# listens (a ninth service, "jaeger"): tests/e2e/jaeger.yaml sets enable_tracing: false.
"$JAEGER" --config tests/e2e/jaeger.yaml > "$OUT/jaeger.log" 2>&1 &
JAEGER_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$JQ/api/v3/services', timeout=0.5)" 2>/dev/null; then break; fi
  if ! kill -0 $JAEGER_PID 2>/dev/null; then tail -30 "$OUT/jaeger.log"; exit 1; fi
  sleep 0.2
done
STORE=http://127.0.0.1:$JQ
FROM=$(date -u -d '-2 min' +%Y-%m-%dT%H:%M:%SZ)
start_collector tests/e2e/jaeger-collector.yaml "$OUT/jaeger-collector.log"
run_shop "$OUT/jaeger-sent.json"
# Past the idle timeout every trace is judged: the live counts are final.
sleep 4
python3 - "$OUT/live-counts.json" <<'PY'
import json, re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8888/metrics", timeout=5).read().decode()
counts = {}
for metric, field in (("otelcol_connector_betrace_traces_applied", "applied"), ("otelcol_connector_betrace_signals", "violated")):
    for m in re.finditer(metric + r'(?:_total)?\{[^}]*betrace_rule_id="([^"]+)"[^}]*\} (\d+)', text):
        counts.setdefault(m.group(1), {"applied": 0, "violated": 0})[field] = int(m.group(2))
if not counts:
    sys.exit("e2e: no per-rule applied counts in the collector's telemetry")
json.dump(counts, open(sys.argv[1], "w"))
PY
stop_collector
TO=$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)
# A query cap far below the number of traces: the slices must split to list them all.
target/release/betrace replay --rules examples/rules --jaeger "$STORE" --from "$FROM" --to "$TO" \
  --jaeger-limit 2 --output "$OUT/jaeger-replay.jsonl" 2> "$OUT/jaeger-replay.log" || { cat "$OUT/jaeger-replay.log"; exit 1; }
grep -q "time slices split" "$OUT/jaeger-replay.log" && ! grep -q " 0 time slices split" "$OUT/jaeger-replay.log" \
  || { echo "e2e: replay from Jaeger split no slice under a cap of 2"; cat "$OUT/jaeger-replay.log"; exit 1; }
python3 tests/e2e/same_signals.py "$OUT/jaeger-live-violations.jsonl" "$OUT/jaeger-replay.jsonl"
target/release/betrace replay --rules examples/rules --jaeger "$STORE" --from "$FROM" --to "$TO" \
  --format summary --report "$OUT/jaeger-evidence.html" --output "$OUT/jaeger-summary.txt" 2>/dev/null
python3 - "$OUT/live-counts.json" "$OUT/jaeger-summary.txt" <<'PY'
import json, sys
live = json.load(open(sys.argv[1]))
replayed = {}
for line in open(sys.argv[2]):
    if not line.strip():
        break  # the per-rule table ends here; breakdowns follow
    cells = line.split()
    if len(cells) >= 5 and cells[2].isdigit() and cells[3].isdigit():
        replayed[cells[0]] = {"applied": int(cells[2]), "violated": int(cells[3])}
replayed = {k: v for k, v in replayed.items() if k != "total" and v["applied"] > 0}
if live != replayed:
    for k in sorted(set(live) | set(replayed)):
        if live.get(k) != replayed.get(k):
            print(f"e2e: rule {k}: live {live.get(k)} replay {replayed.get(k)}")
    sys.exit("e2e FAILED: the live per-rule counts differ from replay's summary")
print(f"e2e ok: the live telemetry's applied/violated counts equal replay's summary for {len(live)} rules")
PY

echo "e2e: a 20,000-trace corpus loaded into Jaeger: replay from it equals replay of its files"
cargo build --release --locked -p betrace-corpus
target/release/betrace-corpus --seed 11 --traces 20000 --out "$OUT/corpus" --expected "$OUT/corpus-expected.jsonl"
python3 tests/e2e/load_otlp.py "http://127.0.0.1:$JOH/v1/traces" "$OUT/corpus"
target/release/betrace replay --rules examples/rules --jaeger "$STORE" --from 2024-11-25 --to 2024-11-25 \
  --output "$OUT/corpus-jaeger.jsonl" 2> "$OUT/corpus-jaeger.log" || { cat "$OUT/corpus-jaeger.log"; exit 1; }
target/release/betrace replay --rules examples/rules "$OUT/corpus" --output "$OUT/corpus-files.jsonl" 2>/dev/null
sort "$OUT/corpus-jaeger.jsonl" > "$OUT/corpus-jaeger.sorted"
sort "$OUT/corpus-files.jsonl" > "$OUT/corpus-files.sorted"
if ! cmp -s "$OUT/corpus-jaeger.sorted" "$OUT/corpus-files.sorted"; then
  diff "$OUT/corpus-jaeger.sorted" "$OUT/corpus-files.sorted" | head -20
  echo "e2e FAILED: replay from Jaeger differs from replay of the same corpus's files"; exit 1
fi
N=$(wc -l < "$OUT/corpus-files.sorted"); WANT=$(wc -l < "$OUT/corpus-expected.jsonl")
[ "$N" -eq "$WANT" ] || { echo "e2e FAILED: $N signals, the corpus injected $WANT"; exit 1; }
head -3 "$OUT/corpus-jaeger.log" | sed 's/^/e2e: /'
echo "e2e ok: 20,000 traces from Jaeger: the same $N signals as from their files"

echo "e2e: discover from the same Jaeger equals discover of the corpus's files"
# A query cap of 500: the window's slices split, and traces returned again are kept once.
target/release/betrace discover --jaeger "$STORE" --from 2024-11-25 --to 2024-11-25 --jaeger-limit 500 \
  --format jsonl --top 0 --output "$OUT/discover-jaeger.jsonl" 2> "$OUT/discover-jaeger.log" \
  || { cat "$OUT/discover-jaeger.log"; exit 1; }
target/release/betrace discover "$OUT/corpus" --format jsonl --top 0 \
  --output "$OUT/discover-files.jsonl" 2> "$OUT/discover-files.log" || { cat "$OUT/discover-files.log"; exit 1; }
grep -q "20000 traces fetched" "$OUT/discover-jaeger.log" && grep -q " 20000 complete traces mined" "$OUT/discover-jaeger.log" \
  || { echo "e2e FAILED: discover did not fetch and mine each of the 20,000 traces once"; cat "$OUT/discover-jaeger.log"; exit 1; }
python3 - "$OUT/discover-jaeger.jsonl" "$OUT/discover-files.jsonl" <<'PY'
import json, sys
# Each candidate by its condition: id, support, violations and (when all are named) the
# traces that broke it. The first 20 exceptions of more are in replay's order, which the
# store's order of traces changes.
def load(path):
    found = {}
    for line in open(path):
        c = json.loads(line)
        named = sorted(c["exceptions"]) if c["violations"] <= len(c["exceptions"]) else None
        found[c["condition"]] = (c["id"], c["support"], c["violations"], named)
    return found
store, files = load(sys.argv[1]), load(sys.argv[2])
if not files:
    sys.exit("e2e FAILED: discover found nothing in the corpus's files")
if store != files:
    for k in sorted(set(store) | set(files)):
        if store.get(k) != files.get(k):
            print(f"e2e: {k}: from Jaeger {store.get(k)}, from the files {files.get(k)}")
    sys.exit("e2e FAILED: discover from Jaeger differs from discover of the same corpus's files")
print(f"e2e ok: discover from Jaeger: the same {len(store)} candidates, counts and exceptions as from the files")
PY
kill $JAEGER_PID 2>/dev/null || true
JAEGER_PID=
