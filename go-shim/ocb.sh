#!/usr/bin/env bash
# Builds a collector from an ocb manifest, installing the OpenTelemetry Collector Builder
# (ocb) into target/tools first if it is missing or another version. Needs libbetrace.a
# (`make build`) when the manifest has the betrace components.
#
#   go-shim/ocb.sh MANIFEST LOG
set -euo pipefail
cd "$(dirname "$0")/.."
MANIFEST=$1
LOG=$2
TOOLS=target/tools
OCB_VERSION=v0.159.0
mkdir -p "$TOOLS" "$(dirname "$LOG")"
if [ ! -x "$TOOLS/builder" ] || ! "$TOOLS/builder" version 2>&1 | grep -q "$OCB_VERSION"; then
  echo "ocb: installing $OCB_VERSION"
  GOBIN="$PWD/$TOOLS" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
fi
# The Go build cache does not see libraries named in #cgo LDFLAGS: with the same Go code,
# a rebuilt libbetrace.a would not be linked in, and the collector would run the old
# engine. The library's digest in the link flags (an -X for a symbol nobody defines, which
# the linker ignores) makes every new library a new link. ocb's default flags are -s -w.
LDFLAGS="-s -w"
if [ -f target/release/libbetrace.a ]; then
  LDFLAGS="$LDFLAGS -X main.betraceEngineDigest=$(sha256sum target/release/libbetrace.a | cut -c1-16)"
fi
echo "ocb: building from $MANIFEST"
LOG_ABS="$PWD/$LOG"
(cd "$(dirname "$MANIFEST")" && "$OLDPWD/$TOOLS/builder" --config "$(basename "$MANIFEST")" --ldflags "$LDFLAGS" > "$LOG_ABS" 2>&1) \
  || { tail -20 "$LOG"; exit 1; }
