#!/usr/bin/env bash
# Stage 1 of the mini recipe: synthesise the mini noisy corpus (CHiME-4 on-disk shape), prepare
# it with the CHiME-4 preparation, then add per-condition test sets.
# Writes data/{tr05_multi_noisy, dt05_multi_isolated_1ch_track,
#              {dt05,et05}_{real,simu}_isolated_1ch_track (+ utt2condition),
#              {dt05,et05}_{real,simu}_isolated_1ch_track_{0,5}dB} and data/nlsyms.txt.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
help_message="Usage: $0 [options]
  --corpus_dir DIR   where the corpus is synthesised (default: downloads/mini_noisy)
  --size NAME        default (3000 train / 200 dev / 400 test utterances) or smoke (40 / 16 / 32)
  --num_train N      override the preset's training size (likewise --num_dev, --num_test)
  --seed N           (default: 0); the same seed gives the same bytes
  --nj N             synthesis processes (default: 2; the output does not depend on it)
  --output_dir DIR   (default: data)"

corpus_dir=downloads/mini_noisy
size=default
num_train=
num_dev=
num_test=
seed=0
nj=2
output_dir=data

while [ $# -gt 0 ]; do
    if [ "$1" = --help ] || [ "$1" = -h ]; then echo "${help_message}"; exit 0; fi
    [ $# -ge 2 ] || { log "Error: option '$1' needs a value"; exit 2; }
    case "$1" in
        --corpus_dir|--corpus-dir) corpus_dir=$2 ;;
        --size) size=$2 ;;
        --num_train|--num-train) num_train=$2 ;;
        --num_dev|--num-dev) num_dev=$2 ;;
        --num_test|--num-test) num_test=$2 ;;
        --seed) seed=$2 ;;
        --nj) nj=$2 ;;
        --output_dir|--output-dir) output_dir=$2 ;;
        *) log "Error: unknown option '$1'"; echo "${help_message}" >&2; exit 2 ;;
    esac
    shift 2
done
if [ -f ./path.sh ]; then . ./path.sh; fi

opts=(--corpus_dir "${corpus_dir}" --size "${size}" --seed "${seed}" --nj "${nj}")
[ -z "${num_train}" ] || opts+=(--num_train "${num_train}")
[ -z "${num_dev}" ] || opts+=(--num_dev "${num_dev}")
[ -z "${num_test}" ] || opts+=(--num_test "${num_test}")

log "Synthesising the mini corpus into ${corpus_dir}/"
python3 local/synthesize_mini_corpus.py "${opts[@]}"
log "Preparing it as CHiME-4 into ${output_dir}/"
python3 local/prepare_chime4.py --corpus_dir "${corpus_dir}" --output_dir "${output_dir}" \
    --isolated_ext "${corpus_dir}/data/audio/16kHz/isolated_ext" --train_channels 5
log "Writing utt2condition and the per-SNR test sets"
python3 local/make_condition_sets.py --data_dir "${output_dir}" \
    --conditions "${corpus_dir}/data/annotations/mini_noisy_conditions.txt"
log "Successfully finished. [elapsed=${SECONDS}s]"
