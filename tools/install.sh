#!/usr/bin/env bash
# Install everything migplane, its lab and its tests need on a fresh Debian machine:
# Debian packages (QEMU, libvirtd, iproute2, ...) and a virtualenv at .venv with
# migplane installed in it. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

# QEMU comes from bookworm-backports (10.0) on Debian 12: its own 7.2 crashes
# when it recovers a broken post-copy stream (fixed in QEMU 8.2), and the lab
# proves that recovery. libvirt stays Debian 12's 9.0: backports' 11.3 crashes
# the destination's daemon when a post-copy is resumed (fixed in 11.4).
# MIGPLANE_APT_BACKPORTS=0 keeps Debian 12's QEMU.
# Named one by one: apt takes a package's dependencies from the default release
# unless they are named with it, and these need backports' versions.
QEMU_PACKAGES=(qemu-system-x86 qemu-utils qemu-system-common qemu-system-data seabios)
APT_PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  iproute2 iptables iputils-ping openssl gnutls-bin
  systemd
  gcc libc6-dev python3-dev python3-venv git
  chromium chromium-driver
)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

BACKPORTS=
if [ "${MIGPLANE_APT_BACKPORTS:-1}" = 1 ] \
    && [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" = bookworm ]; then
  BACKPORTS=bookworm-backports
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
for pkg in "${QEMU_PACKAGES[@]}"; do
  if [ -n "$BACKPORTS" ]; then
    # installed from backports: its version says so (~bpo)
    installed "$pkg" && dpkg-query -W -f='${Version}' "$pkg" | grep -q '~bpo' \
      || missing+=("$pkg/$BACKPORTS")
  else
    installed "$pkg" || missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "$BACKPORTS" ] && ! grep -rqs "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "Adding $BACKPORTS to apt's sources (for QEMU)"
    cat > "/etc/apt/sources.list.d/$BACKPORTS.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $BACKPORTS
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  fi
  say "Installing Debian packages: ${missing[*]}"
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
