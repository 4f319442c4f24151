#!/usr/bin/env bash
# Regenerates each component's telemetry, status and lifecycle tests from its metadata.yaml
# with the collector's mdatagen (go.opentelemetry.io/collector/cmd/mdatagen), built into
# target/tools at the version of the collector modules in go.mod.
#
# `go install …@version` asks the module proxy for mdatagen's version list to check for a
# deprecation, and the proxy serves none for it: mdatagen is built from a throwaway module
# that requires the exact version instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v0.159.0
TOOLS=$PWD/target/tools
MDATAGEN=$TOOLS/mdatagen-$VERSION
if [ ! -x "$MDATAGEN" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && go mod init mdatagen-build >/dev/null 2>&1 \
    && GOFLAGS=-mod=mod go get "go.opentelemetry.io/collector/cmd/mdatagen@$VERSION" >/dev/null 2>&1 \
    && go build -o "$MDATAGEN" go.opentelemetry.io/collector/cmd/mdatagen)
fi
for c in go-shim/connector/betraceconnector go-shim/processor/betraceprocessor; do
  (cd "$c" && "$MDATAGEN" metadata.yaml)
done
gofmt -l go-shim | grep . && { echo "mdatagen: generated code is not gofmt-clean"; exit 1; } || true
