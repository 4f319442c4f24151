#!/usr/bin/env bash
# End to end, with real parts: builds a collector with ocb (otlp receiver, betrace
# connector and processor, debug/file/otlp exporters), starts it on loopback with
# examples/collector.yaml (the connector) and the playbook rules, runs the demo shop (the
# OpenTelemetry Python SDK over OTLP/HTTP) with every incident switched on, stops the
# collector (which judges and delivers everything held), and checks the file exporters'
# output: exactly the expected violation records, and every span the app sent passed
# through unchanged. Then the same with the processor (tests/e2e/processor.yaml): the
# expected violations as spans in their traces. Then hot reload.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=target/e2e
rm -rf "$OUT" && mkdir -p "$OUT"

go-shim/ocb.sh go-shim/builder-config.yaml "$OUT/ocb.log"

if [ ! -x target/demo-venv/bin/python ]; then
  python3 -m venv target/demo-venv
fi
target/demo-venv/bin/pip install -q -r examples/demo-app/requirements.txt

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

# Starts the collector with config $1, its log in $2; it listens when this returns.
start_collector() {
  BETRACE_OUT="$OUT" target/otelcol-betrace/otelcol-betrace --config "$1" > "$2" 2>&1 &
  COLLECTOR=$!
  trap 'kill $COLLECTOR 2>/dev/null || true' EXIT
  wait_for_collector "$2"
}

# Stops the collector: shutdown judges and delivers everything held.
stop_collector() {
  kill -TERM $COLLECTOR
  wait $COLLECTOR || true
  trap - EXIT
}

# The demo shop with every incident switched on; what it sent is recorded in $1.
run_shop() {
  target/demo-venv/bin/python examples/demo-app/shop.py --endpoint http://127.0.0.1:4318 --traces 5 \
    --incident retry-new-intent --incident ship-before-confirm --incident admin-without-audit --incident phi-without-auth \
    --record "$1"
}

echo "e2e: starting the collector"
start_collector examples/collector.yaml "$OUT/collector.log"
run_shop "$OUT/sent.json"

# Let the idle timeout pass for some traces, then stop: shutdown judges the rest.
sleep 3
# The components' own telemetry, the collector way (its Prometheus endpoint).
python3 - <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8888/metrics", timeout=5).read().decode()
for name in ("otelcol_betrace_spans_received", "otelcol_betrace_traces_judged", "otelcol_betrace_signals", "otelcol_betrace_held_spans"):
    if name not in text:
        sys.exit(f"e2e: metric {name} missing from the collector's telemetry")
print("e2e: betrace telemetry present on :8888/metrics")
PY
stop_collector
grep -q '"rules loaded"\|rules loaded' "$OUT/collector.log" || { echo "e2e: the engine's log events are not in the collector's log"; exit 1; }

python3 tests/e2e/check.py "$OUT/sent.json" "$OUT/traces.jsonl" "$OUT/violations.jsonl"

echo "e2e: the processor, violations as spans"
start_collector tests/e2e/processor.yaml "$OUT/processor.log"
run_shop "$OUT/processor-sent.json"
sleep 2
stop_collector
python3 tests/e2e/check.py "$OUT/processor-sent.json" "$OUT/processor-traces.jsonl"

echo "e2e: hot reload"
python3 tests/e2e/reload.py target/otelcol-betrace/otelcol-betrace "$OUT"
