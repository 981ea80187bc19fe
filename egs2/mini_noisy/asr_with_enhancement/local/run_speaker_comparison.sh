#!/usr/bin/env bash
# Adi et al. 2019 on the mini recipe: baseline vs multi-task (MT) vs adversarial (AL) speaker branch
# forked at IN / MID / OUT of the ASR encoder, compared by WER (with bootstrap intervals) and by
# per-layer speaker probing (the paper's Figure 2).
#
# Design (the paper's staged procedure, phase 1 shared): phase 1 is the recipe's trained joint system
# (./run.sh, grad_rule gr by default, --base_exp). Every system then fine-tunes it for --epochs epochs
# with the same data, rule, seed and optimiser (Adam, constant learning rate --lr; the warm-up of the
# from-scratch schedule would undo phase 1): the baseline without a branch; MT / AL with a fresh branch
# trained alone for the first --branch_only fraction of the fine-tuning (phase 2), then jointly
# (phase 3; AL's lambda_p ramps over phase 3). Each system is decoded (stage 12) and scored (stage 14)
# on the simulated test set (0 and 5 dB); its encoder is then probed on training speakers' utterances.
#
#   local/run_speaker_comparison.sh                    # after ./run.sh; writes exp_speaker/{compare,probe}
#   local/run_speaker_comparison.sh --epochs 1 --systems "baseline al_mid"
#   local/run_speaker_comparison.sh --smoke true       # after ./run.sh --smoke true (tests: wiring only)
#
# Outputs (exp_speaker_smoke/ with --smoke true): exp_speaker/enh_asr_<system>/ (training, decoding, scores), exp_speaker/probe/<system>/,
# exp_speaker/compare/compare_rules.{md,png} (WER per system and SNR), exp_speaker/probe/all/probe.{md,png}.
# A re-run skips what is complete (enh_asr.sh's markers; a probe whose probe.json is newer than its model).
set -e
set -u
set -o pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

smoke=false         # true: on ./run.sh --smoke true's outputs (exp_smoke, dump_smoke)
base_exp=           # phase 1: a trained system of ./run.sh (default: its gr system)
grad_rule=gr        # the rule of the fine-tuning (the base system's)
systems="baseline mt_in mt_mid mt_out al_in al_mid al_out"
epochs=2            # fine-tuning epochs per system
lr=0.0005           # constant Adam learning rate of the fine-tuning
branch_only=0.25    # fraction of the fine-tuning in which the branch trains alone
parallel=2          # systems trained at once (one thread each)
probe_utts=40       # probe: utterances per training speaker (split into probe train / held-out)
probe_epochs=10     # probe training epochs (paper: 10)
probe_num_threads=2 # OMP_NUM_THREADS of the probes (they run one at a time)
python=python3

. utils/parse_options.sh
if [ $# -ne 0 ]; then
    log "Error: no positional arguments expected, got: $*"
    exit 2
fi
. ./path.sh

if "${smoke}"; then
    run_exp=exp_smoke dumpdir=dump_smoke expdir=exp_speaker_smoke config_name=train_enh_asr_smoke
else
    run_exp=exp dumpdir=dump expdir=exp_speaker config_name=train_enh_asr_small_cpu
fi
[ -n "${base_exp}" ] || base_exp=${run_exp}/enh_asr_${config_name}_${grad_rule}

model=valid.acc.ave.pth
[ -f "${base_exp}/${model}" ] || { log "Error: ${base_exp}/${model} is missing: run ./run.sh first (or give --base_exp)"; exit 1; }
for sys in ${systems}; do
    case "${sys}" in
        baseline|mt_in|mt_mid|mt_out|al_in|al_mid|al_out) ;;
        *) log "Error: unknown system '${sys}' (baseline, or mt_/al_ + in/mid/out)"; exit 2 ;;
    esac
done
[[ "${parallel}" =~ ^[1-9][0-9]*$ ]] || { log "Error: --parallel must be a positive integer, got '${parallel}'"; exit 2; }

stats_dir=${run_exp}/enh_asr_stats_raw_en_char # ./run.sh's stage 10 (shape files of the same data)
[ -f "${stats_dir}/.done" ] || { log "Error: ${stats_dir}/.done is missing: run ./run.sh first"; exit 1; }
train_dir=${dumpdir}/raw/tr05_multi_noisy
test_set=et05_simu_isolated_1ch_track

# One system: fine-tune, decode, score (explicit returns: errexit does not apply inside "if run_system").
run_system() {
    local sys=$1 args task=enh_s2t_gr
    args="--init_param ${base_exp}/${model} --max_epoch ${epochs} --scheduler none --optim_conf lr=${lr}"
    if [ "${sys}" != baseline ]; then
        task=enh_s2t_gr_speaker
        args+=" --speaker_branch_conf mode=${sys%_*} --speaker_branch_conf fork=${sys#*_}"
        args+=" --speaker_branch_conf total_steps=auto --speaker_branch_conf branch_only_from=0"
        args+=" --speaker_branch_conf joint_from=${branch_only}"
    fi
    for stages in "11 12" "14 14"; do
        set -- ${stages}
        ./run.sh --smoke "${smoke}" --grad_rules "${grad_rule}" --enh_asr_task "${task}" --train_num_threads 1 \
            --expdir "${expdir}" --enh_asr_stats_dir "${stats_dir}" --enh_asr_exp "${expdir}/enh_asr_${sys}" \
            --enh_asr_args "${args}" --test_sets "${test_set}" --stage "$1" --stop_stage "$2" || return 1
    done
}

mkdir -p "${expdir}/logs"
log "Fine-tuning ${base_exp}/${model} for ${epochs} epochs: ${systems} (${parallel} at once; logs: ${expdir}/logs/)"
for sys in ${systems}; do
    while [ "$(jobs -rp | wc -l)" -ge "${parallel}" ]; do wait -n || true; done
    log "System ${sys}: start (log: ${expdir}/logs/${sys}.log)"
    rm -f "${expdir}/logs/${sys}.ok"
    {
        if run_system "${sys}" > "${expdir}/logs/${sys}.log" 2>&1; then
            touch "${expdir}/logs/${sys}.ok"
            log "System ${sys}: done: WER $(grep -h Sum/Avg "${expdir}/enh_asr_${sys}"/decode_*/"${test_set}"/score_wer/result.txt | tr -s ' ')"
        else
            log "System ${sys}: FAILED, see ${expdir}/logs/${sys}.log"
        fi
    } &
done
wait
failed=""
for sys in ${systems}; do [ -e "${expdir}/logs/${sys}.ok" ] || failed+=" ${sys}"; done
[ -z "${failed}" ] || { log "Error: failed:${failed} (see ${expdir}/logs/<system>.log)"; exit 1; }

log "WER per system and SNR: ${expdir}/compare/compare_rules.md"
exps=""
for sys in ${systems}; do exps+=" ${expdir}/enh_asr_${sys}"; done
inference_tag=$(basename "$(ls -d "${expdir}/enh_asr_${systems%% *}"/decode_*/ | head -n 1)")
# shellcheck disable=SC2086
${python} local/compare_rules.py --data_dir "${dumpdir}/raw/${test_set}" --out_dir "${expdir}/compare" \
    --inference_tag "${inference_tag}" --name_key speaker_branch_conf.mode,speaker_branch_conf.fork \
    --missing_name baseline --baseline baseline ${exps} > /dev/null

log "Probing the encoders: ${expdir}/probe/"
previous=""
for sys in ${systems}; do
    out=${expdir}/probe/${sys}
    if [ ! "${out}/probe.json" -nt "${expdir}/enh_asr_${sys}/${model}" ]; then  # missing, or older than the model
        OMP_NUM_THREADS=${probe_num_threads} ${python} -m espnet2.bin.speaker_probe --enh_s2t_task true \
            --train_config "${expdir}/enh_asr_${sys}/config.yaml" --model_file "${expdir}/enh_asr_${sys}/${model}" \
            --data_dir "${train_dir}" --layers all --epochs "${probe_epochs}" --max_utts_per_speaker "${probe_utts}" \
            --output_dir "${out}" --tag "${sys}" > "${expdir}/logs/probe_${sys}.log" 2>&1 \
            || { log "Error: probing ${sys} failed, see ${expdir}/logs/probe_${sys}.log"; exit 1; }
    fi
    previous+=" ${out}/probe.json"
done
# One table and plot with every system: the probe.json files, merged (no probe is retrained)
# shellcheck disable=SC2086
${python} -m espnet2.bin.speaker_probe --compare ${previous} --output_dir "${expdir}/probe/all" \
    > "${expdir}/logs/probe_all.log" 2>&1
cat "${expdir}/compare/compare_rules.md" "${expdir}/probe/all/probe.md"
