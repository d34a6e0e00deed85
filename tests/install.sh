#!/usr/bin/env bash
# Installs what building and testing the workspace needs on a fresh Debian machine
# (tests/run.sh and .ci/run call it first; a no-op when everything is there).
# `--build`: only what building needs (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: libopus-dev and pkg-config (gpu-orb's voice links the system libopus through
# the `opus` crate; pkg-config finds it, no cmake needed).
# System packages the tests use: Node.js (the legacy-orb test supervises a Node orb);
# nginx, apache2, logrotate, systemd (systemd-analyze) and openssl check the deploy
# files (tests/deploy_files.rs); coturn (turnserver, turnutils_uclient) checks TURN
# credentials (tests/turn_credentials.rs); setpriv (util-linux) and useradd (passwd)
# run a cpu-server as an unprivileged user with the unit's capabilities
# (tests/security.rs; those tests need root and say so); ip (iproute2) brings up `lo` in the
# private network namespace of the WebRTC test (tests/webrtc_media.rs, root); promtool
# (Debian's prometheus package, ~19 MB download, ~96 MB installed, with small libjs-*
# dependencies; it also ships a prometheus service, not started here) checks and unit-tests
# deploy/prometheus/alerts.yml and the Grafana queries (tests/monitoring.rs); slurm-wlm
# and munge run the local Slurm cluster of tests/slurm_placement.rs (none of their
# services is started by the install).
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
missing=()
{ have pkg-config && pkg-config --exists opus; } || missing+=(libopus-dev pkg-config)
if [ "${1:-}" != "--build" ]; then
have node || missing+=(nodejs)
have nginx || missing+=(nginx)
have apache2 || missing+=(apache2)
have logrotate || missing+=(logrotate)
have systemd-analyze || missing+=(systemd)
have openssl || missing+=(openssl)
{ have turnserver && have turnutils_uclient; } || missing+=(coturn)
have setpriv || missing+=(util-linux)
have useradd || missing+=(passwd)
have ip || missing+=(iproute2)
have promtool || missing+=(prometheus)
have readelf || missing+=(binutils) # reads the binary's build id that /health must report (tests/room_server.rs)
have espeak-ng || missing+=(espeak-ng) # speaks the voice test's fake microphone (tests/voice_call.rs)
# A real local Slurm cluster (scripts/slurm-local.sh) for tests/slurm_placement.rs and the
# suite's `slurm` scenario; the script would install these itself, one apt run is cheaper.
{ have slurmctld && have slurmd && have sbatch && have munged; } || missing+=(slurm-wlm munge)
fi
if ((${#missing[@]})); then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  # Install the servers without starting them (the tests run their own on free
  # ports; a started nginx and apache2 would fight over port 80): a temporary
  # policy-rc.d refuses service starts during this install only.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
fi
