#!/usr/bin/env bash
# Builds promtool (Prometheus, Apache-2.0) and amtool (Alertmanager, Apache-2.0) from their
# Go modules and prints their paths, one a line. Cached in target/: a second call prints the
# paths at once (the Go build cache makes a rebuild in a fresh clone a link).
set -euo pipefail
cd "$(dirname "$0")/../.."
PROMETHEUS=v0.316.0    # Prometheus 3.x's module version: the newest the Go module proxy serves
ALERTMANAGER=v0.35.0
build() {  # PACKAGE VERSION BINARY [GO BUILD FLAGS]
  local bin=$PWD/target/$3-$2/$3
  if [ ! -x "$bin" ]; then
    mkdir -p "$(dirname "$bin")"
    # Built outside the repository, so go-shim's go.mod plays no part.
    (cd /tmp && GOBIN="$(dirname "$bin")" go install "${@:4}" "$1@$2") >&2
  fi
  echo "$bin"
}
# remove_all_sd leaves Prometheus's service discovery plugins out (the cloud SDKs: rule
# tests need none): a build with an empty Go cache takes 224 s instead of about 410 s here.
build github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS" promtool -tags remove_all_sd
build github.com/prometheus/alertmanager/cmd/amtool "$ALERTMANAGER" amtool
