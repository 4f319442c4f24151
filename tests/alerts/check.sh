#!/usr/bin/env bash
# The alerting rules and the Alertmanager configuration of examples/alerts, checked with the
# real tools (built from their modules by tests/alerts/tools.sh, cached in target/):
#   1. every metric name the rules read is an instrument of the components'
#      documentation.md, and (given METRICS.txt, a scrape of a running collector, as
#      `make e2e` passes it) a series of the collector exactly as written; the routing
#      labels agree with the rule library (tests/alerts/names.py);
#   2. `promtool check rules` and `promtool test rules` (tests/alerts/betrace.rules.test.yaml);
#   3. `amtool check-config` and `amtool config routes test` for each alert the promtool
#      test expects, with its labels (tests/alerts/routes.py).
#
#   tests/alerts/check.sh [METRICS.txt]
set -euo pipefail
cd "$(dirname "$0")/../.."
{ read -r PROMTOOL; read -r AMTOOL; } < <(tests/alerts/tools.sh)
test -x target/release/betrace || cargo build --release --locked --bin betrace
python3 tests/alerts/names.py examples/alerts/betrace.rules.yaml tests/alerts/betrace.rules.test.yaml target/release/betrace "$@"
"$PROMTOOL" check rules examples/alerts/betrace.rules.yaml
"$PROMTOOL" test rules tests/alerts/betrace.rules.test.yaml
"$AMTOOL" check-config examples/alerts/alertmanager.yaml
python3 tests/alerts/routes.py "$AMTOOL"
