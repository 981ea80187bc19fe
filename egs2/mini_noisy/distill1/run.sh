#!/usr/bin/env bash
# RobustDistiller on the mini noisy corpus: distil a teacher into a 2-layer student that hears
# corrupted audio while the teacher hears clean audio, with a denoising head as auxiliary task
# (Guimaraes et al. 2024); measure the noise invariance of the student's features before and after
# distillation; train and score a downstream ASR on each student as a frozen front-end.
#
#   ./run.sh                        # everything (tiny random teacher): ~30 min on a busy 2-core CPU
#   ./run.sh --smoke true           # CI smoke run: smoke corpus, one epoch per training
#   ./run.sh --grad_rule gr         # Gradient Remedy between distillation and denoising
#   ./run.sh --teacher_kind hf --teacher_path /models/wavlm-base-plus \
#            --distill_config conf/tuning/train_distill_wavlm_base_plus.yaml   # real teacher (GPU)
#
# Stages (each logs what it reads and writes; completed work is skipped; outputs are atomic):
#   1 data: synthesise the mini corpus (../asr_with_enhancement/local/data.sh), make the clean
#     distillation dirs, the noisy ASR dirs and the character token list
#   2 teacher: a tiny random teacher (skipped when --teacher_path is given)
#   3 distillation (espnet2.bin.robust_distill_train) and the initial ("before") student
#   4 noise invariance: clean vs noisy cosine similarity of student features, before/after
#   5 downstream ASR training with each student as a frozen front-end
#   6 decoding, WER and CER scoring
#   7 RESULTS.md
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

stage=1
stop_stage=7
smoke=false
teacher_kind=tiny
teacher_path=
distill_config=
asr_config=
grad_rule=
expdir=         # default: exp (exp_smoke with --smoke true)
nj=2
help_message="Usage: $0 [--stage N] [--stop_stage N] [--smoke true|false] [--teacher_kind tiny|hf]
          [--teacher_path PATH] [--distill_config YAML] [--asr_config YAML] [--grad_rule NAME]
          [--expdir DIR] [--nj N]"
while [ $# -gt 0 ]; do
    case "$1" in --help|-h) echo "${help_message}"; exit 0 ;; esac
    [ $# -ge 2 ] || { log "Error: option '$1' needs a value"; echo "${help_message}" >&2; exit 2; }
    case "$1" in
        --stage) stage=$2 ;;
        --stop_stage) stop_stage=$2 ;;
        --smoke) case "$2" in true|false) smoke=$2 ;; *) log "Error: --smoke must be true or false"; exit 2 ;; esac ;;
        --teacher_kind) teacher_kind=$2 ;;
        --teacher_path) teacher_path=$2 ;;
        --distill_config) distill_config=$2 ;;
        --asr_config) asr_config=$2 ;;
        --grad_rule) grad_rule=$2 ;;
        --expdir) expdir=$2 ;;
        --nj) nj=$2 ;;
        *) log "Error: unknown option '$1'"; echo "${help_message}" >&2; exit 2 ;;
    esac
    shift 2
done

cd "$(dirname "$0")"
main_root=$(cd ../../.. && pwd)
if [ ! -x "${main_root}/tools/venv/bin/python" ]; then
    log "tools/venv is missing: running tools/setup.sh first"
    "${main_root}/tools/setup.sh"
fi
. ./path.sh

test_sets="et05_simu_isolated_1ch_track et05_real_isolated_1ch_track"
wer_sets=${test_sets}
systems="before after"
if "${smoke}"; then
    data_opts=(--size smoke)
    : "${distill_config:=conf/tuning/train_distill_smoke.yaml}"
    : "${asr_config:=conf/tuning/train_asr_student_frontend_smoke.yaml}"
    suffix=_smoke
    # one ASR system and one test set: the smoke run checks the code path, not the numbers
    systems=after
    wer_sets=et05_simu_isolated_1ch_track
else
    data_opts=(--num_train 300 --num_dev 40 --num_test 80)
    : "${distill_config:=conf/train_distill.yaml}"
    : "${asr_config:=conf/train_asr.yaml}"
    suffix=
fi
datadir=data${suffix}
[ -n "${expdir}" ] || expdir=exp${suffix}
corpus_dir=$(pwd)/downloads${suffix}/mini_noisy
[ -n "${teacher_path}" ] || teacher_path=${expdir}/teacher/teacher.pth
distill_dir=${expdir}/distill
test_set=et05_simu_isolated_1ch_track   # has sample-aligned clean references
distill_opts=(--model_conf "teacher_kind=${teacher_kind}" --model_conf "teacher_path=${teacher_path}")
[ -z "${grad_rule}" ] || distill_opts+=(--grad_rule "${grad_rule}")

student_checkpoint() {  # the student checkpoint of a system
    case "$1" in
        before) echo "${expdir}/distill_init/init.pth" ;;
        after) echo "${distill_dir}/valid.loss.best.pth" ;;
    esac
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    if [ -f "${datadir}/token_list/char/tokens.txt" ]; then
        log "Stage 1: ${datadir} is complete, skipping"
    else
        log "Stage 1: synthesising the mini corpus into ${corpus_dir} and data dirs into ${datadir}"
        abs_datadir=$(pwd)/${datadir}
        (cd ../asr_with_enhancement && ./local/data.sh --corpus_dir "${corpus_dir}" \
            --output_dir "${abs_datadir}" --nj "${nj}" "${data_opts[@]}")
        python3 local/prepare_dirs.py clean --src "${datadir}/tr05_multi_noisy" --dst "${datadir}/distill_train"
        python3 local/prepare_dirs.py clean --src "${datadir}/dt05_simu_isolated_1ch_track" --dst "${datadir}/distill_valid"
        python3 local/prepare_dirs.py asr --src "${datadir}/tr05_multi_noisy" --dst "${datadir}/asr_train"
        python3 local/prepare_dirs.py asr --src "${datadir}/dt05_multi_isolated_1ch_track" --dst "${datadir}/asr_valid"
        for x in ${test_sets}; do
            python3 local/prepare_dirs.py asr --src "${datadir}/${x}" --dst "${datadir}/asr_${x}"
        done
        python3 local/prepare_dirs.py tokens --text "${datadir}/asr_train/text" --out "${datadir}/token_list/char/tokens.txt"
    fi
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    if [ "${teacher_kind}" != tiny ] || [ -f "${teacher_path}" ]; then
        log "Stage 2: using the ${teacher_kind} teacher ${teacher_path}"
    else
        log "Stage 2: writing a tiny random teacher to ${teacher_path}"
        python3 local/make_tiny_teacher.py --out "${teacher_path}" --seed 0
    fi
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    if [ -f "${distill_dir}/valid.loss.best.pth" ]; then
        log "Stage 3: ${distill_dir} is complete, skipping"
    else
        log "Stage 3: distillation ${distill_config} (teacher ${teacher_path}) -> ${distill_dir}"
        python3 -m espnet2.bin.robust_distill_train \
            --config "${distill_config}" "${distill_opts[@]}" \
            --ngpu 0 --seed 0 --resume true --use_matplotlib false \
            --train_data_path_and_name_and_type "${datadir}/distill_train/wav.scp,speech,sound" \
            --train_shape_file "${datadir}/distill_train/speech_shape" --fold_length 160000 \
            --valid_data_path_and_name_and_type "${datadir}/distill_valid/wav.scp,speech,sound" \
            --valid_shape_file "${datadir}/distill_valid/speech_shape" \
            --output_dir "${distill_dir}"
    fi
    log "Stage 3: the initial (before distillation) student -> $(student_checkpoint before)"
    python3 local/save_initial_student.py --config "${distill_config}" --teacher_kind "${teacher_kind}" \
        --teacher_path "${teacher_path}" --seed 0 --out "$(student_checkpoint before)"
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: noise invariance on ${datadir}/${test_set} -> ${expdir}/noise_invariance.{json,md}"
    python3 local/noise_invariance.py --distill_config "${distill_dir}/config.yaml" \
        --system "before=$(student_checkpoint before)" --system "after=$(student_checkpoint after)" \
        --data_dir "${datadir}/${test_set}" \
        --out "${expdir}/noise_invariance.json" --out_md "${expdir}/noise_invariance.md"
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    for system in ${systems}; do
        asr_dir=${expdir}/asr_${system}
        if [ -f "${asr_dir}/valid.acc.best.pth" ]; then
            log "Stage 5: ${asr_dir} is complete, skipping"
            continue
        fi
        log "Stage 5: ASR with the ${system} student as front-end (${asr_config}) -> ${asr_dir}"
        python3 local/asr_train.py --config "${asr_config}" \
            --frontend_conf "distill_config=${distill_dir}/config.yaml" \
            --frontend_conf "distill_checkpoint=$(student_checkpoint "${system}")" \
            --token_type char --token_list "${datadir}/token_list/char/tokens.txt" \
            --use_preprocessor true --cleaner none --g2p none --non_linguistic_symbols none \
            --ngpu 0 --seed 0 --resume true --use_matplotlib false \
            --train_data_path_and_name_and_type "${datadir}/asr_train/wav.scp,speech,sound" \
            --train_data_path_and_name_and_type "${datadir}/asr_train/text,text,text" \
            --train_shape_file "${datadir}/asr_train/speech_shape" \
            --train_shape_file "${datadir}/asr_train/text_shape.char" \
            --fold_length 160000 --fold_length 300 \
            --valid_data_path_and_name_and_type "${datadir}/asr_valid/wav.scp,speech,sound" \
            --valid_data_path_and_name_and_type "${datadir}/asr_valid/text,text,text" \
            --valid_shape_file "${datadir}/asr_valid/speech_shape" \
            --valid_shape_file "${datadir}/asr_valid/text_shape.char" \
            --output_dir "${asr_dir}"
    done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    for system in ${systems}; do
        asr_dir=${expdir}/asr_${system}
        for x in ${wer_sets}; do
            decode_dir=${asr_dir}/decode_${x}
            if [ -f "${decode_dir}/1best_recog/text" ]; then
                log "Stage 6: ${decode_dir} is decoded, skipping the decoding"
            else
                log "Stage 6: decoding ${datadir}/asr_${x} with ${asr_dir} -> ${decode_dir}"
                rm -rf "${decode_dir}.tmp"
                python3 local/asr_inference.py --ngpu 0 --batch_size 1 --config conf/decode_asr.yaml \
                    --data_path_and_name_and_type "${datadir}/asr_${x}/wav.scp,speech,sound" \
                    --key_file "${datadir}/asr_${x}/wav.scp" \
                    --asr_train_config "${asr_dir}/config.yaml" \
                    --asr_model_file "${asr_dir}/valid.acc.best.pth" \
                    --output_dir "${decode_dir}.tmp"
                rm -rf "${decode_dir}"
                mv "${decode_dir}.tmp" "${decode_dir}"
            fi
            for unit in word char; do  # WER and CER (score_wer/, score_cer/)
                score_dir=${decode_dir}/score_$([ "${unit}" = word ] && echo wer || echo cer)
                [ -f "${score_dir}/result.txt" ] && continue
                rm -rf "${score_dir}.tmp"
                python3 pyscripts/scoring/score_asr.py --ref "${datadir}/asr_${x}/text" \
                    --hyp "${decode_dir}/1best_recog/text" --token-type "${unit}" \
                    --out-dir "${score_dir}.tmp"
                rm -rf "${score_dir}"
                mv "${score_dir}.tmp" "${score_dir}"
            done
        done
    done
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: ${expdir}/RESULTS.md"
    python3 local/write_results.py --expdir "${expdir}" --systems ${systems} --test_sets ${wer_sets} \
        --distill_config "${distill_config}" --teacher "${teacher_kind}:${teacher_path}" --out "${expdir}/RESULTS.md"
    cat "${expdir}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
