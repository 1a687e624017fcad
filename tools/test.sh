#!/usr/bin/env bash
# Run every check of migplane: install what is missing, lint, check the sample
# config, then the unit, property and functional tests (the functional ones
# build real multi-host labs and need root, QEMU and libvirtd).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install.sh
PY=.venv/bin/python

echo "==> ruff"
.venv/bin/ruff check .

echo "==> sample configuration is up to date"
tmp=$(mktemp)
.venv/bin/oslo-config-generator --config-file etc/migplane-config-generator.conf --output-file "$tmp"
if ! diff -u etc/migplane.conf.sample "$tmp"; then
  echo "etc/migplane.conf.sample is stale: run tools/genconfig.sh and commit it" >&2
  rm -f "$tmp"; exit 1
fi
rm -f "$tmp"

echo "==> pytest"
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
rm -f .coverage
if [ $# -gt 0 ]; then
  # A chosen subset (e.g. tools/test.sh tests/unit -k flow): no coverage gate.
  exec $PY -m pytest -p no:cacheprovider "$@"
fi
$PY -m pytest -p no:cacheprovider --cov=migplane --cov-branch --cov-report= tests examples
echo "==> branch coverage of migplane.core (must be >= 90 %)"
$PY -m coverage report --include='migplane/core/*' --fail-under=90
