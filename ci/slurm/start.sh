#!/usr/bin/env bash
# Start a throw-away single-node Slurm cluster (munged, slurmctld, slurmd) that listens on
# 127.0.0.1 only, without systemd, with all configuration, state, logs and sockets under STATE_DIR.
#
#   ci/slurm/start.sh STATE_DIR           # needs root and ci/slurm/install.sh's packages
#   export SLURM_CONF=STATE_DIR/etc/slurm.conf    # for sbatch/squeue/scancel/sinfo (printed last)
#   ci/slurm/stop.sh STATE_DIR            # stops it again, by the PIDs recorded in STATE_DIR/run
#
# The daemons run in a private UTS namespace whose host name is "localhost", so Slurm's
# NoInAddrAny binds every socket (slurmctld, slurmd, srun inside jobs) to 127.0.0.1 whatever the
# machine is called. Where namespaces are not available the machine's own host name must resolve
# to a 127.x address; otherwise the script refuses to start rather than listen on other addresses.
#
# Environment knobs:
#   SLURM_CI_CTLD_PORT, SLURM_CI_SLURMD_PORT   TCP ports on 127.0.0.1 (default 6817, 6818)
#   SLURM_CI_CPUS      CPUs the node advertises (default: the machine's); more than the machine
#                      has is allowed (jobs then share cores), e.g. for `srun -n 4` on 2 cores
#   SLURM_CI_TIMEOUT   seconds to wait for each daemon (default 30)
# Prints "start.sh: cluster up in N ms (...)" and, as its last line, "export SLURM_CONF=...".
set -euo pipefail

die() { echo "start.sh: $*" >&2; exit 1; }
[ $# = 1 ] || die "usage: $0 STATE_DIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(realpath -m "$1")
ctld_port=${SLURM_CI_CTLD_PORT:-6817}
slurmd_port=${SLURM_CI_SLURMD_PORT:-6818}
timeout=${SLURM_CI_TIMEOUT:-30}

[ "$(id -u)" = 0 ] || die "must run as root (slurmd runs jobs as their submitting user)"
for b in munged mungekey munge unmunge slurmctld slurmd sinfo scontrol; do
  command -v "$b" >/dev/null || die "$b not found: run ci/slurm/install.sh first"
done
for pf in "$root"/run/*.pid; do
  if [ -s "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then
    die "a cluster is already running in $root (pid $(cat "$pf") from $pf): run ci/slurm/stop.sh $root"
  fi
done

mkdir -p "$root"/{etc,munge,state,spool,log,run}
# munged refuses group/other-writable directories on its paths and needs a 0755 socket directory.
chmod 0755 "$root" "$root/munge"
rm -rf "${root:?}"/state/* "${root:?}"/spool/* "${root:?}"/log/* "${root:?}"/run/*   # cold start
rm -f "$root/munge/munge.socket.2" "$root/munge/munge.socket.2.lock"
[ -s "$root/munge/munge.key" ] || mungekey --create --bits=1024 --keyfile="$root/munge/munge.key"
chmod 0600 "$root/munge/munge.key"

# in_ns CMD...: run CMD with the host name "localhost" (private UTS namespace), same PID.
if unshare --uts true 2>/dev/null; then
  in_ns=(unshare --uts sh -c 'hostname localhost && exec "$@"' sh)
else
  ip=$(getent ahostsv4 "$(hostname)" | awk '{print $1; exit}')
  case "$ip" in
    127.*) in_ns=() ;;
    *) die "no UTS namespace (unshare --uts failed) and host name '$(hostname)' resolves to" \
           "'${ip:-nothing}', not 127.x: Slurm would not listen on loopback only. Add" \
           "'127.0.1.1 $(hostname)' to /etc/hosts or run with CAP_SYS_ADMIN." ;;
  esac
fi

hw=$(slurmd -C | head -n 1)
cpus=${SLURM_CI_CPUS:-$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")}
memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
[[ "$cpus" =~ ^[1-9][0-9]*$ && "$memory" =~ ^[0-9]+$ ]] \
  || die "cannot read CPUs/RealMemory from 'slurmd -C': $hw"
sed -e "s|@ROOT@|$root|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    -e "s|@CPUS@|$cpus|g" -e "s|@MEMORY_MB@|$memory|g" "$here/slurm.conf.in" > "$root/etc/slurm.conf.tmp"
mv "$root/etc/slurm.conf.tmp" "$root/etc/slurm.conf"
: > "$root/etc/plugstack.conf"
export SLURM_CONF="$root/etc/slurm.conf"

# wait_for SECONDS PIDFILE CHECK...: poll CHECK every 0.1 s while the daemon is alive.
wait_for() {
  local n=$(($1 * 10)) pidfile=$2
  shift 2
  for _ in $(seq 1 "$n"); do
    "$@" && return 0
    kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
munge_ok() { munge -n -S "$root/munge/munge.socket.2" 2>/dev/null | unmunge -S "$root/munge/munge.socket.2" >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_idle() { [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ]; }
fail() { tail -n 20 "$root"/log/*.stdout "$root"/log/*.log >&2 || true; "$here/stop.sh" "$root" >&2 || true; die "$@"; }

t0=$(date +%s%N)
# munged -F logs to stderr; --force accepts group-writable parents of the state dir.
setsid munged -F --force --key-file="$root/munge/munge.key" --socket="$root/munge/munge.socket.2" \
  --pid-file="$root/run/munged.pidfile" --seed-file="$root/munge/munged.seed" \
  </dev/null >"$root/log/munged.stdout" 2>&1 &
echo $! > "$root/run/munged.pid"
wait_for "$timeout" "$root/run/munged.pid" munge_ok || fail "munged did not come up"

# slurmctld -c: cold start (ignore saved state). Its first batch scheduling pass runs 3 s after
# start-up whatever batch_sched_delay says; we wait for it below so the first job starts at once.
setsid "${in_ns[@]}" slurmctld -D -c -f "$SLURM_CONF" </dev/null >"$root/log/slurmctld.stdout" 2>&1 &
echo $! > "$root/run/slurmctld.pid"
t_ctld=$(date +%s%N)
wait_for "$timeout" "$root/run/slurmctld.pid" ctld_ok || fail "slurmctld did not come up"

setsid "${in_ns[@]}" slurmd -D -N localhost -f "$SLURM_CONF" </dev/null >"$root/log/slurmd.stdout" 2>&1 &
echo $! > "$root/run/slurmd.pid"
wait_for "$timeout" "$root/run/slurmd.pid" node_idle || fail "node did not become idle: $(sinfo -N -l 2>&1)"
# stop.sh ends whatever is left in slurmd's own namespace (job steps and their processes).
ns=$(readlink "/proc/$(cat "$root/run/slurmd.pid")/ns/uts" || true)
[ -z "$ns" ] || [ "$ns" = "$(readlink /proc/self/ns/uts)" ] || echo "$ns" > "$root/run/slurmd.uts_ns"

rest=$((3200 - ($(date +%s%N) - t_ctld) / 1000000))
[ "$rest" -le 0 ] || sleep "$(printf '%d.%03d' $((rest / 1000)) $((rest % 1000)))"
echo "start.sh: cluster up in $((($(date +%s%N) - t0) / 1000000)) ms (munged=$(cat "$root/run/munged.pid")" \
  "slurmctld=$(cat "$root/run/slurmctld.pid") slurmd=$(cat "$root/run/slurmd.pid"), $cpus CPUs," \
  "ports $ctld_port/$slurmd_port on 127.0.0.1)"
echo "export SLURM_CONF=$SLURM_CONF"
