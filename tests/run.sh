#!/usr/bin/env bash
# Runs every test of the workspace, installing what the tests need first.
# Works on a fresh Debian machine with a Rust toolchain (cargo) installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install.sh # Debian packages for the build and the tests
bash tests/browser/setup.sh # Chromium + playwright-core for tests/browser_pages.rs (fails if they cannot install)

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 1
fi

# The system tests drive the real binaries: build them first.
cargo build --workspace --bins
log=$(mktemp)
# tests/slurm_placement.rs brings up the local Slurm cluster; nothing of it outlives the run.
trap 'rm -f "$log"; bash scripts/slurm-local.sh down >/dev/null 2>&1 || true' EXIT
status=0
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one summary per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
