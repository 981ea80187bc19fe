# Sourced by run.sh and enh_asr.sh (ESPnet convention): the environment of every stage.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/activate_python.sh"
export PATH="${PWD}/utils:${PATH}"
# Debian's sctk keeps sclite off PATH; the scorer uses it when present.
[ -d /usr/lib/sctk/bin ] && export PATH="${PATH}:/usr/lib/sctk/bin"
# One thread per process: parallel jobs share the cores (enh_asr.sh --train_num_threads for the trainer).
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
