#!/usr/bin/env bash
# Mini noisy recipe: synthesises a small noisy corpus offline (CHiME-4 on-disk shape), then trains on the
# same data and budget the multi-task baseline (grad_rule sum: the SE and ASR gradients added) and Gradient
# Remedy (grad_rule gr), decodes, enhances, scores, and writes ${expdir}/RESULTS.md with both systems.
# Every stage runs on a 2-core CPU. Re-running skips completed work; an interrupted run resumes.
#
#   ./run.sh                      # everything (sets up tools/venv first when it is missing)
#   ./run.sh --smoke true         # CI smoke run: tiny corpus, tiny model, one epoch (a few minutes)
#   ./run.sh --grad_rules "sum gr pcgrad" --stage 11   # more systems; other options go to enh_asr.sh
set -e
set -u
set -o pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# Options of this script; every other "--name value" pair goes to enh_asr.sh (later wins).
smoke=false        # true: the CI smoke configuration
grad_rules="sum gr" # the systems to train, one per gradient rule
enh_asr_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke)
            [ $# -ge 2 ] || { log "Error: --smoke needs a value (true or false)"; exit 2; }
            case "$2" in true|false) smoke=$2 ;; *) log "Error: --smoke must be true or false, got '$2'"; exit 2 ;; esac
            shift 2 ;;
        --grad_rules)
            [ $# -ge 2 ] || { log "Error: --grad_rules needs a value, e.g. \"sum gr\""; exit 2; }
            grad_rules=$2; shift 2 ;;
        --help|-h)
            sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
            echo "Options of run.sh: --smoke true|false (default ${smoke}), --grad_rules \"<rules>\" (default \"${grad_rules}\")."
            echo "Options of enh_asr.sh (every other option is passed on):"
            cd "$(dirname "$0")" && exec ./enh_asr.sh --help ;;
        *)
            [ $# -ge 2 ] || { log "Error: option '$1' has no value"; exit 2; }
            enh_asr_opts+=("$1" "$2"); shift 2 ;;
    esac
done

cd "$(dirname "$0")"
main_root=$(cd ../../.. && pwd)
if [ ! -x "${main_root}/tools/venv/bin/python" ]; then
    log "tools/venv is missing: running tools/setup.sh first"
    "${main_root}/tools/setup.sh"
fi

# local/data.sh also writes per-SNR copies of the test sets (et05_simu_isolated_1ch_track_0dB, ...); the
# per-SNR and per-noise-type WERs come from utt2condition instead (score groups), so nothing is decoded twice.
train_set=tr05_multi_noisy
valid_set=dt05_multi_isolated_1ch_track
test_sets="et05_simu_isolated_1ch_track et05_real_isolated_1ch_track"

if "${smoke}"; then
    enh_asr_config=conf/tuning/train_enh_asr_smoke.yaml
    inference_config=conf/decode_asr_smoke.yaml
    local_data_opts="--size smoke"
    expdir=exp_smoke
    dumpdir=dump_smoke
else
    enh_asr_config=conf/train_enh_asr.yaml
    inference_config=conf/decode_asr.yaml
    local_data_opts=""
    expdir=exp
    dumpdir=dump
fi

config_name=$(basename "$(readlink -f "${enh_asr_config}")" .yaml)
for rule in ${grad_rules}; do
    log "System: ${config_name} with grad_rule ${rule}"
    # Stages 1-10 are shared by the systems: the second pass finds them complete and skips them.
    ./enh_asr.sh \
        --lang en \
        --ngpu 0 \
        --nj 2 \
        --inference_nj 2 \
        --train_num_threads 2 \
        --fs 16k \
        --audio_format wav \
        --token_type char \
        --use_lm false \
        --min_wav_duration 0.5 \
        --max_wav_duration 10 \
        --local_data_opts "${local_data_opts}" \
        --train_set "${train_set}" \
        --valid_set "${valid_set}" \
        --test_sets "${test_sets}" \
        --score_groups "noise=utt2condition:1 snr=utt2condition:2" \
        --enh_asr_config "${enh_asr_config}" \
        --inference_config "${inference_config}" \
        --grad_rule "${rule}" \
        --enh_asr_tag "${config_name}_${rule}" \
        --expdir "${expdir}" \
        --dumpdir "${dumpdir}" \
        "${enh_asr_opts[@]}"
done
