#!/usr/bin/env bash
# Installs what `make bench` needs on a fresh machine, on top of scripts/setup.sh:
# cargo-lambda and zig (pinned in requirements-bench.txt) in .venv, and Rust's
# aarch64-unknown-linux-gnu standard library, the Lambda arm64 target the zips are
# built for. Safe to re-run: every step checks first and does nothing when done.
# Progress goes to stderr, so callers can keep stdout for their own output.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bench-setup: %s\n' "$*" >&2; }

# The .venv and the test tools come first.
if [ ! -x .venv/bin/python ]; then
  scripts/setup.sh >&2
fi

# pip leaves satisfied pins alone, so a re-run does not reach the network.
stamp=.venv/.requirements-bench
if ! cmp -s requirements-bench.txt "$stamp" 2>/dev/null \
  || [ ! -x .venv/bin/cargo-lambda ] || ! .venv/bin/python -c 'import ziglang' 2>/dev/null; then
  say "installing requirements-bench.txt into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt >&2
  cp requirements-bench.txt "$stamp"
fi

# Lambda's arm64 (Graviton) target. Without rustup the artifacts fall back to x86_64.
target=aarch64-unknown-linux-gnu
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$target"; then
    say "adding the Rust target $target"
    rustup target add "$target" >&2
  fi
else
  say "rustup is missing: cannot add $target; scripts/build-artifacts.sh will build for x86_64"
fi
say "ready"
