#!/usr/bin/env bash
# Prepare data/rats_Ach_waveform_8k_joint_enh_asr_{train,valid,test} (see local/prepare_rats_cha.py).
#   --mode pairs : from the parallel noisy/clean pairs the paper's authors used ($RATS_CHA_PAIRS)
#   --mode ldc   : best effort, from LDC2015S02 channel A + Fisher transcripts ($RATS_LDC, $FISHER_TRANS)
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

mode=pairs        # pairs or ldc
corpus_dir=       # default: $RATS_CHA_PAIRS (pairs) or $RATS_LDC (ldc), from db.sh
fisher_dir=       # default: $FISHER_TRANS (ldc only)
audio_dir=        # where ldc mode writes the cut 8 kHz wavs (default: data/rats_cha_8k)
ldc_parts=        # ldc only: split=part overrides, e.g. "valid=dev-2,test=dev-1"
output_dir=data
help_message="Usage: $0 [options]
  --mode pairs|ldc       input form (default: pairs)
  --corpus_dir DIR       pairs root or LDC2015S02 root (default: \$RATS_CHA_PAIRS / \$RATS_LDC from db.sh)
  --fisher_dir DIR       Fisher English transcripts, ldc mode (default: \$FISHER_TRANS from db.sh)
  --audio_dir DIR        where ldc mode writes the cut 8 kHz wavs (default: <output_dir>/rats_cha_8k)
  --ldc_parts LIST       ldc mode: split=part overrides, e.g. \"valid=dev-2,test=dev-1\"
  --output_dir DIR       (default: data)"

. utils/parse_options.sh
. ./db.sh
. ./path.sh

if [ $# -ne 0 ]; then
    log "Error: unexpected arguments: $*"
    exit 2
fi

case "${mode}" in
    pairs) corpus_dir=${corpus_dir:-${RATS_CHA_PAIRS}}; var=RATS_CHA_PAIRS ;;
    ldc) corpus_dir=${corpus_dir:-${RATS_LDC}}; fisher_dir=${fisher_dir:-${FISHER_TRANS}}; var=RATS_LDC ;;
    *) log "Error: --mode must be pairs or ldc, got '${mode}'"; exit 2 ;;
esac
if [ -z "${corpus_dir}" ]; then
    log "Error: set ${var} in db.sh (or pass --corpus_dir) for --mode ${mode}"
    exit 2
fi

opts=(--mode "${mode}" --corpus_dir "${corpus_dir}" --output_dir "${output_dir}")
if [ "${mode}" = ldc ]; then
    [ -n "${fisher_dir}" ] || { log "Error: set FISHER_TRANS in db.sh (or pass --fisher_dir)"; exit 2; }
    opts+=(--fisher_dir "${fisher_dir}")
    [ -z "${audio_dir}" ] || opts+=(--audio_dir "${audio_dir}")
    [ -z "${ldc_parts}" ] || opts+=(--ldc_parts "${ldc_parts}")
fi

log "Preparing RATS channel A (${mode}) from ${corpus_dir} into ${output_dir}/"
python local/prepare_rats_cha.py "${opts[@]}"
log "Successfully finished. [elapsed=${SECONDS}s]"
