#!/usr/bin/env bash
# Builds every function's Lambda zip as it ships (cargo-lambda, release profile,
# zig as the cross linker) and prints one machine-readable line per function:
#
#   <function> bootstrap=<bytes> zip=<bytes> target=<triple>
#
# bootstrap is the executable inside the zip (stripped), zip is the file uploaded
# to Lambda. The target is Lambda's arm64 (aarch64-unknown-linux-gnu) when its
# Rust standard library is installed, else x86_64-unknown-linux-gnu; set
# ARTIFACT_TARGET to either triple to choose. Everything but those lines goes to
# stderr. Zips land in <target dir>/lambda/<function>/bootstrap.zip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'build-artifacts: %s\n' "$*" >&2; }

scripts/bench-setup.sh
export PATH="$PWD/.venv/bin:$PATH"

arm=aarch64-unknown-linux-gnu
x86=x86_64-unknown-linux-gnu
target=${ARTIFACT_TARGET:-}
if [ -z "$target" ]; then
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed | grep -qx "$arm"; then
    target=$arm
  else
    target=$x86
    say "the $arm standard library is not installed: building for $target instead"
  fi
fi
case "$target" in
  "$arm") arch_flag=--arm64 ;;
  "$x86") arch_flag=--x86-64 ;;
  *) say "ARTIFACT_TARGET must be $arm or $x86, not $target"; exit 2 ;;
esac

# Every crate under functions/ is a function; its package and binary share its name.
functions=()
for manifest in functions/*/Cargo.toml; do
  functions+=("$(basename "$(dirname "$manifest")")")
done
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done

target_dir=$(cargo metadata --format-version 1 --no-deps \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

# Zips from an earlier build must not pass for this one's.
for f in "${functions[@]}"; do rm -f "$target_dir/lambda/$f/bootstrap.zip"; done

say "building ${functions[*]} for $target (release; this takes minutes)"
cargo lambda build --release "$arch_flag" --output-format zip "${packages[@]}" >&2

for f in "${functions[@]}"; do
  zip="$target_dir/lambda/$f/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    say "no zip for $f at $zip"
    exit 1
  fi
  # The size of the bootstrap as the zip holds it: what Lambda unpacks and runs.
  bootstrap=$(.venv/bin/python -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$zip")
  printf '%s bootstrap=%s zip=%s target=%s\n' "$f" "$bootstrap" "$(stat -c %s "$zip")" "$target"
done
