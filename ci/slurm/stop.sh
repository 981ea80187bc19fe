#!/usr/bin/env bash
# Stop the cluster that ci/slurm/start.sh started in STATE_DIR and leave no process behind:
#   1. cancel every job still queued or running (so no job step outlives slurmd),
#   2. SIGTERM slurmd, slurmctld and munged by the PIDs recorded in STATE_DIR/run (each PID is
#      checked to still be that daemon), SIGKILL after 15 s,
#   3. SIGKILL any process left in slurmd's private UTS namespace (a job step that ignored
#      SIGTERM), identified by the namespace recorded at start, never by process name.
# Safe to run twice or on a half-started cluster. Exit status 1 if something survived SIGKILL.
#
#   ci/slurm/stop.sh STATE_DIR
set -uo pipefail

[ $# = 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
root=$(realpath -m "$1")
export SLURM_CONF="$root/etc/slurm.conf"
t0=$(date +%s%N)

# alive NAME: prints the recorded PID of daemon NAME if that process still is NAME.
alive() {
  local pid
  pid=$(cat "$root/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}
# gone PID...: true when none of the PIDs exists any more.
gone() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_gone() {  # wait_gone TENTHS PID...
  local n=$1; shift
  for _ in $(seq 1 "$n"); do gone "$@" && return 0; sleep 0.1; done
  gone "$@"
}

if alive slurmctld >/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 100); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi

pids=()
for daemon in slurmd slurmctld munged; do
  if pid=$(alive "$daemon"); then
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  fi
done
if [ ${#pids[@]} -gt 0 ] && ! wait_gone 150 "${pids[@]}"; then
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && echo "stop.sh: pid $pid ignored SIGTERM for 15 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  done
  wait_gone 50 "${pids[@]}"
fi

# Whatever still runs in slurmd's namespace belongs to the cluster (never our own namespace).
leftover=()
ns=$(cat "$root/run/slurmd.uts_ns" 2>/dev/null)
if [ -n "$ns" ] && [ "$ns" != "$(readlink /proc/self/ns/uts)" ]; then
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/ns/uts" 2>/dev/null)" = "$ns" ] && leftover+=("${d#/proc/}")
  done
  if [ ${#leftover[@]} -gt 0 ]; then
    echo "stop.sh: killing ${#leftover[@]} process(es) left by jobs: ${leftover[*]}" >&2
    kill -KILL "${leftover[@]}" 2>/dev/null
    wait_gone 50 "${leftover[@]}"
  fi
fi

rc=0
for pid in "${pids[@]}" "${leftover[@]}"; do
  kill -0 "$pid" 2>/dev/null && { echo "stop.sh: pid $pid is still running" >&2; rc=1; }
done
[ $rc = 0 ] && rm -f "$root"/run/*.pid "$root"/run/*.pidfile "$root/run/slurmd.uts_ns"
echo "stop.sh: stopped in $((($(date +%s%N) - t0) / 1000000)) ms"
exit $rc
