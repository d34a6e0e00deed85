#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Works on a fresh Debian machine with a Rust toolchain (cargo) installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use: Node.js (the legacy-orb test supervises a Node orb).
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 1
fi

# The system tests drive the real binaries: build them first.
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
