#!/usr/bin/env bash
# Installs (or upgrades) vigil on a Debian 12 monitoring host, from this source tree:
#   /opt/vigil             its own virtual environment, upgraded in place on every run
#   /etc/vigil/vigil.yaml  the config, from deploy/vigil.example.yaml only when absent
#   /etc/vigil/credentials secrets for LoadCredential= (root only)
#   /var/lib/vigil         state (history, tool caches), owned by the `vigil` system user
#   /usr/share/doc/vigil/runbooks  the alerts' runbooks, which the agent serves at /runbooks/<Alert>
#   /etc/systemd/system/vigil.service, enabled and (re)started when systemd runs
# Running it again upgrades the agent and keeps the config, the state and the drop-ins.
#
#   sudo deploy/install.sh              install or upgrade
#   sudo deploy/install.sh --uninstall  remove the unit and /opt/vigil, keep config and state
#
# VIGIL_ROOT=/some/dir installs into that directory instead of / (for tests and image
# builds): the user goes into its etc/passwd and etc/group, which must exist, and
# systemctl is never called. PYTHON picks the interpreter (default Debian's own, so the
# service never depends on a Python under someone's home directory).
set -euo pipefail

ROOT=${VIGIL_ROOT:-}
ROOT=${ROOT%/}
PYTHON=${PYTHON:-/usr/bin/python3}
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/vigil
CONFIG_DIR=/etc/vigil
STATE_DIR=/var/lib/vigil
UNIT=/etc/systemd/system/vigil.service
RUNBOOKS=/usr/share/doc/vigil/runbooks  # exporters/web.py reads them here
ACCOUNT=vigil
export PIP_DISABLE_PIP_VERSION_CHECK=1
# the service user reads /opt/vigil: never let a strict root umask make it unreadable
umask 022

# temporary directories, removed however the script ends
TEMPS=()
cleanup() { if ((${#TEMPS[@]})); then rm -rf "${TEMPS[@]}"; fi; }
trap cleanup EXIT
temp_dir() { TEMPS+=("$(mktemp -d)"); }

say() { printf 'vigil: %s\n' "$*"; }
die() { printf 'vigil: %s\n' "$*" >&2; exit 1; }

# An account's passwd or group line: from the target root's files under VIGIL_ROOT,
# through NSS otherwise.
entry() {
  if [ -n "$ROOT" ]; then
    grep -m1 "^$2:" "$ROOT/etc/$1" || return 1
  else
    getent "$1" "$2"
  fi
}

# systemd is managing this machine (and we are not installing into another root)
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

create_user() {
  if entry passwd "$ACCOUNT" >/dev/null; then
    return
  fi
  local group=(--user-group)
  if entry group "$ACCOUNT" >/dev/null; then
    group=(--gid "$ACCOUNT")  # left over from an earlier install: reuse it
  fi
  # a system account: no password, no login shell, its home is the state directory
  useradd ${ROOT:+--prefix "$ROOT"} --system "${group[@]}" --home-dir "$STATE_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "vigil monitoring agent" "$ACCOUNT"
  say "created the system user $ACCOUNT"
}

# directory OWNER:GROUP MODE PATH: made if missing, its owner and mode set either way
directory() {
  mkdir -p "$ROOT$3"
  chown "$1" "$ROOT$3"
  chmod "$2" "$ROOT$3"
}

install_venv() {
  local venv=$ROOT$PREFIX
  # a venv whose interpreter is gone (Debian moved to a new Python) is rebuilt
  if [ -e "$venv" ] && ! "$venv/bin/python" -c '' 2>/dev/null; then
    say "rebuilding $PREFIX: its Python no longer runs"
    rm -rf "$venv"
  fi
  if [ ! -e "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  # Build from a clean copy: pip would otherwise leave root-owned build/ and *.egg-info
  # in the admin's checkout. Non-editable, so the service never reads the checkout.
  temp_dir
  local build=${TEMPS[-1]}
  tar -C "$SOURCE" --exclude=.git --exclude=.venv --exclude=.lab --exclude=.suite --exclude=.state --exclude=build \
    --exclude=dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$build" -xf -
  say "installing vigil into $PREFIX (this takes a minute the first time)"
  "$venv/bin/pip" install --quiet --upgrade "$build"
  # alert rules, scrape config and dashboards, kept beside the agent they belong to
  rm -rf "$venv/share/vigil"
  mkdir -p "$venv/share/vigil"
  for part in prometheus alertmanager grafana; do
    if [ -d "$SOURCE/deploy/$part" ]; then
      cp -r "$SOURCE/deploy/$part" "$venv/share/vigil/"
    fi
  done
}

# The runbooks every alert links to (runbook_url), replaced as a whole: a renamed alert
# leaves no stale page behind.
install_runbooks() {
  rm -rf "$ROOT$RUNBOOKS"
  mkdir -p "$ROOT$RUNBOOKS"
  install -m 0644 -o 0 -g 0 "$SOURCE"/docs/runbooks/*.md "$ROOT$RUNBOOKS/"
}

# vigil check-config, with a placeholder for each ${cred:NAME}: credentials exist only
# inside the service (systemd's LoadCredential=), which checks them when it starts it.
check_config() {
  local config=$ROOT$CONFIG_DIR/vigil.yaml
  temp_dir
  local credentials=${TEMPS[-1]}
  # shellcheck disable=SC2016 # a literal ${cred:NAME}, not a shell expansion
  { grep -o '\${cred:[^}/]*}' "$config" || true; } | sed 's/^\${cred:\(.*\)}$/\1/' | sort -u \
    | while read -r name; do echo placeholder >"$credentials/$name"; done
  CREDENTIALS_DIRECTORY=$credentials "$ROOT$PREFIX/bin/vigil" check-config -c "$config" \
    || die "fix $CONFIG_DIR/vigil.yaml, then run this script again (the service was not restarted)"
}

do_install() {
  [ "$(id -u)" = 0 ] || die "run this as root (sudo $0)"
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    die "$PYTHON cannot make virtual environments: apt-get install python3-venv"
  fi
  if [ -n "$ROOT" ]; then
    if [ ! -f "$ROOT/etc/passwd" ] || [ ! -f "$ROOT/etc/group" ]; then
      die "VIGIL_ROOT=$ROOT needs etc/passwd and etc/group to add the user to"
    fi
    say "installing into $ROOT (systemctl is not called)"
  fi

  create_user
  local uid gid
  uid=$(entry passwd "$ACCOUNT" | cut -d: -f3)
  gid=$(entry passwd "$ACCOUNT" | cut -d: -f4)

  # root owns the config, the agent may only read it; numeric ids, which also hold
  # under VIGIL_ROOT where the user does not exist on this machine
  directory "0:$gid" 0750 "$CONFIG_DIR"
  directory 0:0 0700 "$CONFIG_DIR/credentials"
  # systemd's StateDirectory= makes it too, but check-config and manual runs need it first
  directory "$uid:$gid" 0750 "$STATE_DIR"

  install_venv
  install_runbooks

  local config=$ROOT$CONFIG_DIR/vigil.yaml
  if [ -e "$config" ]; then
    say "keeping $CONFIG_DIR/vigil.yaml"
  else
    install -m 0640 -o 0 -g "$gid" "$SOURCE/deploy/vigil.example.yaml" "$config"
    say "wrote the example config to $CONFIG_DIR/vigil.yaml"
  fi
  check_config

  mkdir -p "$(dirname "$ROOT$UNIT")"
  install -m 0644 -o 0 -g 0 "$SOURCE/deploy/systemd/vigil.service" "$ROOT$UNIT"

  if systemd_running; then
    local was_active=no
    systemctl --quiet is-active vigil && was_active=yes
    systemctl daemon-reload
    systemctl enable --now vigil
    if [ "$was_active" = yes ]; then
      systemctl restart vigil  # run the upgraded code
    fi
    systemctl --quiet is-active vigil \
      || die "the service did not start: journalctl -u vigil -n 50"
    say "the service is running"
  elif [ -z "$ROOT" ]; then
    say "systemd is not running here: start the agent with $PREFIX/bin/vigil run"
  fi
  next_steps
}

next_steps() {
  cat <<EOF

Next steps:
  1. Edit $CONFIG_DIR/vigil.yaml (targets, backup jobs), check it and apply it:
       $PREFIX/bin/vigil check-config && systemctl reload vigil
     (with \${cred:...} secrets, which only the service sees: reload, then journalctl -u vigil)
  2. Secrets: one file per secret in $CONFIG_DIR/credentials/ (root only), loaded with
       systemctl edit vigil   ->   [Service]
                                   LoadCredential=NAME:$CONFIG_DIR/credentials/NAME
     used in vigil.yaml as "\${cred:NAME}"; then systemctl restart vigil.
  3. Point Prometheus at the agent (the listen: address, 127.0.0.1:9839 by default):
       scrape config: $PREFIX/share/vigil/prometheus/vigil.yml
       alert rules:   $PREFIX/share/vigil/prometheus/rules/
       Alertmanager:  $PREFIX/share/vigil/alertmanager/vigil.yml
       Grafana:       $PREFIX/share/vigil/grafana/
  4. Watch it: systemctl status vigil, journalctl -u vigil, http://127.0.0.1:9839/
EOF
}

do_uninstall() {
  [ "$(id -u)" = 0 ] || die "run this as root (sudo $0 --uninstall)"
  if systemd_running; then
    systemctl disable --now vigil 2>/dev/null || true
  fi
  rm -f "$ROOT$UNIT"
  if systemd_running; then
    systemctl daemon-reload
  fi
  rm -rf "$ROOT$PREFIX" "$ROOT$(dirname "$RUNBOOKS")"
  say "removed $UNIT, $PREFIX and $(dirname "$RUNBOOKS")"
  say "kept $CONFIG_DIR (config, credentials), $STATE_DIR (history) and the user $ACCOUNT;"
  say "remove them by hand if vigil is gone for good (and any $UNIT.d/ drop-ins)"
}

case ${1:-} in
  "") do_install ;;
  --uninstall) do_uninstall ;;
  -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" ;;
  *) die "unknown option $1 (try --help)" ;;
esac
