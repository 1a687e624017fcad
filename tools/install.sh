#!/usr/bin/env bash
# Install everything migplane, its lab and its tests need on a fresh Debian machine:
# Debian packages (QEMU, libvirtd, iproute2, ...) and a virtualenv at .venv with
# migplane installed in it. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  qemu-system-x86 qemu-utils
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  iproute2 iptables iputils-ping openssl gnutls-bin
  systemd
  gcc libc6-dev python3-dev python3-venv git
  chromium chromium-driver
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages already installed"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "Creating virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
# pbr takes the version from git; a tarball without .git needs PBR_VERSION.
if ! git rev-parse --git-dir >/dev/null 2>&1; then export PBR_VERSION=${PBR_VERSION:-0.0.0}; fi
say "Installing migplane and its Python dependencies into .venv"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[libvirt,agent,bench,testing]" -r test-requirements.txt
# The example out-of-tree driver, a distribution of its own (CI runs its conformance tests).
.venv/bin/pip install -q --no-deps -e examples/acme-driver
say "Installed: $(.venv/bin/python -c 'import libvirt; v = libvirt.getVersion(); print("migplane, with libvirt-python for libvirt %d.%d.%d" % (v // 10**6, v // 1000 % 1000, v % 1000))')"
