#!/usr/bin/env bash
# Gradient rules compared on the mini recipe over training seeds: WER with bootstrap 95% intervals
# (utterances and seeds resampled), per SNR, and the training time of each rule.
#
# Every system has the same data and budget; two starts:
#   --start trained (default; a short budget): every system starts from the same trained joint model
#       (--base_exp, default ./run.sh's sum system) and trains --epochs (default 1) more epochs with its
#       rule and seed (Adam, constant learning rate --lr; the warm-up of the from-scratch schedule would
#       undo the shared start). About 5 minutes per system on 2 cores (2 systems at once, 1 thread each).
#   --start scratch (the recipe's full budget): every system trains like ./run.sh's, from its seed's
#       initialisation with the config's schedule and max_epoch (11; or --epochs). About 35 minutes per
#       system on 2 cores, i.e. about 10 hours for the default 11 systems x 3 seeds at 2 at once.
# Systems:
#   asr_only      grad_rule fixed with w_se 0: the same joint model, the SE loss contributes no gradient
#   fixed_<w>     grad_rule fixed with w_se <w> (e.g. fixed_0.5)
#   gr_vector     Gradient Remedy on the whole SE vector (--gr_granularity vector), exact every step
#   gr_vector_lag<N>  the same with lagged weights: exact every N-th step, one backward in between
#                 (--gr_weights_every N, e.g. gr_vector_lag4)
#   <rule>        any other rule of espnet2/train/gradient_rules.py with its default options
# Each system is decoded (stage 12) and scored (stage 14) on the simulated test set (0 and 5 dB).
#
#   local/run_rule_comparison.sh                         # after ./run.sh; writes exp_rules/compare/
#   local/run_rule_comparison.sh --start scratch         # after ./run.sh stage 10; writes exp_rules_scratch/
#   local/run_rule_comparison.sh --seeds "1" --systems "sum gr"
#   local/run_rule_comparison.sh --smoke true            # after ./run.sh --smoke true (tests: wiring only)
#   local/run_rule_comparison.sh --summarise true        # compare what has finished so far, train nothing
#   local/run_rule_comparison.sh --start scratch --train_config conf/tuning/<config>.yaml --expdir exp_rules_<name>
#
# Outputs (in --expdir: default exp_rules/, exp_rules_scratch/ with --start scratch, <that>_smoke/ with --smoke true):
# seed<k>/enh_asr_<system>/ (training, decoding, scores), logs/, compare/compare_rules.{md,png}.
# Resuming: each system writes logs/<system>_seed<k>.ok last (after scoring), holding its training
# options and the config's checksum; a re-run skips every system whose marker matches and redoes the
# others (enh_asr.sh's stage markers resume an interrupted training from its last epoch). The trained
# start is named by its path, not its content: after retraining it, remove the output dir. Systems run
# seed-major, so an interrupted comparison has whole seeds of every system; --summarise true compares
# the seeds that every listed system has finished (a comparison longer than a working session is
# summarised, and continued in the next).
set -e
set -u
set -o pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

smoke=false         # true: on ./run.sh --smoke true's outputs (exp_smoke, dump_smoke)
summarise=false     # true: train nothing, compare the seeds every system has finished
expdir=             # output dir (default: exp_rules, exp_rules_scratch with --start scratch; + _smoke)
train_config=       # training config (default: ./run.sh's, conf/train_enh_asr.yaml; smoke: its smoke config)
start=trained       # trained: from --base_exp; scratch: from each seed's initialisation
base_exp=           # the shared trained start: a system of ./run.sh (default: its sum system)
systems="asr_only sum gr pcgrad gradvac cagrad imtl_g mgda nash_mtl aligned_mtl fixed_0.5"
seeds="1 2 3"       # training seeds (data order, dropout, SpecAugment; and the initialisation from scratch)
epochs=             # training epochs per system (default: 1 from a trained start; the config's from scratch)
lr=0.0005           # constant Adam learning rate from a trained start
parallel=2          # systems trained at once (one thread each)
python=python3

. utils/parse_options.sh
if [ $# -ne 0 ]; then
    log "Error: no positional arguments expected, got: $*"
    exit 2
fi
. ./path.sh

if "${smoke}"; then
    run_exp=exp_smoke dumpdir=dump_smoke suffix=_smoke
    [ -n "${train_config}" ] || train_config=conf/tuning/train_enh_asr_smoke.yaml
else
    run_exp=exp dumpdir=dump suffix=
    [ -n "${train_config}" ] || train_config=conf/train_enh_asr.yaml
fi
[ -f "${train_config}" ] || { log "Error: --train_config ${train_config}: no such file"; exit 2; }
config_name=$(basename "$(readlink -f "${train_config}")" .yaml) # ./run.sh's system names use it
[ -z "${epochs}" ] || [[ "${epochs}" =~ ^[1-9][0-9]*$ ]] \
    || { log "Error: --epochs must be a positive integer, got '${epochs}'"; exit 2; }
model=valid.acc.ave.pth
case "${start}" in
    trained)
        [ -n "${expdir}" ] || expdir=exp_rules${suffix}
        [ -n "${base_exp}" ] || base_exp=${run_exp}/enh_asr_${config_name}_sum
        [ -f "${base_exp}/${model}" ] \
            || { log "Error: ${base_exp}/${model} is missing: run ./run.sh first (or give --base_exp)"; exit 1; }
        common_args="--init_param ${base_exp}/${model} --max_epoch ${epochs:-1} --scheduler none --optim_conf lr=${lr}"
        origin="${base_exp}/${model}, ${epochs:-1} epoch(s) each" ;;
    scratch)
        [ -n "${expdir}" ] || expdir=exp_rules_scratch${suffix}
        [ -z "${base_exp}" ] || { log "Error: --base_exp is for --start trained"; exit 2; }
        common_args=${epochs:+--max_epoch ${epochs}}
        origin="scratch, ${epochs:-max_epoch of the config} epochs each" ;;
    *) log "Error: --start must be trained or scratch, got '${start}'"; exit 2 ;;
esac
known_rules=$(${python} -c "from espnet2.train.gradient_rules import RULES; print(' '.join(RULES))")
for sys in ${systems}; do
    case "${sys}" in
        asr_only) ;;
        fixed_*) [[ "${sys#fixed_}" =~ ^[0-9]+(\.[0-9]+)?$ ]] \
            || { log "Error: system '${sys}': the weight after fixed_ must be a number >= 0, e.g. fixed_0.5"; exit 2; } ;;
        gr_vector) ;;
        gr_vector_lag*) [[ "${sys#gr_vector_lag}" =~ ^[1-9][0-9]*$ ]] \
            || { log "Error: system '${sys}': the step count after gr_vector_lag must be an integer >= 1, e.g. gr_vector_lag4"; exit 2; } ;;
        *) [[ " ${known_rules} " == *" ${sys} "* ]] \
            || { log "Error: unknown system '${sys}' (asr_only, fixed_<w_se>, gr_vector, gr_vector_lag<N>, or a rule: ${known_rules})"; exit 2; } ;;
    esac
done
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || { log "Error: --seeds must be non-negative integers, got '${seed}'"; exit 2; }
done
[[ "${parallel}" =~ ^[1-9][0-9]*$ ]] || { log "Error: --parallel must be a positive integer, got '${parallel}'"; exit 2; }

stats_dir=${run_exp}/enh_asr_stats_raw_en_char # ./run.sh's stage 10 (shape files of the same data)
[ -f "${stats_dir}/.done" ] || { log "Error: ${stats_dir}/.done is missing: run ./run.sh first"; exit 1; }
test_set=et05_simu_isolated_1ch_track

# The training options of one system and seed: "<grad_rule> <enh_asr_args>".
system_options() {
    local sys=$1 seed=$2 rule=$1 args="${common_args} --seed $2"
    case "${sys}" in
        asr_only) rule=fixed; args+=" --grad_rule_conf w_se=0" ;;
        fixed_*) rule=fixed; args+=" --grad_rule_conf w_se=${sys#fixed_}" ;;
        gr_vector) rule=gr; args+=" --gr_granularity vector" ;;
        gr_vector_lag*) rule=gr; args+=" --gr_granularity vector --gr_weights_every ${sys#gr_vector_lag}" ;;
    esac
    echo "${rule} ${args}"
}

# The content of a system's .ok marker: its options and the checksum of the training config, so that
# a system finished with other options or another config does not count as finished.
marker_content() {
    echo "$(system_options "$1" "$2") config_sha1=$(sha1sum < "${train_config}" | cut -d' ' -f1)"
}

# True when the system has finished with the current options and config.
finished() {
    local marker=${expdir}/logs/$1_seed$2.ok
    [ -f "${marker}" ] && [ "$(cat "${marker}")" = "$(marker_content "$1" "$2")" ]
}

# One system and seed: train, decode, score (explicit returns: errexit does not apply inside "if run_system").
run_system() {
    local sys=$1 seed=$2 options rule args
    options=$(system_options "${sys}" "${seed}")
    rule=${options%% *} args=${options#* }
    for stages in "11 12" "14 14"; do
        set -- ${stages}
        ./run.sh --smoke "${smoke}" --grad_rules "${rule}" --train_num_threads 1 --enh_asr_config "${train_config}" \
            --expdir "${expdir}/seed${seed}" --enh_asr_stats_dir "${stats_dir}" \
            --enh_asr_exp "${expdir}/seed${seed}/enh_asr_${sys}" \
            --enh_asr_args "${args}" --test_sets "${test_set}" --stage "$1" --stop_stage "$2" || return 1
    done
}

mkdir -p "${expdir}/logs"
n_sys=$(echo ${systems} | wc -w) n_seeds=$(echo ${seeds} | wc -w)
if ! "${summarise}"; then
    log "Training $((n_sys * n_seeds)) systems from ${origin}: ${systems} x seeds ${seeds}"
    log "(${parallel} at once; logs: ${expdir}/logs/)"
    for seed in ${seeds}; do  # seed-major: an interrupted run has whole seeds of every rule
        for sys in ${systems}; do
            name=${sys}_seed${seed}
            if finished "${sys}" "${seed}"; then
                log "System ${name}: finished before (${expdir}/logs/${name}.ok), skipped"
                continue
            fi
            while [ "$(jobs -rp | wc -l)" -ge "${parallel}" ]; do wait -n || true; done
            log "System ${name}: start (log: ${expdir}/logs/${name}.log)"
            rm -f "${expdir}/logs/${name}.ok"
            {
                if run_system "${sys}" "${seed}" > "${expdir}/logs/${name}.log" 2>&1; then
                    marker_content "${sys}" "${seed}" > "${expdir}/logs/${name}.ok"
                    log "System ${name}: done: WER $(grep -h Sum/Avg "${expdir}/seed${seed}/enh_asr_${sys}"/decode_*/"${test_set}"/score_wer/result.txt | tr -s ' ')"
                else
                    log "System ${name}: FAILED, see ${expdir}/logs/${name}.log"
                fi
            } &
        done
    done
    wait
fi
missing="" done_seeds=""
for seed in ${seeds}; do
    complete=true
    for sys in ${systems}; do
        finished "${sys}" "${seed}" || { missing+=" ${sys}_seed${seed}"; complete=false; }
    done
    ! "${complete}" || done_seeds+=" ${seed}"
done
if [ -n "${missing}" ]; then
    if ! "${summarise}"; then
        log "Error: failed:${missing} (see ${expdir}/logs/<system>_seed<k>.log; a re-run redoes only these;"
        log "--summarise true compares the seeds every system has finished)"
        exit 1
    fi
    [ -n "${done_seeds}" ] || { log "Error: no seed has finished for every system (unfinished:${missing})"; exit 1; }
    log "Summarising the finished seeds${done_seeds} (unfinished:${missing})"
fi
exps=""
for seed in ${done_seeds}; do
    for sys in ${systems}; do
        exps+=" ${expdir}/seed${seed}/enh_asr_${sys}"
    done
done

log "WER per system and SNR: ${expdir}/compare/compare_rules.md"
first_seed=${done_seeds# } first_seed=${first_seed%% *}
inference_tag=$(basename "$(ls -d "${expdir}/seed${first_seed}/enh_asr_${systems%% *}"/decode_*/ | head -n 1)")
baseline=none
[[ " ${systems} " != *" sum "* ]] || baseline=sum
# shellcheck disable=SC2086
${python} local/compare_rules.py --data_dir "${dumpdir}/raw/${test_set}" --out_dir "${expdir}/compare" \
    --inference_tag "${inference_tag}" --name_key dir --baseline "${baseline}" ${exps}
