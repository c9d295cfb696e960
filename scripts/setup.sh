#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh machine. Safe to re-run:
# every step checks first and does nothing when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing; install Rust with rustup first" >&2
  exit 1
fi

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing $* with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The rotation tests run a real PostgreSQL server (initdb, postgres, pg_isready)
# and make TLS certificates for it with openssl.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi

# pip leaves satisfied pins alone, so a re-run does not reach the network.
stamp=.venv/.requirements
if ! cmp -s requirements-dev.txt "$stamp" 2>/dev/null; then
  say "installing requirements-dev.txt into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt "$stamp"
fi
say "ready"
