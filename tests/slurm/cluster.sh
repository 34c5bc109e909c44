#!/usr/bin/env bash
# A throwaway single-node SLURM cluster (Debian, run as root) so the workflow's
# SLURM profile can be tested against a real slurmctld/slurmd instead of mocks.
#
#   cluster.sh available   exit 0 if this machine can run it (installs nothing)
#   cluster.sh start       install if needed, start munged, slurmctld, slurmd
#   cluster.sh env         print SLURM_CONF for callers: eval "$(cluster.sh env)"
#                          (optional while the /etc/slurm links below exist)
#   cluster.sh status      show pids, scontrol ping and sinfo
#   cluster.sh stop        cancel jobs, stop the daemons this script started
#
# Everything lives in SLURM_STATE_DIR (default /tmp/dnalm-slurm): slurm.conf,
# gres.conf, pid files, logs, spool. /etc/slurm/slurm.conf and gres.conf are
# symlinks to them while the cluster runs: SLURM_CONF alone is not enough,
# because snakemake-executor-plugin-slurm-jobstep strips every SLURM_* variable
# (SLURM_CONF included) from the environment of the srun it runs inside a job,
# and that srun then finds no config. `stop` removes the links.
set -euo pipefail

STATE_DIR="${SLURM_STATE_DIR:-/tmp/dnalm-slurm}"
START_TIMEOUT="${SLURM_START_TIMEOUT:-60}"
CONF="$STATE_DIR/slurm.conf"
ETC_DIR=/etc/slurm
PACKAGES=(munge slurmctld slurmd slurm-client)
# Binaries that prove the packages are installed.
BINARIES=(munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel)
MUNGE_KEY=/etc/munge/munge.key
# munged runs as the munge user, so its pid file lives in a munge-owned subdir.
MUNGE_PID="$STATE_DIR/munge/munged.pid"
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"

# Daemons and clients started from here read the state-dir config directly.
export SLURM_CONF="$CONF"
# The daemons live in sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "cluster.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing_binaries() {
    local b
    for b in "${BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || echo "$b"
    done
}

# A config in /etc/slurm that is not our link belongs to a real cluster (or
# another state dir): never overwrite it.
foreign_etc_config() {
    local f
    for f in slurm.conf gres.conf; do
        if [[ -e "$ETC_DIR/$f" || -L "$ETC_DIR/$f" ]] \
            && [[ "$(readlink "$ETC_DIR/$f")" != "$STATE_DIR/$f" ]]; then
            echo "$ETC_DIR/$f"
        fi
    done
}

# Prints why this machine cannot run the cluster; prints nothing if it can.
unavailable_reason() {
    [[ "$(id -u)" -eq 0 ]] || { echo "must run as root (slurmd and munged need it)"; return; }
    local foreign
    foreign=$(foreign_etc_config | xargs)
    [[ -z "$foreign" ]] || { echo "$foreign belongs to another SLURM setup; not touching it"; return; }
    [[ -z "$(missing_binaries)" ]] && return
    command -v apt-get >/dev/null 2>&1 \
        || echo "SLURM/munge not installed and no apt-get to install them (missing: $(missing_binaries | xargs))"
}

# pid from a pid file, only if that process is alive and is the expected
# program: a stale file whose pid was reused must never lead us to kill it.
live_pid() {
    local file=$1 comm=$2 pid
    [[ -s "$file" ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
    echo "$pid"
}

install_packages() {
    [[ -z "$(missing_binaries)" ]] && return
    log "installing ${PACKAGES[*]}"
    # Keep postinst scripts from starting the packaged daemons: we start our
    # own, with our config, and must own their pids. Docker-style images ship
    # such a policy already; add one only for the install if there is none.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PACKAGES[@]}"; } >"$STATE_DIR/apt.log" 2>&1 || rc=$?
    [[ $added_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || { tail -20 "$STATE_DIR/apt.log" >&2; die "apt-get failed (log: $STATE_DIR/apt.log)"; }
    hash -r
}

ensure_hostname_resolves() {
    local host
    host=$(hostname)
    # slurmctld resolves its own SlurmctldHost name at startup.
    getent hosts "$host" >/dev/null 2>&1 || echo "127.0.0.1 $host" >>/etc/hosts
}

write_config() {
    local host cpus mem_mb real_mb
    host=$(hostname)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # slurmd drains a node that reports less memory than RealMemory; leave room.
    real_mb=$((mem_mb * 9 / 10))
    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/spool"
    # Fresh logs per start, so a failure's tail shows this start only.
    : >"$STATE_DIR/slurmctld.log"
    : >"$STATE_DIR/slurmd.log"
    cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh; rewritten on every start.
ClusterName=dnalm-test
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# No systemd and no cgroups here: track processes by /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job without --mem would otherwise take the whole node's memory and run alone.
DefMemPerCPU=$((real_mb / cpus))
SchedulerType=sched/backfill
# A restarted slurmd brings the node back to idle without an admin.
ReturnToService=2
# The snakemake plugin polls squeue for finished jobs; keep them listed.
MinJobAge=600
# Quick cancel on stop.
KillWait=5
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # A fake GPU: jobs asking gpu=1 are scheduled one at a time and get
    # CUDA_VISIBLE_DEVICES=0, with no device behind it.
    echo "NodeName=$host Name=gpu File=/dev/null" >"$STATE_DIR/gres.conf"
}

# Point the default config paths at ours (unavailable_reason has already
# refused a foreign config there).
link_etc_config() {
    local f
    mkdir -p "$ETC_DIR"
    for f in slurm.conf gres.conf; do
        ln -sfn "$STATE_DIR/$f" "$ETC_DIR/$f"
    done
}

unlink_etc_config() {
    local f
    for f in slurm.conf gres.conf; do
        [[ "$(readlink "$ETC_DIR/$f" 2>/dev/null)" == "$STATE_DIR/$f" ]] && rm -f "$ETC_DIR/$f"
    done
    return 0
}

start_munged() {
    live_pid "$MUNGE_PID" munged >/dev/null && return
    if [[ ! -s "$MUNGE_KEY" ]]; then
        mkdir -p "$(dirname "$MUNGE_KEY")"
        mungekey --create --keyfile="$MUNGE_KEY"
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 600 "$MUNGE_KEY"
    # /run is a tmpfs the init script would normally prepare.
    install -d -o munge -g munge -m 755 /run/munge "$(dirname "$MUNGE_PID")"
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- munged --pid-file="$MUNGE_PID" </dev/null \
        || fail_start "munged failed to start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    fail_start "munged started but munge -n | unmunge does not work"
}

start_slurm_daemon() {
    local name=$1 pidfile=$2
    shift 2
    live_pid "$pidfile" "$name" >/dev/null && return
    "$name" -f "$CONF" "$@" </dev/null >>"$STATE_DIR/$name.out" 2>&1 \
        || fail_start "$name failed to start (see $STATE_DIR/$name.log and $name.out)"
}

node_state() {
    sinfo -h -N -n "$(hostname)" -o '%T' 2>/dev/null | head -1
}

# A half-started cluster is worse than none: show why, then take it down.
fail_start() {
    log "ERROR: $*"
    local f
    for f in slurmctld.log slurmd.log; do
        [[ -s "$STATE_DIR/$f" ]] && { log "last lines of $STATE_DIR/$f:"; tail -5 "$STATE_DIR/$f" >&2; }
    done
    cmd_stop
    exit 1
}

wait_until_up() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until scontrol ping 2>/dev/null | grep -q 'is UP'; do
        ((SECONDS < deadline)) || fail_start "slurmctld did not answer 'scontrol ping' within ${START_TIMEOUT}s"
        sleep 0.5
    done
    until [[ "$(node_state)" == idle ]]; do
        ((SECONDS < deadline)) || fail_start "node $(hostname) not idle within ${START_TIMEOUT}s (state: '$(node_state)')"
        sleep 0.5
    done
}

all_running() {
    live_pid "$MUNGE_PID" munged >/dev/null \
        && live_pid "$CTLD_PID" slurmctld >/dev/null \
        && live_pid "$SLURMD_PID" slurmd >/dev/null \
        && scontrol ping 2>/dev/null | grep -q 'is UP'
}

cmd_start() {
    local reason
    reason=$(unavailable_reason)
    [[ -z "$reason" ]] || die "$reason"
    mkdir -p "$STATE_DIR"
    if all_running; then
        link_etc_config
        log "already running (state in $STATE_DIR)"
        return
    fi
    install_packages
    ensure_hostname_resolves
    # Config is only rewritten while slurmctld is down, so a half-up cluster
    # is completed with the config it is already running on.
    live_pid "$CTLD_PID" slurmctld >/dev/null || write_config
    link_etc_config
    start_munged
    # -c: a fresh controller state each start; old jobs mean nothing here.
    start_slurm_daemon slurmctld "$CTLD_PID" -c
    start_slurm_daemon slurmd "$SLURMD_PID"
    wait_until_up
    log "up: $(sinfo -h -o '%P %D %T %G' | head -1); export SLURM_CONF=$CONF"
}

# Not alive once it is a zombie: PID 1 on these VMs reaps orphans only ~2 s
# later, and the daemons' pids are not our children to wait for.
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Stops daemons given as name:pidfile, all signalled at once; SIGKILL for any
# still alive after 10 s.
stop_daemons() {
    local spec name pidfile pid pids=() left=()
    for spec in "$@"; do
        name=${spec%%:*}
        pidfile=${spec#*:}
        if pid=$(live_pid "$pidfile" "$name"); then
            kill -TERM "$pid"
            pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    for _ in $(seq 100); do
        left=()
        for pid in "${pids[@]}"; do
            alive "$pid" && left+=("$pid")
        done
        ((${#left[@]} == 0)) && break
        sleep 0.1
    done
    if ((${#left[@]} > 0)); then
        log "pids ${left[*]} ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
    # Give PID 1 a moment to reap, so `ps` right after stop shows nothing.
    for _ in $(seq 50); do
        left=()
        for pid in "${pids[@]}"; do
            [[ -e "/proc/$pid" ]] && left+=("$pid")
        done
        ((${#left[@]} == 0)) && return 0
        sleep 0.1
    done
}

cmd_stop() {
    # Cancel jobs while the controller is up, so no slurmstepd or job process
    # outlives the daemons.
    if live_pid "$CTLD_PID" slurmctld >/dev/null; then
        squeue -h -t PD,R,S -o %i 2>/dev/null | xargs -r scancel --full 2>/dev/null || true
        for _ in $(seq 60); do
            [[ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    stop_daemons "slurmd:$SLURMD_PID" "slurmctld:$CTLD_PID"
    # Last: the slurm daemons authenticate through munged until they exit.
    stop_daemons "munged:$MUNGE_PID"
    unlink_etc_config
    log "stopped"
}

cmd_status() {
    local name file pid rc=0
    for name in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
        file=${name#*:}
        name=${name%%:*}
        if pid=$(live_pid "$file" "$name"); then
            echo "$name running (pid $pid)"
        else
            echo "$name not running"
            rc=1
        fi
    done
    if [[ $rc -eq 0 ]]; then
        scontrol ping || rc=1
        sinfo -N -o '%N %P %T %c %m %G'
    fi
    return $rc
}

case "${1:-}" in
    available)
        reason=$(unavailable_reason)
        [[ -z "$reason" ]] || { echo "$reason"; exit 1; }
        ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *)
        echo "usage: $0 available|start|stop|status|env" >&2
        exit 2
        ;;
esac
