#!/usr/bin/env bash
# The README's main command: install what is needed, then run the demo end to end
# (a two-host lab, agents, a dirtying guest migrated live over the migration plane,
# the summary with per-plane bytes, the guest shown running on B; then teardown).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "The demo builds network namespaces and runs libvirtd: run it as root." >&2
  exit 2
fi
tools/install.sh
exec .venv/bin/migplane demo "$@"
