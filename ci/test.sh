#!/usr/bin/env bash
# The project's test command (README quick start, CI): set up, then run the suite.
# Extra arguments go to pytest, e.g. ci/test.sh -m "not slow" test/train.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${repo_root}"
tools/setup.sh
# A real single-node Slurm for the Slurm-backend tests (Debian packages; needs root with apt).
ci/slurm/install.sh || echo "ci/test.sh: Slurm could not be installed here; the real-Slurm tests will be skipped" >&2
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
rc=0
tools/venv/bin/python -m pytest "${@:-test}" || rc=$?
if [ "${rc}" = 5 ]; then
    echo "ci/test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "${rc}"
