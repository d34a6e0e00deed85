#!/usr/bin/env bash
# A real, throw-away Slurm 22.05 cluster on this one machine, for system tests
# (CI) and for trying Slurm placement of orbs by hand. Needs root, Linux
# network/UTS namespaces and Debian's slurm-wlm + munge packages (installed
# when missing).
#
#   eval "$(scripts/slurm-local.sh up)"   # start; stdout is ONLY export lines
#   scripts/slurm-local.sh down           # stop and remove everything
#
# Subcommands (progress and diagnostics go to stderr; exit 0 on success):
#   up             Install packages if missing, build and start the cluster,
#                  wait (bounded) until both nodes are idle (= their slurmds,
#                  from inside the node namespaces, reached slurmctld at
#                  SLURM_LOCAL_CPU_IP), then print on stdout:
#                    export SLURM_CONF=<dir>/slurm.conf
#                    export SLURM_LOCAL_CPU_IP=<address of this machine as the
#                           compute hosts see it; a server bound to it in the
#                           root namespace is reachable from jobs>
#                    export SLURM_LOCAL_DIR=<dir>
#                  Already up and healthy: only prints them. Half up (a daemon
#                  dead): torn down and built again. On failure: daemon log
#                  tails on stderr, everything removed, exit non-zero.
#   down           Kill every process of the cluster (slurmd, slurmstepd and
#                  all job processes in the node namespaces, slurmctld,
#                  munged), delete namespaces, veths and bridge, remove <dir>
#                  (with SLURM_LOCAL_KEEP_LOGS=1 only <dir>/log and the owner
#                  mark stay). Nothing up: exit 0.
#   status         sinfo and squeue; non-zero when the controller is not up.
#   env            Print the export lines of `up` (non-zero when not up).
#   logs [N]       Last N (default 40) lines of every daemon log, to stderr.
#   kill-slurmd NODE   SIGKILL that node's slurmd only (like a crash): its
#                  slurmstepd and job processes go on running. The controller
#                  marks the node DOWN and its jobs NODE_FAIL ~6-11 s later.
#                  When slurmd comes back, the node returns to service and
#                  the leftover job processes are killed by Slurm.
#   start-slurmd NODE  Start that node's slurmd again in its namespaces; waits
#                  (bounded) until the controller sees it responding (when
#                  the controller is up). Already running: no-op.
#   stop-ctld      Stop slurmctld cleanly (SIGTERM, state saved; bounded wait).
#                  Client commands fail meanwhile; jobs go on running.
#   start-ctld     Start slurmctld again, recovering its saved state; waits
#                  (bounded) until it answers and the live slurmds responded.
#   node-pid NODE  Print the pid of a process that lives in NODE's network
#                  and UTS namespaces for as long as the cluster is up (even
#                  while its slurmd is dead):
#                    nsenter -t "$(scripts/slurm-local.sh node-pid orbnode1)" -n -u CMD
#
# Topology: compute hosts orbnode1 and orbnode2, each in its own network
# namespace (muc-orbnode1, muc-orbnode2, see `ip netns`) and its own UTS
# namespace (hostname = NodeName), each with a veth (mucv-orbnodeN, eth0
# inside) on the bridge mucbr0 in the root namespace (`muc` is
# SLURM_LOCAL_NAME). The bridge has ${NET}.1/24, the nodes ${NET}.11 and
# ${NET}.12; the namespaces have no other route, so jobs reach only the /24
# (this machine at ${NET}.1, the other node) and their own loopback. slurmctld runs in the root network
# namespace (in a UTS namespace of its own, hostname orbctl, because
# SlurmctldHost must match the host name) so that sbatch/squeue/scontrol/
# scancel work from the root namespace with only SLURM_CONF set; slurmds reach
# it at ${NET}.1 = SLURM_LOCAL_CPU_IP. One partition, `orbs` (default), both
# nodes; each node has SLURM_LOCAL_CPUS_PER_NODE fake CPUs and
# SLURM_LOCAL_GPUS_PER_NODE fake GPUs (gres gpu, device nodes
# <dir>/dev/nvidiaN, char 195:N, never opened by Slurm here).
#
# What this script owns (and all that it writes): the directory
# ${SLURM_LOCAL_DIR:-/tmp/muc-slurm} (configs, munge key/socket/pid/log,
# slurmctld state, per-node slurmd spool, pid files, logs, fake GPU device
# nodes), the network namespaces muc-orbnode1/2, the interfaces mucbr0 and
# mucv-orbnode1/2, and the processes it starts (munged, slurmctld, per node a
# namespace holder `slurm-local-holder:<dir>:<node>` and slurmd, and whatever
# runs in the node namespaces: slurmstepd and jobs). It never writes
# /etc/slurm, /etc/munge, /dev or systemd units, and never touches
# /dev/nvidia*. During a package install only, it adds /usr/sbin/policy-rc.d
# (exit 101) if there is none, so that apt starts no daemon, and removes it
# afterwards. Commands that change the cluster take an flock on this script
# file, so concurrent callers (parallel tests) are serialized. A second
# cluster on the same machine needs its own SLURM_LOCAL_NAME, _DIR, _NET and
# _CTLD_PORT.
#
# Environment (all optional):
#   SLURM_LOCAL_DIR            private directory   [/tmp/muc-slurm]
#   SLURM_LOCAL_NAME           prefix of namespace/interface names, 1-4 of
#                              [a-z0-9] [muc]
#   SLURM_LOCAL_NET            first three octets of the private /24 [10.213.77]
#   SLURM_LOCAL_GPUS_PER_NODE  fake GPUs per node  [1]
#   SLURM_LOCAL_CPUS_PER_NODE  fake CPUs per node  [8]
#   SLURM_LOCAL_CTLD_PORT      slurmctld port, root namespace [16817]
#   SLURM_LOCAL_SLURMD_TIMEOUT SlurmdTimeout, seconds [3]
#   SLURM_LOCAL_MESSAGE_TIMEOUT MessageTimeout, seconds [2]; with the above,
#                              a dead slurmd's node is DOWN and its jobs
#                              NODE_FAIL ~6-11 s after the crash
#   SLURM_LOCAL_KEEP_LOGS=1    `down` keeps <dir>/log
#   SLURM_LOCAL_TIMEOUT        seconds `up` waits for the nodes [30]
set -euo pipefail
export LC_ALL=C
# The daemons, ip and mungekey live in /usr/sbin, which a CI PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

DIR="${SLURM_LOCAL_DIR:-/tmp/muc-slurm}"
NAME="${SLURM_LOCAL_NAME:-muc}"
NET="${SLURM_LOCAL_NET:-10.213.77}"
GPUS="${SLURM_LOCAL_GPUS_PER_NODE:-1}"
CPUS="${SLURM_LOCAL_CPUS_PER_NODE:-8}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-16817}"
SLURMD_PORT=6818 # inside the node namespaces: no clash with a host slurmd
SLURMD_TIMEOUT="${SLURM_LOCAL_SLURMD_TIMEOUT:-3}"
MESSAGE_TIMEOUT="${SLURM_LOCAL_MESSAGE_TIMEOUT:-2}"
UP_TIMEOUT="${SLURM_LOCAL_TIMEOUT:-30}"
NODES=(orbnode1 orbnode2)
CTLD_NAME=orbctl
BRIDGE="${NAME}br0"
CPU_IP="${NET}.1"
CONF="$DIR/slurm.conf"
MARK="$DIR/.slurm-local"
MUNGE_SOCKET="$DIR/munge/munge.socket.2"
LOGDIR="$DIR/log"
RUNDIR="$DIR/run"
# Daemons get a clean environment: nothing of the caller's (CI variables,
# secrets) leaks into them.
DAEMON_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C "SLURM_CONF=$CONF")

log() { printf 'slurm-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- helpers ---------------------------------------------------------------

now_ms() { local t="${EPOCHREALTIME//[!0-9]/}"; echo $((t / 1000)); }

# wait_until SECONDS INTERVAL_MS DESCRIPTION CMD...: run CMD every INTERVAL_MS
# until it succeeds; bounded both in time and in number of tries.
wait_until() {
    local secs="$1" interval="$2" what="$3"
    shift 3
    local deadline=$(($(now_ms) + secs * 1000)) tries=$((secs * 1000 / interval + 1)) i
    local nap
    nap="$(printf '%d.%03d' $((interval / 1000)) $((interval % 1000)))"
    for ((i = 0; i < tries; i++)); do
        if "$@"; then return 0; fi
        (($(now_ms) < deadline)) || break
        sleep "$nap"
    done
    log "timed out after ${secs}s waiting for: $what"
    return 1
}

node_index() { # NODE -> 1-based index; dies on an unknown name
    local i
    for i in "${!NODES[@]}"; do
        if [[ "${NODES[$i]}" == "$1" ]]; then
            echo $((i + 1))
            return 0
        fi
    done
    die "unknown node '${1:-}' (nodes: ${NODES[*]})"
}
netns_of() { echo "$NAME-$1"; }
veth_of() { echo "${NAME}v-$1"; }
node_ip() { echo "${NET}.$((10 + $(node_index "$1")))"; }

# Alive = exists and is not a zombie (pid 1 here may reap late).
pid_alive() {
    [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}
read_pid() { # FILE -> pid if the file holds a number
    local p=""
    if [[ -r "$1" ]]; then read -r p <"$1" 2>/dev/null || true; fi
    [[ "$p" =~ ^[0-9]+$ ]] && echo "$p"
    return 0
}
# Command line of PID with spaces for NULs (and one at the end), in CMDLINE;
# builtins only: the process sweeps read every /proc entry.
read_cmdline() {
    local -a argv=()
    CMDLINE=""
    { mapfile -d '' -t argv <"/proc/$1/cmdline"; } 2>/dev/null || return 0
    ((${#argv[@]})) || return 0
    local IFS=' '
    CMDLINE="${argv[*]} "
}
cmdline_of() {
    read_cmdline "$1"
    printf '%s' "$CMDLINE"
}

# Pid of a live daemon whose pid file is FILE and whose command line contains
# WORD (guards against a stale pid file whose pid was reused).
daemon_pid() {
    local p
    p="$(read_pid "$1")"
    if pid_alive "$p" && [[ "$(cmdline_of "$p")" == *"$2"* ]]; then echo "$p"; fi
    return 0
}
munged_pid() { daemon_pid "$DIR/munge/munged.pid" munged; }
ctld_pid() { daemon_pid "$RUNDIR/slurmctld.pid" slurmctld; }
slurmd_pid() { daemon_pid "$RUNDIR/slurmd-$1.pid" slurmd; }
# A node's namespace holder: `sleep infinity` renamed to this, living in the
# node's network and UTS namespaces (slurmd is started next to it).
holder_tag() { echo "slurm-local-holder:$DIR:$1"; }
holder_pid() {
    local p
    p="$(read_pid "$RUNDIR/holder-$1.pid")"
    if pid_alive "$p" && [[ "$(cmdline_of "$p")" == "$(holder_tag "$1") "* ]] &&
        [[ "/proc/$p/ns/net" -ef "/run/netns/$(netns_of "$1")" ]]; then
        echo "$p"
    fi
    return 0
}
has_holder() { [[ -n "$(holder_pid "$1")" ]]; }
has_slurmd() { [[ -n "$(slurmd_pid "$1")" ]]; }

# Client commands with our config only (the caller's SLURM_CONF may be stale).
sl() { SLURM_CONF="$CONF" "$@"; }
ctld_answers() { sl scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sl sinfo -h -N -n "$1" -o '%t' 2>/dev/null | head -n1; }
# Responding and usable: idle, mix or alloc, without a trailing `*` (= not
# responding) or a drain/down flag.
node_ok() { [[ "$(node_state "$1")" =~ ^(idle|mix|alloc)$ ]]; }
nodes_idle() {
    local n
    for n in "${NODES[@]}"; do [[ "$(node_state "$n")" == idle ]] || return 1; done
}
SLURMD_DEAD=""
nodes_idle_or_dead() {
    local n
    for n in "${NODES[@]}"; do
        if [[ -z "$(slurmd_pid "$n")" ]]; then
            SLURMD_DEAD="$n"
            return 0
        fi
    done
    nodes_idle
}
nodes_ok() {
    local n
    for n in "${NODES[@]}"; do node_ok "$n" || return 1; done
}

print_exports() {
    printf 'export SLURM_CONF=%s\n' "$CONF"
    printf 'export SLURM_LOCAL_CPU_IP=%s\n' "$CPU_IP"
    printf 'export SLURM_LOCAL_DIR=%s\n' "$DIR"
}

show_logs() {
    local lines="${1:-40}" f
    for f in "$LOGDIR"/*.log "$LOGDIR"/*.stderr; do
        [[ -s "$f" ]] || continue
        printf '===== %s (last %s lines)\n' "$f" "$lines" >&2
        tail -n "$lines" "$f" >&2 || true
    done
}

# ---- checks and install ----------------------------------------------------

check_settings() {
    [[ "$(id -u)" -eq 0 ]] || die "needs root (network namespaces, mknod, daemons as root)"
    [[ "$DIR" == /* && "$DIR" != */ && "$DIR" != *[[:space:]]* ]] ||
        die "SLURM_LOCAL_DIR must be an absolute path without spaces or trailing /: '$DIR'"
    case "$DIR" in
    / | /tmp | /var | /var/tmp | /home | /root | /etc | /usr | /run | /dev | /proc | /sys)
        die "SLURM_LOCAL_DIR=$DIR would be removed by down: pick a dedicated directory" ;;
    esac
    # Unix socket paths are limited to 108 bytes (munge, slurmstepd sockets).
    ((${#DIR} <= 60)) || die "SLURM_LOCAL_DIR is too long (max 60 characters): $DIR"
    local o
    [[ "$NAME" =~ ^[a-z0-9]{1,4}$ ]] || die "SLURM_LOCAL_NAME must be 1-4 of [a-z0-9]: '$NAME'"
    [[ "$NET" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
        die "SLURM_LOCAL_NET must be three octets like 10.213.77: '$NET'"
    for o in "${BASH_REMATCH[@]:1}"; do ((10#$o <= 255)) || die "bad octet in SLURM_LOCAL_NET: $NET"; done
    [[ "$GPUS" =~ ^[1-8]$ ]] || die "SLURM_LOCAL_GPUS_PER_NODE must be 1..8: '$GPUS'"
    [[ "$CPUS" =~ ^[1-9][0-9]?$ ]] || die "SLURM_LOCAL_CPUS_PER_NODE must be 1..99: '$CPUS'"
    if ! [[ "$CTLD_PORT" =~ ^[1-9][0-9]{2,4}$ ]] || ((CTLD_PORT > 65535)); then
        die "SLURM_LOCAL_CTLD_PORT must be a port number: '$CTLD_PORT'"
    fi
    [[ "$SLURMD_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_SLURMD_TIMEOUT must be a positive integer"
    [[ "$MESSAGE_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_MESSAGE_TIMEOUT must be a positive integer"
    [[ "$UP_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "SLURM_LOCAL_TIMEOUT must be a positive integer"
}

have() { command -v "$1" >/dev/null 2>&1; }

ensure_packages() {
    local missing=0 c
    for c in slurmctld slurmd munged mungekey sbatch squeue scontrol sinfo scancel ip nsenter unshare flock; do
        have "$c" || missing=1
    done
    ((missing)) || return 0
    log "installing slurm-wlm munge iproute2 (daemons are not started by apt)"
    local policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # invoke-rc.d asks policy-rc.d; 101 = "action forbidden": the packages'
        # init scripts do not start slurmctld/slurmd/munged with /etc configs.
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurm-wlm munge iproute2
    } >"/tmp/slurm-local-apt.$$.log" 2>&1 || rc=$?
    if [[ -n "$policy" ]]; then
        rm -f "$policy"
        trap - EXIT
    fi
    if ((rc)); then
        tail -n 30 "/tmp/slurm-local-apt.$$.log" >&2 || true
        rm -f "/tmp/slurm-local-apt.$$.log"
        die "apt-get install failed (exit $rc)"
    fi
    rm -f "/tmp/slurm-local-apt.$$.log"
    for c in slurmctld slurmd munged sbatch nsenter unshare ip; do
        have "$c" || die "$c still missing after the install"
    done
}

# ---- teardown --------------------------------------------------------------

# Kill everything in the node namespaces (slurmd, slurmstepd, jobs, holder):
# the namespaces named in /run/netns, and those of any holder of ours (one
# whose namespace file is gone, e.g. after an interrupted run).
kill_node_processes() {
    local n p ref round
    local refs=() pids=()
    # A namespace is named by a file that stat()s as it (nsfs inode): test
    # membership with `-ef`, a builtin.
    for n in "${NODES[@]}"; do
        [[ -e "/run/netns/$(netns_of "$n")" ]] && refs+=("/run/netns/$(netns_of "$n")")
    done
    for p in /proc/[0-9]*; do
        read_cmdline "${p#/proc/}"
        [[ "$CMDLINE" == "slurm-local-holder:$DIR:"* ]] || continue
        [[ "$p/ns/net" -ef /proc/self/ns/net ]] && continue
        refs+=("$p/ns/net")
    done
    ((${#refs[@]})) || return 0
    for ((round = 0; round < 50; round++)); do # <= ~5 s
        pids=()
        for p in /proc/[0-9]*; do
            for ref in "${refs[@]}"; do
                if [[ "$p/ns/net" -ef "$ref" ]]; then
                    pids+=("${p#/proc/}")
                    break
                fi
            done
        done
        ((${#pids[@]})) || return 0
        kill -KILL "${pids[@]}" 2>/dev/null || true
        sleep 0.1
    done
    log "warning: processes left in the node namespaces: ${pids[*]}"
}

# stop_daemon NAME PID: SIGTERM, bounded wait, then SIGKILL.
stop_daemon() {
    local name="$1" pid="$2" i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do # <= ~5 s
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: $name ($pid) ignored SIGTERM for 5 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: $name ($pid) still alive after SIGKILL"
}

# Processes of ours outside the node namespaces (slurmctld, munged, maybe a
# second slurmctld from a failed start): their command line names our dir.
our_root_daemons() {
    local p
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        [[ "$p" == "$$" ]] && continue
        read_cmdline "$p"
        case "$CMDLINE" in
        slurmctld*"$CONF "* | munged*"--socket=$MUNGE_SOCKET "*) echo "$p" ;;
        esac
    done
}

teardown() {
    local n p
    kill_node_processes
    # Daemons: fast kill of the controller (its state is thrown away anyway).
    for p in $(our_root_daemons); do
        if [[ "$(cmdline_of "$p")" == *slurmctld* ]]; then stop_daemon slurmctld "$p"; fi
    done
    for p in $(our_root_daemons); do stop_daemon munged "$p"; done
    for n in "${NODES[@]}"; do
        # Deleting the root end of a veth deletes its peer too; then the
        # namespace (now empty of processes) goes with its mount.
        if ip link show "$(veth_of "$n")" >/dev/null 2>&1; then
            ip link del "$(veth_of "$n")" 2>/dev/null || log "warning: could not delete $(veth_of "$n")"
        fi
        if [[ -e "/run/netns/$(netns_of "$n")" ]]; then
            ip netns del "$(netns_of "$n")" 2>/dev/null || log "warning: could not delete netns $(netns_of "$n")"
        fi
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link del "$BRIDGE" 2>/dev/null || log "warning: could not delete $BRIDGE"
    fi
}

remove_dir() {
    [[ -e "$DIR" ]] || return 0
    [[ -f "$MARK" ]] || die "$DIR exists but was not made by this script (no $MARK): not removing it"
    if [[ "${SLURM_LOCAL_KEEP_LOGS:-0}" == 1 ]]; then
        local e
        for e in "$DIR"/* "$DIR"/.[!.]*; do
            [[ -e "$e" || -L "$e" ]] || continue
            [[ "$e" == "$LOGDIR" || "$e" == "$MARK" ]] && continue
            rm -rf -- "$e"
        done
        log "logs kept in $LOGDIR"
    else
        rm -rf -- "$DIR"
    fi
}

cmd_down() {
    check_settings
    if [[ -e "$DIR" && ! -f "$MARK" ]]; then
        die "$DIR exists but was not made by this script (no $MARK): not touching it"
    fi
    teardown
    remove_dir
    # Final check: nothing of ours may be left.
    local left="" n
    for n in "${NODES[@]}"; do
        [[ -e "/run/netns/$(netns_of "$n")" ]] && left+=" netns:$(netns_of "$n")"
        ip link show "$(veth_of "$n")" >/dev/null 2>&1 && left+=" link:$(veth_of "$n")"
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && left+=" link:$BRIDGE"
    [[ -z "$(our_root_daemons)" ]] || left+=" processes:$(our_root_daemons | tr '\n' ' ')"
    [[ -z "$left" ]] || die "down left behind:$left"
    log "down"
}

# ---- build -----------------------------------------------------------------

prepare_dir() {
    if [[ -e "$DIR" ]]; then
        [[ -f "$MARK" ]] || die "$DIR exists and was not made by this script (no $MARK): remove it or set SLURM_LOCAL_DIR"
        rm -rf -- "$DIR"
    fi
    mkdir -p "$DIR"
    echo "made by scripts/slurm-local.sh; removed by its down" >"$MARK"
    # 0755 along the way: job scripts are executed from the slurmd spool dirs.
    chmod 0755 "$DIR"
    mkdir -p "$LOGDIR" "$RUNDIR" "$DIR/state" "$DIR/dev"
    # munged wants its dirs not writable by others; readable so that any
    # local user may use the socket (the key itself is 0400 root).
    mkdir -m 0755 "$DIR/munge"
    local n
    mkdir -m 0755 "$DIR/spool"
    for n in "${NODES[@]}"; do mkdir -m 0755 "$DIR/spool/$n"; done
}

write_configs() {
    local gpu_files n last=$((GPUS - 1)) i
    if ((GPUS == 1)); then gpu_files="$DIR/dev/nvidia0"; else gpu_files="$DIR/dev/nvidia[0-$last]"; fi
    # Fake GPUs: char devices 195:N like the NVIDIA driver's, but only in our
    # dir. Slurm only stat()s them (no device cgroup here), both nodes name the
    # same paths like real hosts would.
    for ((i = 0; i < GPUS; i++)); do mknod "$DIR/dev/nvidia$i" c 195 "$i"; done

    {
        cat <<EOF
# Generated by scripts/slurm-local.sh: a throw-away local test cluster.
ClusterName=muclocal
# The controller runs in the root network namespace in its own UTS namespace
# named $CTLD_NAME; clients and slurmds reach it at the bridge address.
SlurmctldHost=$CTLD_NAME($CPU_IP)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged (its socket, key and logs live in $DIR/munge).
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$RUNDIR/slurmctld.pid
SlurmdPidFile=$RUNDIR/slurmd-%n.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# Keep the host's /etc/slurm out of it.
PlugStackConfig=$DIR/plugstack.conf
# No cgroups (a container may not delegate them): processes are tracked by
# parentage (/proc), no binding, no device or memory enforcement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# No mail from this cluster (the default /bin/mail is usually missing).
MailProg=/bin/true
SwitchType=switch/none
# The declared CPUs/memory are used as they are (the machine has fewer cores
# than the nodes declare together).
SlurmdParameters=config_overrides
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=64
GresTypes=gpu
SchedulerType=sched/backfill
# Fast tests. 22.05 never starts a batch job inside its submit RPC: slurmctld's
# background loop (1 s period) runs the scheduler when jobs were submitted
# (batch_sched_delay=0: at its next turn), so submit -> RUNNING takes 0-1 s.
# No throttling between scheduler runs; full main and backfill passes every
# second (a job freed by an ending one starts at once anyway).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
# A killed slurmd: its node is DOWN and its jobs NODE_FAIL after ~6-10 s
# (a ping fails after MessageTimeout of connect retries, the node is "not
# responding"; the next failed ping past SlurmdTimeout sets it DOWN).
# MessageTimeout also bounds every RPC: 2 s is ample on one machine.
SlurmdTimeout=$SLURMD_TIMEOUT
SlurmctldTimeout=10
MessageTimeout=$MESSAGE_TIMEOUT
TCPTimeout=2
# Seconds between SIGTERM and SIGKILL at cancel/end.
KillWait=2
InactiveLimit=0
WaitTime=0
# Ended jobs stay visible (squeue --states=all, scontrol show job) 5 min.
MinJobAge=300
# A node that was DOWN for not responding comes back when its slurmd does.
ReturnToService=2
# A job on a failed node ends NODE_FAIL, it is not requeued.
JobRequeue=0
NodeName=DEFAULT CPUs=$CPUS RealMemory=16384 Gres=gpu:$GPUS State=UNKNOWN
EOF
        for n in "${NODES[@]}"; do
            echo "NodeName=$n NodeAddr=$(node_ip "$n") NodeHostname=$n"
        done
        echo "PartitionName=orbs Nodes=$(
            IFS=,
            echo "${NODES[*]}"
        ) Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"

    {
        echo "# Generated by scripts/slurm-local.sh: fake GPUs, no autodetection."
        echo "AutoDetect=off"
        for n in "${NODES[@]}"; do echo "NodeName=$n Name=gpu File=$gpu_files"; done
    } >"$DIR/gres.conf"
    : >"$DIR/plugstack.conf"
    # Read by slurmd from the slurm.conf directory; no cgroup plugin is used.
    echo "CgroupPlugin=autodetect" >"$DIR/cgroup.conf"
}

setup_network() {
    local clash
    clash="$(ip -4 -o addr show | awk -v net="$NET." '$4 ~ "^"net {print $2" "$4}' | grep -v "^$BRIDGE " || true)"
    [[ -z "$clash" ]] || die "SLURM_LOCAL_NET=$NET/24 is already in use here ($clash): set another one"
    if ip -4 route show "${NET}.0/24" | grep -q .; then
        die "a route to ${NET}.0/24 exists already: set SLURM_LOCAL_NET to another /24"
    fi
    ip link add "$BRIDGE" type bridge
    ip addr add "$CPU_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local n ns veth
    for n in "${NODES[@]}"; do
        ns="$(netns_of "$n")"
        veth="$(veth_of "$n")"
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
        # No default route in the node: jobs reach the /24 and loopback only.
    done
    # Traffic to the nodes must stay on our bridge.
    for n in "${NODES[@]}"; do
        ip -4 route get "$(node_ip "$n")" | grep -q "dev $BRIDGE" ||
            die "route to $(node_ip "$n") does not use $BRIDGE: $(ip -4 route get "$(node_ip "$n")")"
    done
}

start_munged() {
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        if have mungekey; then
            mungekey --create --keyfile="$DIR/munge/munge.key" --force >/dev/null
        else
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        fi
        chmod 0400 "$DIR/munge/munge.key"
    fi
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    # --force: munged refuses group/world-writable ancestors such as /tmp
    # (sticky) otherwise; everything of ours is root-owned, not writable by
    # others.
    "${DAEMON_ENV[@]}" munged --force \
        --socket="$MUNGE_SOCKET" \
        --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" \
        --log-file="$LOGDIR/munged.log" \
        --seed-file="$DIR/munge/munged.seed" \
        </dev/null >/dev/null 2>>"$LOGDIR/munged.stderr" 9<&- || die "munged did not start"
    wait_until 10 50 "munged socket" test -S "$MUNGE_SOCKET" || die "munged did not come up"
}

start_ctld_daemon() {
    rm -f "$RUNDIR/slurmctld.pid"
    # Own UTS namespace: slurmctld only runs where the host name is the
    # SlurmctldHost name. It daemonizes; stdio must not keep the caller's pipe
    # (eval "$(… up)" would hang).
    # shellcheck disable=SC2016 # $1 $2 are expanded by the inner sh
    "${DAEMON_ENV[@]}" unshare --uts -- /bin/sh -c 'hostname "$1" && exec slurmctld -f "$2"' \
        sh "$CTLD_NAME" "$CONF" </dev/null >/dev/null 2>>"$LOGDIR/slurmctld.stderr" 9<&- ||
        die "slurmctld did not start"
    CTLD_T0="$(now_ms)"
    wait_until 15 50 "slurmctld answering" ctld_ready || die "slurmctld did not come up"
    [[ -z "$CTLD_DEAD" ]] || die "slurmctld exited at start (see $LOGDIR/slurmctld.log)"
}

# Answers, or has died (pid file written and its process gone, or none
# written within 3 s): either ends the wait.
CTLD_DEAD=""
CTLD_T0=0
ctld_ready() {
    ctld_answers && return 0
    if [[ -z "$(ctld_pid)" ]] &&
        { [[ -s "$RUNDIR/slurmctld.pid" ]] || (($(now_ms) - CTLD_T0 > 3000)); }; then
        CTLD_DEAD=1
        return 0
    fi
    return 1
}

start_holder() { # a process keeping NODE's UTS namespace, in its netns
    local n="$1" ns pidfile
    ns="$(netns_of "$n")"
    pidfile="$RUNDIR/holder-$n.pid"
    rm -f "$pidfile"
    # nsenter --net, not `ip netns exec`: the latter remounts /sys in a new
    # mount namespace, which slurmd does not survive here.
    # shellcheck disable=SC2016 # $1.. are expanded by the inner bash
    setsid "${DAEMON_ENV[@]}" nsenter --net="/run/netns/$ns" unshare --uts -- \
        /bin/bash -c 'hostname "$1" && echo $$ >"$2" && exec -a "$3" sleep infinity' \
        bash "$n" "$pidfile" "$(holder_tag "$n")" \
        </dev/null >/dev/null 2>>"$LOGDIR/holder-$n.stderr" 9<&- &
    disown "$!" # no "Killed" notice from this shell when down kills it
    wait_until 5 20 "namespace holder of $n" has_holder "$n" ||
        die "could not start the namespace holder of $n"
}

start_slurmd_daemon() {
    local n="$1" holder
    holder="$(holder_pid "$n")"
    if [[ -z "$holder" ]]; then
        start_holder "$n"
        holder="$(holder_pid "$n")"
    fi
    rm -f "$RUNDIR/slurmd-$n.pid"
    "${DAEMON_ENV[@]}" nsenter --target="$holder" --net --uts -- slurmd -f "$CONF" -N "$n" \
        </dev/null >/dev/null 2>>"$LOGDIR/slurmd-$n.stderr" 9<&- || die "slurmd on $n did not start"
    wait_until 10 20 "slurmd pid of $n" has_slurmd "$n" || die "slurmd on $n did not come up"
}

cluster_present() {
    [[ -f "$MARK" && -f "$CONF" ]] || return 1
    [[ -n "$(munged_pid)$(ctld_pid)" || -e "/run/netns/$(netns_of "${NODES[0]}")" ]]
}

healthy() {
    [[ -n "$(munged_pid)" && -n "$(ctld_pid)" ]] || return 1
    local n
    for n in "${NODES[@]}"; do [[ -n "$(slurmd_pid "$n")" && -n "$(holder_pid "$n")" ]] || return 1; done
    ctld_answers && nodes_ok
}

UP_STARTED=0
on_up_exit() {
    local rc=$?
    if ((rc != 0 && UP_STARTED)); then
        log "up failed (exit $rc); daemon logs:"
        show_logs 30
        log "cleaning up"
        set +e
        teardown
        SLURM_LOCAL_KEEP_LOGS="${SLURM_LOCAL_KEEP_LOGS:-0}" remove_dir
    fi
    exit "$rc"
}

cmd_up() {
    check_settings
    ensure_packages
    if cluster_present; then
        if healthy; then
            log "already up"
            print_exports
            return 0
        fi
        log "cluster half up: rebuilding it"
        teardown
    fi
    local t0 n
    t0="$(now_ms)"
    if [[ -e "$DIR" && ! -f "$MARK" ]]; then
        die "$DIR exists and was not made by this script (no $MARK): remove it or set SLURM_LOCAL_DIR"
    fi
    # Leftovers of a run killed before its down (same names, same dir).
    teardown
    UP_STARTED=1
    trap on_up_exit EXIT
    prepare_dir
    write_configs
    setup_network
    start_munged
    for n in "${NODES[@]}"; do start_holder "$n"; done
    start_ctld_daemon
    for n in "${NODES[@]}"; do start_slurmd_daemon "$n"; done
    # Idle means registered: each slurmd connected from inside its node
    # namespace to slurmctld at SLURM_LOCAL_CPU_IP, which is what a job's
    # client of a server bound to that address does.
    wait_until "$UP_TIMEOUT" 50 "both nodes idle in sinfo" nodes_idle_or_dead ||
        die "nodes not idle: $(sl sinfo -h -N -o '%N=%t' 2>&1 | tr '\n' ' ')"
    [[ -z "$SLURMD_DEAD" ]] || die "slurmd of $SLURMD_DEAD exited (see $LOGDIR/slurmd-$SLURMD_DEAD.log)"
    UP_STARTED=0
    trap - EXIT
    log "up in $(($(now_ms) - t0)) ms: nodes ${NODES[*]} ($CPUS CPUs, gpu:$GPUS each), controller $CPU_IP:$CTLD_PORT"
    print_exports
}

# ---- day-to-day and faults ---------------------------------------------------

require_up() {
    check_settings
    [[ -f "$MARK" && -f "$CONF" ]] || die "not up (no $CONF); run: scripts/slurm-local.sh up"
}

cmd_status() {
    require_up
    local rc=0
    sl sinfo || rc=$?
    sl squeue || rc=$?
    return "$rc"
}

cmd_env() {
    require_up
    ctld_answers || die "slurmctld is not answering"
    print_exports
}

cmd_kill_slurmd() {
    require_up
    local n="${1:-}" p i
    node_index "$n" >/dev/null
    p="$(slurmd_pid "$n")"
    [[ -n "$p" ]] || die "slurmd of $n is not running"
    kill -KILL "$p"
    for ((i = 0; i < 50; i++)); do # <= ~5 s
        pid_alive "$p" || break
        sleep 0.1
    done
    ! pid_alive "$p" || die "slurmd of $n ($p) survived SIGKILL"
    log "killed slurmd of $n (pid $p); its jobs' processes are left running"
}

cmd_start_slurmd() {
    require_up
    local n="${1:-}"
    node_index "$n" >/dev/null
    if [[ -n "$(slurmd_pid "$n")" ]]; then
        log "slurmd of $n already running (pid $(slurmd_pid "$n"))"
        return 0
    fi
    [[ -e "/run/netns/$(netns_of "$n")" ]] || die "namespace of $n is gone; run down and up"
    start_slurmd_daemon "$n"
    if ctld_answers; then
        wait_until 20 50 "$n responding" node_ok "$n" ||
            die "$n does not come back: state $(node_state "$n"); see $LOGDIR/slurmd-$n.log"
    else
        log "slurmctld is not up: $n will register when it is"
    fi
    log "slurmd of $n started (pid $(slurmd_pid "$n"))"
}

cmd_stop_ctld() {
    require_up
    local p
    p="$(ctld_pid)"
    [[ -n "$p" ]] || {
        log "slurmctld is not running"
        return 0
    }
    stop_daemon slurmctld "$p"
    log "slurmctld stopped"
}

live_nodes_ok() {
    local n
    for n in "${NODES[@]}"; do
        [[ -z "$(slurmd_pid "$n")" ]] && continue
        [[ "$(node_state "$n")" != *'*' && -n "$(node_state "$n")" ]] || return 1
    done
}

cmd_start_ctld() {
    require_up
    if [[ -n "$(ctld_pid)" ]]; then
        log "slurmctld already running (pid $(ctld_pid))"
        return 0
    fi
    [[ -n "$(munged_pid)" ]] || die "munged is not running; run down and up"
    start_ctld_daemon
    wait_until 20 50 "live slurmds responding" live_nodes_ok ||
        die "nodes not responding: $(sl sinfo -h -N -o '%N=%t' 2>&1 | tr '\n' ' ')"
    log "slurmctld started (pid $(ctld_pid))"
}

cmd_node_pid() {
    require_up
    local n="${1:-}" h
    node_index "$n" >/dev/null
    h="$(holder_pid "$n")"
    [[ -n "$h" ]] || die "no process holds the namespaces of $n"
    echo "$h"
}

# Serialize the commands that change the cluster (parallel tests, a second
# shell): an flock on this script file, fd 9, closed for every daemon started.
take_lock() {
    exec 9<"${BASH_SOURCE[0]}"
    flock -w 180 9 || die "another slurm-local.sh command held the lock for 180 s"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
    up | down | kill-slurmd | start-slurmd | stop-ctld | start-ctld) take_lock ;;
    esac
    case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    logs)
        check_settings
        [[ -d "$LOGDIR" ]] || die "no logs in $LOGDIR"
        show_logs "${1:-40}"
        ;;
    kill-slurmd) cmd_kill_slurmd "$@" ;;
    start-slurmd) cmd_start_slurmd "$@" ;;
    stop-ctld) cmd_stop_ctld ;;
    start-ctld) cmd_start_ctld ;;
    node-pid) cmd_node_pid "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
