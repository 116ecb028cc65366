#!/usr/bin/env bash
# A real SLURM cluster on this machine, for kdsweep's SLURM tests: one node, or several.
#
# Installs slurm-wlm and munge from Debian's packages when missing, writes slurm.conf and
# gres.conf for this host, starts munged, slurmctld and one slurmd per node, and waits until
# `sinfo` shows every node idle. Idempotent: run it again while the same cluster is up and it
# only checks; asked for another number of nodes, it stops the running one first. Needs root
# (it writes /etc/slurm and makes device files). No slurmdbd: `sacct` does not work here;
# kdsweep's SLURM backend only uses squeue.
#
# --nodes N (default 1): N nodes kd1..kdN, each its own slurmd (`slurmd -N kdK`, its own port,
# spool directory, pid and log file) on this one machine, as SLURM's developers emulate a
# larger system. With one node it is named after this host.
#
# GPUs without a GPU: every node has one "GPU", a character device standing in for
# /dev/nvidiaK (major 195, as NVIDIA's driver makes them) under $GPU_DIR, declared in
# gres.conf as `Name=gpu File=...`, so a `--gres=gpu:1` job gets CUDA_VISIBLE_DEVICES from
# SLURM; and $SHARDS shards of it (`Name=shard`; with several nodes, not on the last one, alone in
# partition "noshard"), so `--gres=shard:1` jobs share it, at most
# $SHARDS at once. CPUs per node: at least 4 (SlurmdParameters=config_overrides lets a node
# declare more than the machine has), so four quarter-GPU trials can run on one node.
#
#   bash slurm/testcluster/start.sh [--nodes 2]   # then: sinfo -N -o '%N %t %G'; srun hostname
#   bash slurm/testcluster/stop.sh
set -euo pipefail

NODES=1
while (($#)); do
    case "$1" in
        --nodes) NODES="${2:-}"; shift 2 ;;
        --nodes=*) NODES="${1#--nodes=}"; shift ;;
        *) echo "usage: start.sh [--nodes N]  (unknown argument: $1)" >&2; exit 2 ;;
    esac
done
[[ "$NODES" =~ ^[1-8]$ ]] || { echo "start.sh: --nodes takes 1 to 8, not '$NODES'" >&2; exit 2; }

WAIT_S="${KDSWEEP_SLURM_WAIT_S:-90}"  # how long to wait for the node to turn idle
CONF_DIR=/etc/slurm
STATE_DIR=/var/lib/slurm          # created by the Debian packages, owned by user slurm
LOG_DIR=/var/log/slurm
NODE="$(hostname -s)"
GPU_DIR=/run/kdsweep-testcluster   # the stand-in GPU device files
SHARDS=4                           # shards per GPU
# "<prefix>$SHARDS" when node I (0-based) has shards: every node but the last of several, so
# the cluster has a GPU without shards too (partition "noshard").
shards_of() { if ((NODES == 1 || $1 < NODES - 1)); then echo "${2:-}$SHARDS"; fi; }
if ((NODES == 1)); then NAMES=("$NODE"); else NAMES=(); for i in $(seq "$NODES"); do NAMES+=("kd$i"); done; fi
NODELIST="$(IFS=,; echo "${NAMES[*]}")"

log() { echo "testcluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_state() { sinfo -h -n "$1" -o %t 2>/dev/null | head -n1; }
# The node names the running controller knows, sorted, comma-separated ("" when none answers).
running_nodes() { sinfo -h -N -o %N 2>/dev/null | sort -u | paste -sd, -; }
all_ready() {
    local n
    for n in "${NAMES[@]}"; do [[ "$(node_state "$n")" =~ ^(idle|mix|alloc|comp)$ ]] || return 1; done
}

# PIDFILE names a live process called NAME (daemons write pid files; stop.sh kills exactly
# those). The name check keeps a stale file whose pid was reused from passing for the daemon.
alive() { [[ -s "$1" ]] && [[ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" == "$2" ]]; }

[[ $EUID -eq 0 ]] || die "run as root (installs packages, writes $CONF_DIR, starts daemons)"

if command -v sinfo >/dev/null; then
    running="$(running_nodes || true)"
    if [[ -n "$running" && "$running" != "$(printf '%s\n' "${NAMES[@]}" | sort | paste -sd, -)" ]]; then
        log "a cluster of other nodes is up ($running): stopping it for $NODELIST"
        bash "$(dirname "$0")/stop.sh"
    elif [[ -n "$running" ]] && all_ready; then
        log "already running: nodes $NODELIST"
        exit 0
    fi
fi

# --- packages ------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    log "installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- munge: the authentication every SLURM RPC carries -------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if ! alive /run/munge/munged.pid munged; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi

# --- slurm.conf for this one machine -------------------------------------------------------
CPUS="$(nproc)"
MEM_MB="$(free -m | awk '/^Mem:/ {print int($2 * 0.95)}')"  # headroom: slurmd drains a node reporting less than configured
PER_NODE_CPUS=$((CPUS > 4 ? CPUS : 4))
PER_NODE_MEM=$((MEM_MB / NODES))
install -d -o slurm -g slurm -m 0755 "$STATE_DIR/slurmctld" "$LOG_DIR"
for n in "${NAMES[@]}"; do install -d -o slurm -g slurm -m 0755 "$STATE_DIR/slurmd-$n"; done
install -d -m 0755 "$CONF_DIR" "$GPU_DIR"
for i in $(seq 0 $((NODES - 1))); do
    [[ -c "$GPU_DIR/nvidia$i" ]] || mknod -m 0666 "$GPU_DIR/nvidia$i" c 195 "$i" \
        || die "cannot make the stand-in GPU device $GPU_DIR/nvidia$i (mknod needs root and a file system that allows device files)"
done
if ! alive /run/slurmctld.pid slurmctld; then
    # Rewritten on every cold start: the hostname, CPUs or memory of the machine may have changed.
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by kdsweep's slurm/testcluster/start.sh: a test cluster of $NODES node(s) on $NODE.
ClusterName=kdsweep-test
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120): tests
# requeue running jobs and should not wait two minutes for each. Still far above the few
# seconds a step launch takes here.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/slurmctld
# %n: the node's name, so several slurmd on this machine keep apart.
SlurmdSpoolDir=$STATE_DIR/slurmd-%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
# Plain process tracking: containers and CI machines rarely offer writable cgroups.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that ask for no memory get this much per CPU, not the whole node.
DefMemPerCPU=1024
# No slurmdbd: accounting off (sacct errors; squeue is what works here).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# A node that stopped answering comes back when it answers again; one set DOWN by hand (a test
# losing a node) stays down until `scontrol update nodename=... state=resume`.
ReturnToService=1
# Jobs may be requeued (scontrol requeue, submitit's checkpoint-and-requeue on SIGUSR2).
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is killed or requeued (default 30): tests
# requeue running jobs and should not wait half a minute for each.
KillWait=2
# Try pending jobs every 2 s (default 60; backfill 30): a requeued job whose hold just
# expired, which no event wakes the scheduler for, starts within seconds, not a minute.
SchedulerParameters=sched_interval=2,bf_interval=5
# Ended jobs stay visible to squeue this long (seconds): the backend reads their final state.
MinJobAge=600
# slurmd trusts these values instead of what it detects, so a cgroup-limited CPU count
# (nproc) or a rounded memory size does not drain the node.
SlurmdParameters=config_overrides
# One stand-in GPU per node and its shards (gres.conf).
GresTypes=gpu,shard
$(for i in $(seq 0 $((NODES - 1))); do
    port=""; ((NODES == 1)) || port=" Port=$((6830 + i))"
    echo "NodeName=${NAMES[$i]} NodeHostname=$NODE NodeAddr=127.0.0.1$port CPUs=$PER_NODE_CPUS RealMemory=$PER_NODE_MEM Gres=gpu:1$(shards_of "$i" ,shard:) State=UNKNOWN"
done)
# LLN: each job to the least loaded node, so a sweep's trials spread over the nodes.
PartitionName=debug Nodes=$NODELIST Default=YES MaxTime=INFINITE State=UP LLN=YES
$( ((NODES == 1)) || echo "# The last node alone, whose GPU has no shards: a partition to share a GPU on fails.
PartitionName=noshard Nodes=${NAMES[$((NODES - 1))]} MaxTime=INFINITE State=UP")
EOF
    for i in $(seq 0 $((NODES - 1))); do
        echo "NodeName=${NAMES[$i]} Name=gpu File=$GPU_DIR/nvidia$i"
        [[ -z "$(shards_of "$i")" ]] || echo "NodeName=${NAMES[$i]} Name=shard Count=$SHARDS"
    done >"$CONF_DIR/gres.conf"
    log "starting slurmctld ($CPUS CPUs, ${MEM_MB} MB on $NODE)"
    /usr/sbin/slurmctld
fi
for n in "${NAMES[@]}"; do
    if ! alive "/run/slurmd-$n.pid" slurmd; then
        log "starting slurmd for node $n"
        /usr/sbin/slurmd -N "$n"
    fi
done

# --- wait for the node -----------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
while :; do
    all_ready && { log "ready: nodes $NODELIST ($(sinfo -h -N -o '%N:%t:%G' | sort -u | paste -sd' ' -))"; exit 0; }
    for n in "${NAMES[@]}"; do
        case "$(node_state "$n" || true)" in
            drain* | down* | drng*)
                # A node down from an earlier unclean stop (or a test that set it down) comes back on request.
                scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true ;;
        esac
    done
    if ((SECONDS >= deadline)); then
        log "nodes $NODELIST did not all become idle within ${WAIT_S}s (states: '$(sinfo -h -N -o '%N:%t' 2>/dev/null | paste -sd' ' - || echo 'no answer from slurmctld')')"
        for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR"/slurmd-*.log; do
            [[ -f $f ]] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }
        done
        exit 1
    fi
    sleep 1
done
