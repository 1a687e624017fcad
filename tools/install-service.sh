#!/usr/bin/env bash
# Install migplane-agent as a systemd service on this host (root):
#   tools/install-service.sh [--agent PATH] [--root DIR]
# writes etc/systemd/migplane-agent.service to DIR/etc/systemd/system/ (DIR: /)
# with ExecStart naming PATH (default: the migplane-agent on $PATH), creates
# DIR/etc/migplane (0700) for agent.conf and the TLS files, checks the unit
# with systemd-analyze verify, and reloads systemd when it runs. It does not
# start the agent: write /etc/migplane/agent.conf first (README, "Operating
# migplane"), then: systemctl enable --now migplane-agent
set -euo pipefail
cd "$(dirname "$0")/.."

agent=""
root="/"
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) agent="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install-service.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$agent" ]; then
  agent=$(command -v migplane-agent || true)
fi
if [ -z "$agent" ] || [ ! -x "$agent" ]; then
  echo "install-service.sh: no executable migplane-agent${agent:+ at $agent}:" \
       "install migplane (pip install 'migplane[agent,libvirt]') or give --agent PATH" >&2
  exit 2
fi
case "$agent" in
  /*) ;;
  *) echo "install-service.sh: --agent $agent is not an absolute path" >&2; exit 2 ;;
esac

unit_dir="${root%/}/etc/systemd/system"
unit="$unit_dir/migplane-agent.service"
mkdir -p "$unit_dir"
sed "s#^ExecStart=/usr/local/bin/migplane-agent #ExecStart=$agent #" \
  etc/systemd/migplane-agent.service > "$unit.tmp"
chmod 0644 "$unit.tmp"
mv "$unit.tmp" "$unit"
install -d -m 0700 "${root%/}/etc/migplane"
echo "installed $unit (ExecStart=$agent)"

if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify "$unit" 2>&1) || { echo "$out" >&2; exit 1; }
  if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
fi
if [ "$root" = "/" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "next: write /etc/migplane/agent.conf, then: systemctl enable --now migplane-agent"
else
  echo "systemd is not running here: nothing reloaded"
fi
