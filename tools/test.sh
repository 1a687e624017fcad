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

echo "==> no leftover files committed"
if git rev-parse --git-dir >/dev/null 2>&1; then
  leftovers=$(git ls-files -- '*.orig' '*.rej' '*.bak' '*~')
  if [ -n "$leftovers" ]; then
    printf 'leftover files committed (remove them with git rm):\n%s\n' "$leftovers" >&2
    exit 1
  fi
else
  echo "(not a git checkout: skipped)"
fi

echo "==> no wall-clock assertions in tests"
$PY tools/check_wallclock.py

echo "==> sample configuration is up to date"
tmp=$(mktemp)
.venv/bin/oslo-config-generator --config-file etc/migplane-config-generator.conf --output-file "$tmp"
if ! diff -u etc/migplane.conf.sample "$tmp"; then
  echo "etc/migplane.conf.sample is stale: run tools/genconfig.sh and commit it" >&2
  rm -f "$tmp"; exit 1
fi
rm -f "$tmp"

# A failure under load is the first thing to rule out: say how busy the
# machine was when a run failed (each failed test's report says it too).
load_average() {
  echo "load average as the failed pytest run ended: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (1, 5, 15 min) on $(nproc) CPUs" >&2
}

echo "==> pytest"
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
rm -f .coverage .coverage.*
if [ $# -gt 0 ]; then
  # A chosen subset (e.g. tools/test.sh tests/unit -k flow): no coverage gate.
  rc=0
  $PY -m pytest -p no:cacheprovider "$@" || rc=$?
  [ "$rc" -eq 0 ] || load_average
  exit "$rc"
fi
# The functional tests mostly wait (guests tick, links are capped, daemons
# start); the others mostly compute. On two CPUs they run side by side, each
# with its own coverage data, combined for the gate below; each names its
# slowest tests, to see where CI time goes.
COV=(--cov=migplane --cov-branch --cov-report= --durations=15)
fast_log=$(mktemp)
COVERAGE_FILE=.coverage.fast $PY -m pytest -p no:cacheprovider "${COV[@]}" \
  --ignore=tests/functional tests examples >"$fast_log" 2>&1 &
fast=$!
trap 'kill "$fast" 2>/dev/null || true; rm -f "$fast_log"' EXIT
echo "(tests/functional here; the unit, property and example tests alongside, shown after)"
set +e
COVERAGE_FILE=.coverage.functional $PY -m pytest -p no:cacheprovider "${COV[@]}" \
  tests/functional
functional=$?
[ "$functional" -eq 0 ] || load_average
wait "$fast"
fast_rc=$?
[ "$fast_rc" -eq 0 ] || load_average
set -e
echo "==> pytest of the unit, property and example tests (ran alongside)"
cat "$fast_log"
if [ "$functional" -ne 0 ] || [ "$fast_rc" -ne 0 ]; then
  echo "pytest failed (functional: exit $functional; unit, property, examples: exit $fast_rc)" >&2
  exit 1
fi
$PY -m coverage combine .coverage.fast .coverage.functional
echo "==> branch coverage of migplane.core (must be >= 90 %)"
$PY -m coverage report --include='migplane/core/*' --fail-under=90
