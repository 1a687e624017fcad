#!/usr/bin/env bash
# Regenerate etc/migplane.conf.sample from the options' definitions.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/oslo-config-generator --config-file etc/migplane-config-generator.conf
