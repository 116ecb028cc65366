#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for kdsweep's SLURM tests.
#
# Installs slurm-wlm and munge from Debian's packages when missing, writes a one-node
# slurm.conf for this host (CPUs from nproc, RealMemory from free), starts munged,
# slurmctld and slurmd, and waits until `sinfo` shows the node idle. Idempotent: run it
# again while the cluster is up and it only checks. Needs root (it writes /etc/slurm).
# No slurmdbd: `sacct` does not work here; kdsweep's SLURM backend only uses squeue.
#
#   bash slurm/testcluster/start.sh      # then: sinfo; srun hostname
#   bash slurm/testcluster/stop.sh
set -euo pipefail

WAIT_S="${KDSWEEP_SLURM_WAIT_S:-90}"  # how long to wait for the node to turn idle
CONF_DIR=/etc/slurm
STATE_DIR=/var/lib/slurm          # created by the Debian packages, owned by user slurm
LOG_DIR=/var/log/slurm
NODE="$(hostname -s)"

log() { echo "testcluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n1; }

# PIDFILE names a live process called NAME (daemons write pid files; stop.sh kills exactly
# those). The name check keeps a stale file whose pid was reused from passing for the daemon.
alive() { [[ -s "$1" ]] && [[ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" == "$2" ]]; }

[[ $EUID -eq 0 ]] || die "run as root (installs packages, writes $CONF_DIR, starts daemons)"

if command -v sinfo >/dev/null && [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]; then
    log "already running: node $NODE is $(node_state)"
    exit 0
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
install -d -o slurm -g slurm -m 0755 "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
install -d -m 0755 "$CONF_DIR"
if ! alive /run/slurmctld.pid slurmctld; then
    # Rewritten on every cold start: the hostname, CPUs or memory of the machine may have changed.
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by kdsweep's slurm/testcluster/start.sh: a one-node test cluster on $NODE.
ClusterName=kdsweep-test
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120): tests
# requeue running jobs and should not wait two minutes for each. Still far above the few
# seconds a step launch takes here.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
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
ReturnToService=2
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
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    log "starting slurmctld ($CPUS CPUs, ${MEM_MB} MB on $NODE)"
    /usr/sbin/slurmctld
fi
if ! alive /run/slurmd.pid slurmd; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

# --- wait for the node -----------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
while :; do
    state="$(node_state || true)"
    case "$state" in
        idle | mix | alloc) log "ready: node $NODE is $state"; exit 0 ;;
        drain* | down* | drng*)
            # A node down from an earlier unclean stop comes back on request.
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    if ((SECONDS >= deadline)); then
        log "node $NODE did not become idle within ${WAIT_S}s (state: '${state:-no answer from slurmctld}')"
        for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
            [[ -f $f ]] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }
        done
        exit 1
    fi
    sleep 1
done
