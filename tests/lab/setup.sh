#!/usr/bin/env bash
# Installs the real peers the tests talk to, skipping what is already there:
# Debian packages (needs root or sudo; their services are never started), and the
# Python and npm peers in their own environments under .lab/ (never in the agent's).
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=.lab
PYTHON=${PYTHON:-python3}

PACKAGES=(prometheus prometheus-alertmanager openssl openssh-server openssh-client restic borgbackup systemd
          python3-venv chromium snmp nut-server nut-client libnss3-tools
          golang-go golang-github-vmware-govmomi-dev
          gcc pkg-config python3-dev libssl-dev liblz4-dev libzstd-dev libxxhash-dev libacl1-dev)  # to build borg 1.4
# Active Directory (issue 24): Samba DCs, ldapsearch, kinit, libfaketime for a DC's clock; the central
# store of many sites (issue 26): VictoriaMetrics
PACKAGES+=(samba samba-ad-dc samba-ad-provision winbind ldap-utils krb5-user libfaketime victoria-metrics)
# azurite comes from npm: Debian's (and its nodejs) unless an npm is on PATH already, such as
# NodeSource's nodejs, which brings its own npm and conflicts with Debian's
if ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi
# issue 22's service probes: web server, databases, resolver, IMAP/POP3, blackbox_exporter to compare
# with, and nftables for an address that never answers a ping
PACKAGES+=(nginx libnginx-mod-http-echo postgresql-15 mariadb-server dnsmasq-base dovecot-imapd dovecot-pop3d
           prometheus-blackbox-exporter nftables)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
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
fi

# python_peer NAME PACKAGES...: a virtual environment per peer, made once
python_peer() {
  local name=$1; shift
  if [ ! -e "$LAB/$name/.installed" ]; then
    echo "lab: installing $name"
    rm -rf "${LAB:?}/$name"
    "$PYTHON" -m venv "$LAB/$name"
    "$LAB/$name/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$LAB/$name/.installed"
  fi
}
python_peer moto 'moto[s3,server]' flask flask-cors
python_peer snmpsim snmpsim pysmi cryptography
python_peer borg14 'borgbackup>=1.4,<1.5'  # borg 1.4 beside Debian's 1.2: the borg tests run against both
python_peer aiosmtpd aiosmtpd  # SMTP with STARTTLS: Debian's MTAs replace each other (mail-transport-agent)

# unprivileged ping (datagram ICMP sockets) for the icmp probes: Debian's kernel default "1 0" admits no
# group, and systemd's sysctl.d default is not in Debian's package; not kept across reboots
read -r low high < /proc/sys/net/ipv4/ping_group_range
if (( $(id -g) < low || $(id -g) > high )); then
  echo "lab: allowing unprivileged ping (net.ipv4.ping_group_range = 0 2147483647)"
  $([ "$(id -u)" = 0 ] || echo sudo) sysctl -q -w net.ipv4.ping_group_range="0 2147483647" ||
    echo "lab: could not set net.ipv4.ping_group_range: the ping tests cannot run" >&2
fi

if [ ! -x "$LAB/node_modules/.bin/azurite-blob" ]; then
  echo "lab: installing azurite"
  mkdir -p "$LAB"
  npm install --prefix "$LAB" --no-audit --no-fund --silent azurite >/dev/null
fi
# vcsim: Debian's govmomi simulator (0.24) with our own main and two fixes that pyvmomi
# needs, in a private copy of the package; built offline, cached by the sources' hash.
GOVMOMI=/usr/share/gocode/src/github.com/vmware/govmomi
vcsim_hash=$(cat tests/lab/vcsim/main.go tests/lab/vcsim/patch.py "$GOVMOMI/simulator/property_collector.go" | sha256sum | cut -c1-16)
if [ ! -x "$LAB/vcsim/vcsim" ] || [ "$(cat "$LAB/vcsim/.hash" 2>/dev/null)" != "$vcsim_hash" ]; then
  echo "lab: building vcsim"
  gopath=$(mktemp -d)
  mkdir -p "$gopath/src/github.com/vmware" "$gopath/src/vigil-vcsim" "$LAB/vcsim"
  cp -r "$GOVMOMI" "$gopath/src/github.com/vmware/"  # the whole module: GOPATH resolves per directory
  "$PYTHON" tests/lab/vcsim/patch.py "$gopath/src/github.com/vmware/govmomi/simulator"
  cp tests/lab/vcsim/main.go "$gopath/src/vigil-vcsim/"
  (cd "$gopath/src/vigil-vcsim" && GO111MODULE=off GOPROXY=off GOCACHE="$gopath/cache" \
     GOPATH="$gopath:/usr/share/gocode" go build -o vcsim .)
  mv "$gopath/src/vigil-vcsim/vcsim" "$LAB/vcsim/vcsim"
  echo "$vcsim_hash" > "$LAB/vcsim/.hash"
  rm -rf "$gopath"
fi
echo "lab: ready"
