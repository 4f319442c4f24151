# BeTrace — build, test and lint everything from the top of the repository.
#
#   make build   the betrace binary and the engine library (rlib, cdylib, staticlib)
#   make test    every test: unit, spec examples, VM-vs-reference properties, CLI,
#                and `betrace test` over the playbook library
#   make schema-test  docs/rules.schema.json with check-jsonschema: the library valid,
#                tests/schema/bad refused (part of make test)
#   make generate  the components' telemetry, status and lifecycle tests from their
#                metadata.yaml (the collector's mdatagen); CI checks nothing changes
#   make lint    rustfmt and clippy, warnings as errors
#   make ffi-test  the C test program against the cdylib, under valgrind
#   make go-test   the Go module in go-shim/ (cgo against the staticlib)
#   make e2e     a real collector built with ocb, every documented configuration started on
#                it (configs-test), the demo app, checked output, the
#                violations in a real VictoriaLogs queried back with LogsQL, the alerting
#                rules and Alertmanager routes of examples/alerts (alerts-test, on the
#                telemetry just scraped), hot reload, the pipeline misbehaving around it, Jaeger
#   make configs-test  every collector configuration in README.md, docs/, the components'
#                READMEs and examples/ (Helm values too) started on the ocb build: each must
#                start without a warning (part of make e2e)
#   make alerts-test  examples/alerts alone: metric names against documentation.md,
#                promtool test rules, amtool check-config and routes test
#   make e2e-scale  two tiers: a loadbalancing collector routing by trace id to three
#                betrace collectors, checked against a single one; then a backend stopped
#                mid-run (SIGTERM, then SIGKILL) and restarted with storage: nothing lost
#                (without storage: `scale.py … --restart [--kill]`, the figures of docs/deploy.md)
#   make soak    the collector with the connector under load for 30 minutes, rules reloaded,
#                every expected signal exactly once, memory flat (SOAK_RATE spans/s offered)
#   make soak-short  the same for 2 minutes, as CI runs it
#   make fuzz    each fuzz target for FUZZ_SECONDS (default 3600; cargo-fuzz on nightly)
#   make demo    replay the demo rules over the demo traces
#   make bench   BeTrace against its peers on workload W1 (bench/peers.py; < 20 min):
#                decode floor, engine, C ABI, three real collectors, replay vs Python
#   make bench-smoke  the same harness on a small W1, as CI runs it
#   make bench-discover  betrace discover on W1 (one core, every core) and as names and keys grow
#   make bench-micro  criterion benchmarks of the engine and the C ABI, and the replay harness

CARGO ?= cargo
BETRACE := target/release/betrace

.PHONY: build test schema-test generate lint ffi-test go-test e2e configs-test alerts-test e2e-scale soak soak-short fuzz demo bench bench-growth bench-discover bench-smoke bench-index bench-micro clean

build:
	$(CARGO) build --release --locked --workspace

test: build
	$(CARGO) test --release --locked --workspace
	$(BETRACE) test examples/rules
	$(MAKE) schema-test
	$(MAKE) ffi-test
	$(MAKE) go-test

schema-test: build
	tests/schema/check.sh

# The Go build cache does not see target/release/libbetrace.a (named in #cgo LDFLAGS): its
# digest in the link flags (an -X the linker ignores) makes a new engine relink the tests.
LIB_DIGEST = $$(sha256sum ../target/release/libbetrace.a | cut -c1-16)
go-test:
	$(CARGO) build --release --locked --lib
	cd go-shim && go vet ./... && go test -race -count=1 -ldflags="-X main.betraceEngineDigest=$(LIB_DIGEST)" ./...
	cd bench/loadgen && go vet ./... && go test -race -count=1 ./...

# Under valgrind the library is built with the system allocator (no default features):
# mimalloc takes its memory with mmap, where valgrind would see no leak at all.
CC ?= cc
ffi-test:
	$(CARGO) build --release --locked --lib
	$(CARGO) build --release --locked --lib --no-default-features --target-dir target/sysalloc
	$(CC) -std=c11 -Wall -Wextra -Werror -O1 -g -I ffi ffi/test_betrace.c -L target/sysalloc/release -lbetrace -lpthread -o target/test_betrace
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -I ffi bench/cabi.c -L target/release -lbetrace -lpthread -o target/bench-cabi
	LD_LIBRARY_PATH=target/sysalloc/release valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  --error-exitcode=1 target/test_betrace
	LD_LIBRARY_PATH=target/release target/test_betrace

generate:
	go-shim/mdatagen.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	@test -z "$$(gofmt -l go-shim bench)" || { echo "gofmt needed:"; gofmt -l go-shim bench; exit 1; }

e2e: build
	tests/e2e/run.sh

configs-test: build
	go-shim/ocb.sh go-shim/builder-config.yaml target/configs-ocb.log
	python3 tests/configs/check.py target/otelcol-betrace/otelcol-betrace

alerts-test: build
	tests/alerts/check.sh

SCALE_TRACES ?= 20000
e2e-scale: build
	go-shim/ocb.sh go-shim/builder-config.yaml target/e2e-scale-ocb.log
	test -x target/demo-venv/bin/python || python3 -m venv target/demo-venv
	target/demo-venv/bin/pip install -q -r examples/demo-app/requirements.txt
	python3 tests/e2e/scale.py target/otelcol-betrace/otelcol-betrace target --traces $(SCALE_TRACES)
	python3 tests/e2e/scale.py target/otelcol-betrace/otelcol-betrace target --traces $(SCALE_TRACES) --restart --storage
	python3 tests/e2e/scale.py target/otelcol-betrace/otelcol-betrace target --traces $(SCALE_TRACES) --restart --kill --storage

SOAK_RATE ?= 10000
soak: build
	go-shim/ocb.sh go-shim/builder-config.yaml target/soak-ocb.log
	python3 tests/soak/soak.py --minutes 30 --rate $(SOAK_RATE)

soak-short: build
	go-shim/ocb.sh go-shim/builder-config.yaml target/soak-ocb.log
	python3 tests/soak/soak.py --minutes 2 --rate 4000

FUZZ_SECONDS ?= 3600
fuzz:
	cd fuzz && for t in ingest rules rules_structured replay_input index; do \
	  cargo +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; \
	done

demo: build
	$(BETRACE) replay --rules examples/rules --format table examples/traces

bench: build
	python3 bench/peers.py

# How cost grows with rules, trace size and concurrent traces (BENCHMARKS.md's growth
# table); about 15 minutes, several GB under target/bench/growth.
bench-growth: build
	python3 bench/growth.py

bench-smoke: build
	python3 bench/peers.py --traces 1000 --runs 1 --collector-runs 1 --out target/bench-smoke

# betrace discover: throughput on W1 (one core, every core) and growth with span names
# and keys (BENCHMARKS.md, "discover"); a few minutes.
bench-discover: build
	python3 bench/discover.py

# The index alone (also the end of `make bench`): ten times W1, indexed against plain replay.
bench-index: build
	python3 bench/index.py

bench-micro:
	$(CARGO) bench --locked --bench engine --bench ffi --bench replay

clean:
	$(CARGO) clean
