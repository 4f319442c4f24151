#!/usr/bin/env bash
# make schema-test: docs/rules.schema.json with a real validator from the ecosystem
# (check-jsonschema, from PyPI, into target/schema-venv): every file of the playbook library
# is valid, and every file of tests/schema/bad — each a mistake users make — is refused on
# its own, by the schema and by `betrace check` alike. (tests/schema.rs keeps the schema's
# keys and words equal to the loader's.)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/schema-venv
CHECK="$VENV/bin/check-jsonschema"
if [ ! -x "$CHECK" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q check-jsonschema==0.39.0
fi
"$CHECK" --schemafile docs/rules.schema.json examples/rules/*.yaml
bad=0
for f in tests/schema/bad/*.yaml; do
  if "$CHECK" --schemafile docs/rules.schema.json "$f" > target/schema-check.out 2>&1; then
    echo "schema-test: the schema accepts $f ($(head -1 "$f"))"; bad=1
  fi
  if target/release/betrace check "$f" > /dev/null 2>&1; then
    echo "schema-test: betrace check accepts $f"; bad=1
  fi
done
[ "$bad" -eq 0 ] || exit 1
echo "schema-test: the library is valid; all $(ls tests/schema/bad/*.yaml | wc -l) broken files are refused by the schema and by betrace check"
