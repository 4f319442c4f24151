#!/usr/bin/env bash
# Builds Jaeger v2 from its module (github.com/jaegertracing/jaeger v1.75.0, Jaeger v2.12.0:
# the approved release; v1.76.0 is served too but is not approved) and prints the binary's
# path. `go install` refuses the module (its go.mod has a replace directive); building
# inside the downloaded module works. Cached in target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.75.0
BIN=$PWD/target/jaeger-$VERSION/jaeger
if [ ! -x "$BIN" ]; then
  DIR=$(cd /tmp && go mod download -json "github.com/jaegertracing/jaeger@$VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$(dirname "$BIN")"
  (cd "$DIR" && GOFLAGS=-mod=mod go build -o "$BIN.tmp" ./cmd/jaeger) >&2
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
