#!/usr/bin/env bash
# Stop the test cluster started by start.sh: every slurmd, slurmctld, munged (by their pid files).
set -euo pipefail

stop() {  # NAME PIDFILE: SIGTERM the daemon, wait up to 10 s for it to exit
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid="$(cat "$pidfile")"
    # Only the daemon itself: a stale pid file's pid may belong to another process by now.
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
        echo "testcluster: stopping $name (pid $pid)" >&2
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$pidfile"
}

for pidfile in /run/slurmd*.pid; do stop slurmd "$pidfile"; done  # one per node (slurmd-<node>.pid)
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
