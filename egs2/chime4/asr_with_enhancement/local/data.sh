#!/usr/bin/env bash
# Stage 1 of the recipe: CHiME-4 data dirs (local/prepare_chime4.py does the work).
# Writes data/{tr05_multi_noisy, dt05_multi_isolated_1ch_track,
#              {dt05,et05}_{real,simu}_isolated_1ch_track}/ and data/nlsyms.txt.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
help_message="Usage: $0 [options]
  --corpus_dir DIR          CHiME-4 CHiME3 directory (default: \$CHIME4 from db.sh)
  --extra_annotations DIR   CHiME4_diff/CHiME3/data/annotations, with the et05 1ch track lists
                            (default: \$CHIME4_EXTRA_ANNOTATIONS from db.sh; empty = look in the corpus)
  --isolated_ext DIR        re-simulated isolated_ext dir (<set>_<env>_simu/<stem>.CH<n>.Clean.wav);
                            empty (default): tr05_org / booth references, not time-aligned
  --wsj0_dir DIR            WSJ0 .dot tree for tr05_simu text (default: <corpus_dir>/data/WSJ0)
  --train_channels \"N ...\"  training channels (default: \"1 2 3 4 5 6\")
  --output_dir DIR          (default: data)"

. ./db.sh
corpus_dir=${CHIME4}
extra_annotations=${CHIME4_EXTRA_ANNOTATIONS}
isolated_ext=
wsj0_dir=
train_channels="1 2 3 4 5 6"
output_dir=data

while [ $# -gt 0 ]; do
    if [ "$1" = --help ] || [ "$1" = -h ]; then echo "${help_message}"; exit 0; fi
    [ $# -ge 2 ] || { log "Error: option '$1' needs a value"; exit 2; }
    case "$1" in
        --corpus_dir|--corpus-dir) corpus_dir=$2 ;;
        --extra_annotations|--extra-annotations) extra_annotations=$2 ;;
        --isolated_ext|--isolated-ext) isolated_ext=$2 ;;
        --wsj0_dir|--wsj0-dir) wsj0_dir=$2 ;;
        --train_channels|--train-channels) train_channels=$2 ;;
        --output_dir|--output-dir) output_dir=$2 ;;
        *) log "Error: unknown option '$1'"; echo "${help_message}" >&2; exit 2 ;;
    esac
    shift 2
done
if [ -z "${corpus_dir}" ]; then
    log "Error: set CHIME4 in db.sh (or pass --corpus_dir) to the CHiME-4 CHiME3 directory"
    exit 2
fi
if [ -f ./path.sh ]; then . ./path.sh; fi

opts=(--corpus_dir "${corpus_dir}" --output_dir "${output_dir}")
[ -z "${extra_annotations}" ] || opts+=(--extra_annotations "${extra_annotations}")
[ -z "${isolated_ext}" ] || opts+=(--isolated_ext "${isolated_ext}")
[ -z "${wsj0_dir}" ] || opts+=(--wsj0_dir "${wsj0_dir}")
# shellcheck disable=SC2086
opts+=(--train_channels ${train_channels})

log "Preparing CHiME-4 from ${corpus_dir} into ${output_dir}/"
python3 local/prepare_chime4.py "${opts[@]}"
log "Successfully finished. [elapsed=${SECONDS}s]"
