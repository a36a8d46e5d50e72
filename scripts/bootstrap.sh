#!/usr/bin/env bash
# Set up a development/test environment for tlsgate. Idempotent: safe to run again.
#   scripts/bootstrap.sh            Python venv (.venv) with core + every plugin, editable, and
#                                   the Debian packages the real-peer tests use (when root)
#   scripts/bootstrap.sh --python   only the Python part (enough for the quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${TLSGATE_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

DEBIAN_PACKAGES=(nginx apache2 tomcat10 tomcat10-admin openssh-server openssh-client openjdk-17-jre-headless openssl procps iproute2
  postgresql pebble bind9 bind9-utils haproxy sudo)

install_debian() {
  if ! command -v dpkg >/dev/null 2>&1; then
    echo "bootstrap: not a Debian system; install by hand: ${DEBIAN_PACKAGES[*]}" >&2
    return 0
  fi
  local missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "bootstrap: Debian packages present"; return 0; }
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  # Keep package postinst scripts from starting nginx/apache2/tomcat on port 80/8080: the tests
  # start their own servers on 127.0.0.1 high ports from private configs.
  local guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $guard = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  # one argument per line (a requirement may hold spaces: "uvloop>=0.19; sys_platform != 'win32'")
  local args=()
  mapfile -t args < <("$VENV/bin/python" - <<'PYEOF'
import tomllib
cfg = tomllib.load(open("pyproject.toml", "rb"))["tool"]["tlsgate-workspace"]
for m in cfg["members"]:
    print("-e")
    print(m)
for r in cfg["dev-dependencies"]:
    print(r)
PYEOF
)
  [ ${#args[@]} -gt 0 ] || { echo "bootstrap: no workspace members read from pyproject.toml" >&2; return 1; }
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
}

case "${1:-}" in
  --python) install_python ;;
  "") install_debian; install_python ;;
  *) echo "usage: scripts/bootstrap.sh [--python]" >&2; exit 2 ;;
esac
echo "bootstrap: ready ($VENV)"
