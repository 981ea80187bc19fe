#!/usr/bin/env bash
# Install the Debian packages the CI Slurm cluster needs (slurmctld, slurmd, slurm-client, munge),
# without starting any service. Does nothing when they are installed already.
#
#   ci/slurm/install.sh
#
# Exit status: 0 installed (or already there); 2 cannot install here (not root, or no apt-get):
# the Slurm tests are then skipped; 1 apt-get failed (its output is on stderr).
# Measured on Debian 12: about 3-4 s for `apt-get install` on an idle machine, +17 MB.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge)
commands=(slurmctld slurmd sbatch squeue scancel sinfo scontrol srun munged mungekey)

missing() { local c; for c in "${commands[@]}"; do command -v "$c" >/dev/null || return 0; done; return 1; }
missing || { echo "install.sh: Slurm and munge are already installed"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install.sh: Slurm is not installed and cannot be installed here (needs root and apt-get);" \
       "install the packages ${packages[*]} (Debian/Ubuntu) to run the Slurm tests" >&2
  exit 2
fi

# The packages ship init scripts; a temporary policy-rc.d stops apt from starting a system munged
# or slurmd (we run our own daemons), unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# written by ci/slurm/install.sh while installing Slurm\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  own_policy=1
fi
trap 'if [ $own_policy = 1 ]; then rm -f "$policy"; fi' EXIT

t0=$(date +%s%N)
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  rm -f "$log"
  echo "install.sh: apt-get failed (see above)" >&2
  exit 1
fi
rm -f "$log"
missing && { echo "install.sh: installed ${packages[*]} but a command is still missing" >&2; exit 1; }
echo "install.sh: installed ${packages[*]} in $((($(date +%s%N) - t0) / 1000000)) ms"
