#!/usr/bin/env bash
# Installs the real peers the tests talk to, skipping what is already there.
# Debian packages need root (or sudo); services they ship are never started.
set -euo pipefail

PACKAGES=(prometheus openssl)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "lab: every package is installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "lab: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
# apt must not start the daemons it installs: the tests start their own on loopback
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 755 /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "lab: installing ${missing[*]}"
apt_get=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
"${apt_get[@]}" update >/dev/null
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
