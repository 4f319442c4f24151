#!/usr/bin/env bash
# Builds VictoriaLogs (Apache-2.0) from its Go module and prints the binary's path. The
# module has no replace directive, so `go install pkg@version` builds it as released.
# Cached in target/: a second call prints the path at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=v1.52.2
BIN=$PWD/target/victorialogs-$VERSION/victoria-logs
if [ ! -x "$BIN" ]; then
  mkdir -p "$(dirname "$BIN")"
  # Built outside the repository, so go-shim's go.mod plays no part.
  (cd /tmp && GOBIN="$(dirname "$BIN")" go install "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$VERSION") >&2
fi
echo "$BIN"
