#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for SECONDS (default 60) and reports.
#
#   scripts/fuzz.sh [SECONDS]
#
# Targets: room_envelope (the room WebSocket envelope parser: parse_inbound,
# join_request, target, into_relayed; and the relay's fast path, parse_envelope
# and relayed, against it) and ipc_codec (the orb <-> manager IPC
# line codec, both directions, arbitrary chunking) and jwt_verify (cpu-server's
# HS256 client-token verification, compiled from its source: raw tokens, and
# correctly signed tokens with arbitrary header and claims).
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address, -Cpasses=sancov).
# On a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them: that is what this
# script does, so stable 1.95 works. With a nightly toolchain installed,
# FUZZ_TOOLCHAIN=nightly scripts/fuzz.sh uses it instead.
#
# Seeds live in fuzz/corpus/<target>/seed-*; libFuzzer adds what it finds next
# to them (ignored by git). A crash leaves its input in fuzz/artifacts/<target>/
# and makes this script exit non-zero; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-…
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

toolchain=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    toolchain=("+${FUZZ_TOOLCHAIN}")
else
    export RUSTC_BOOTSTRAP=1
fi

status=0
for target in room_envelope ipc_codec jwt_verify; do
    echo "== ${target}: ${seconds}s" >&2
    log="fuzz/${target}.log"
    if cargo "${toolchain[@]}" fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        2>"$log"; then
        result="ok"
    else
        result="FAILED (see $log and fuzz/artifacts/$target/)"
        status=1
    fi
    # libFuzzer's last status line: runs, coverage, exec/s.
    summary="$(grep -E '^(#[0-9]+|Done [0-9]+ runs)' "$log" | tail -n 2 | tr '\n' ' ')"
    echo "${target}: ${result}; ${summary}"
done
exit "$status"
