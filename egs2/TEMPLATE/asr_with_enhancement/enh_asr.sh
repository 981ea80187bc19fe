#!/usr/bin/env bash
# Joint speech enhancement (SE) + ASR recipe stages with a two-task gradient rule (Gradient Remedy, MTL sum,
# PCGrad, ...). ESPnet's egs2/TEMPLATE/enh_asr1/enh_asr.sh interface (options and stage numbers), thin stages
# over ESPnet's and this template's Python programs.
#
# Every stage logs what it reads and writes. Work whose outputs are complete is skipped: a stage writes its
# outputs into a temporary place, renames them, and writes last a marker ".done.<what>" holding a signature
# of its inputs and options; a later run skips that work only when the marker holds the same signature, so a
# changed config or option redoes it and an interrupted stage never leaves an output a later stage trusts.
# Training resumes from ESPnet's checkpoint.pth (--resume true).

set -e
set -u
set -o pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() {
    local a b
    a=$1
    for b in "$@"; do
        if [ "${b}" -le "${a}" ]; then a="${b}"; fi
    done
    echo "${a}"
}
SECONDS=0

# General configuration
stage=1              # Processes starts from the specified stage.
stop_stage=10000     # Processes is stopped at the specified stage.
skip_data_prep=false # Skip data preparation stages (1-5).
skip_train=false     # Skip training stages (6-11).
skip_eval=false      # Skip decoding, enhancement and evaluation stages (12-16).
ngpu=1               # The number of gpus ("0" uses cpu, otherwise use gpu).
num_nodes=1          # The number of nodes.
nj=32                # The number of parallel jobs.
inference_nj=32      # The number of parallel jobs in decoding and enhancement.
gpu_inference=false  # Whether to perform gpu decoding.
dumpdir=dump         # Directory to dump features.
expdir=exp           # Directory to save experiments.
python=python3       # Specify python to execute espnet commands.

# Data preparation related
local_data_opts= # The options given to local/data.sh.

# Speed perturbation related
speed_perturb_factors= # perturbation factors, e.g. "0.9 1.0 1.1" (separated by space).

# Feature extraction related
feats_type=raw       # Feature type (only raw: the model reads waveforms).
audio_format=flac    # Audio format: wav, flac (only in feats_type=raw).
fs=16k               # Sampling rate.
ref_channel=0        # The channel kept from multi-channel audio.
min_wav_duration=0.1 # Minimum duration in second.
max_wav_duration=20  # Maximum duration in second.

# Tokenization related
token_type=bpe      # Tokenization type (bpe, char or word).
nbpe=30             # The number of BPE vocabulary.
bpemode=unigram     # Mode of BPE (unigram or bpe).
oov="<unk>"         # Out of vocabulary symbol.
blank="<blank>"     # CTC blank symbol.
sos_eos="<sos/eos>" # sos and eos symbol.
bpe_input_sentence_size=100000000 # Size of input sentence for BPE.
bpe_nlsyms=         # non-linguistic symbols list, separated by a comma, for BPE.
bpe_char_cover=1.0  # character coverage when modeling BPE.
nlsyms_txt=none     # Non-linguistic symbol list if existing.
cleaner=none        # Text cleaner.
lang=noinfo         # The language type of corpus.

# Language model related
use_lm=true       # Use language model for decoding.
lm_tag=           # Suffix to the result dir for language model training.
lm_exp=           # Specify the directory path for LM experiment.
lm_stats_dir=     # Specify the directory path for LM statistics.
lm_config=        # Config for language model training.
lm_args=          # Arguments for language model training, e.g., "--max_epoch 10".
lm_fold_length=150 # fold_length for LM training.

# Joint SE + ASR model related
enh_asr_tag=       # Suffix to the result dir for joint training.
enh_asr_exp=       # Specify the directory path for the joint experiment.
enh_asr_stats_dir= # Specify the directory path for the statistics.
enh_asr_config=    # Config for joint training.
enh_asr_task=enh_s2t_gr # Training task: enh_s2t_gr, or enh_s2t_gr_speaker (adds the config's speaker_branch_conf;
                        # speaker labels from the training set's utt2spk, num_speakers from their count).
enh_asr_args=      # Arguments for joint training, e.g., "--max_epoch 10".
grad_rule=         # Two-task gradient rule (sum, gr, gr_project_only, gr_rescale_only, pcgrad, ...: the trainer's);
                   # empty: the config's (or the trainer's default). Shorthand for --enh_asr_args "--grad_rule X".
feats_normalize=   # Empty: the config's normalize; global_mvn: use the collected feats_stats.npz.
train_num_threads= # OMP_NUM_THREADS of the training process(es); empty: path.sh's (1).
enh_asr_speech_fold_length=800 # fold_length for speech data (x100 samples).
enh_asr_text_fold_length=150   # fold_length for text data.

# Decoding and enhancement related
inference_tag=    # Suffix to the decoding dir; default from the configs and the model.
inference_config= # Config for decoding.
inference_args=   # Arguments for decoding, e.g., "--beam_size 4".
inference_lm=valid.loss.ave.pth # Language model path for decoding.
inference_model=valid.acc.ave.pth # Joint model path (in the experiment dir) for decoding and enhancement.
enh_inference_args= # Arguments for enh_inference (stage 13), e.g., "--segment_size 4".

# Scoring related
scoring_protocol="STOI ESTOI SI_SNR SDR" # SE metrics in RESULTS.md (PESQ_WB/PESQ_NB are added when pesq imports).
score_groups=utt2condition # Groupings "[<name>=]<file>[:<field>]" of a test set's utterances, each scored on
                           # its own (WER per SNR, per noise type): <file> in the test data dir holds
                           # "<utt-id> <value>"; :<field> keeps the field-th _-separated part of the value.

# [Task dependent] Set the datadir name created by local/data.sh
train_set=     # Name of training set.
valid_set=     # Name of validation set used for monitoring/tuning network training.
test_sets=     # Names of test sets. Multiple items (e.g., both dev and eval sets) can be specified.
bpe_train_text= # Text file path of bpe training set (default: the training set's text_spk1).
lm_train_text=  # Text file path of language model training set.
lm_dev_text=    # Text file path of language model development set.
lm_test_text=   # Text file path of language model evaluation set.

help_message=$(cat << EOF
Usage: $0 --train_set "<train_set_name>" --valid_set "<valid_set_name>" --test_sets "<test_set_names>"

Stages:
    1: data preparation (local/data.sh)       9: (n-gram LM: not provided)
    2: speed perturbation (optional)         10: collect shape statistics
    3: format wav.scp and spk1.scp (to --fs) 11: joint SE+ASR training (GradientRemedyTrainer)
    4: filter by duration, fix data dirs     12: decoding (asr_inference --enh_s2t_task true)
    5: token list (bpe, char or word)        13: enhancement (enh_inference --enh_s2t_task true)
    6: LM collect stats                      14: ASR scoring (WER/CER/TER)
    7: LM training                           15: SE scoring (noisy input and enhanced output vs spk1.scp)
    8: LM perplexity                         16: RESULTS.md

Options:
    # General configuration
    --stage          # Processes starts from the specified stage (default="${stage}").
    --stop_stage     # Processes is stopped at the specified stage (default="${stop_stage}").
    --skip_data_prep # Skip data preparation stages (default="${skip_data_prep}").
    --skip_train     # Skip training stages (default="${skip_train}").
    --skip_eval      # Skip decoding and evaluation stages (default="${skip_eval}").
    --ngpu           # The number of gpus ("0" uses cpu, otherwise use gpu, default="${ngpu}").
    --num_nodes      # The number of nodes (default="${num_nodes}").
    --nj             # The number of parallel jobs (default="${nj}").
    --inference_nj   # The number of parallel jobs in decoding (default="${inference_nj}").
    --gpu_inference  # Whether to perform gpu decoding (default="${gpu_inference}").
    --dumpdir        # Directory to dump features (default="${dumpdir}").
    --expdir         # Directory to save experiments (default="${expdir}").
    --python         # Specify python to execute espnet commands (default="${python}").

    # Data preparation related
    --local_data_opts # The options given to local/data.sh (default="${local_data_opts}").

    # Speed perturbation related
    --speed_perturb_factors # speed perturbation factors, e.g. "0.9 1.0 1.1" (default="${speed_perturb_factors}").

    # Feature extraction related
    --feats_type       # Feature type (only raw, default="${feats_type}").
    --audio_format     # Audio format: wav, flac (default="${audio_format}").
    --fs               # Sampling rate (default="${fs}").
    --ref_channel      # The channel kept from multi-channel audio (default="${ref_channel}").
    --min_wav_duration # Minimum duration in second (default="${min_wav_duration}").
    --max_wav_duration # Maximum duration in second (default="${max_wav_duration}").

    # Tokenization related
    --token_type              # Tokenization type (bpe, char or word, default="${token_type}").
    --nbpe                    # The number of BPE vocabulary (default="${nbpe}").
    --bpemode                 # Mode of BPE (unigram or bpe, default="${bpemode}").
    --oov                     # Out of vocabulary symbol (default="${oov}").
    --blank                   # CTC blank symbol (default="${blank}").
    --sos_eos                 # sos and eos symbol (default="${sos_eos}").
    --bpe_input_sentence_size # Size of input sentence for BPE (default="${bpe_input_sentence_size}").
    --bpe_nlsyms              # Non-linguistic symbol list for sentencepiece, separated by a comma (default="${bpe_nlsyms}").
    --bpe_char_cover          # Character coverage when modeling BPE (default="${bpe_char_cover}").
    --nlsyms_txt              # Non-linguistic symbol list file (default="${nlsyms_txt}").
    --cleaner                 # Text cleaner (default="${cleaner}").
    --lang                    # The language type of corpus (default="${lang}").

    # Language model related
    --use_lm         # Use language model for decoding (default="${use_lm}").
    --lm_tag         # Suffix to the result dir for language model training (default="${lm_tag}").
    --lm_exp         # Specify the directory path for LM experiment (default="${lm_exp}").
    --lm_stats_dir   # Specify the directory path for LM statistics (default="${lm_stats_dir}").
    --lm_config      # Config for language model training (default="${lm_config}").
    --lm_args        # Arguments for language model training (default="${lm_args}").
    --lm_fold_length # fold_length for LM training (default="${lm_fold_length}").

    # Joint SE + ASR model related
    --enh_asr_tag       # Suffix to the result dir for joint training (default="${enh_asr_tag}").
    --enh_asr_exp       # Specify the directory path for the joint experiment (default="${enh_asr_exp}").
    --enh_asr_stats_dir # Specify the directory path for the statistics (default="${enh_asr_stats_dir}").
    --enh_asr_config    # Config for joint training (default="${enh_asr_config}").
    --enh_asr_task      # enh_s2t_gr, or enh_s2t_gr_speaker: the speaker branch of the config's speaker_branch_conf,
                        # trained on labels made from the training set's utt2spk (default="${enh_asr_task}").
    --enh_asr_args      # Arguments for joint training, e.g., "--max_epoch 10" (default="${enh_asr_args}").
    --grad_rule         # Two-task gradient rule: sum, gr, gr_project_only, gr_rescale_only, pcgrad, ... (the trainer's)
                        # (default="${grad_rule}": the config's).
    --feats_normalize   # Empty (the config's) or global_mvn (default="${feats_normalize}").
    --train_num_threads # OMP_NUM_THREADS of the training process(es) (default="${train_num_threads}": path.sh's).
    --enh_asr_speech_fold_length # fold_length for speech data (x100 samples, default="${enh_asr_speech_fold_length}").
    --enh_asr_text_fold_length   # fold_length for text data (default="${enh_asr_text_fold_length}").

    # Decoding and enhancement related
    --inference_tag      # Suffix to the decoding dir (default="${inference_tag}").
    --inference_config   # Config for decoding (default="${inference_config}").
    --inference_args     # Arguments for decoding, e.g., "--beam_size 4" (default="${inference_args}").
    --inference_lm       # Language model path for decoding (default="${inference_lm}").
    --inference_model    # Joint model path for decoding and enhancement (default="${inference_model}").
    --enh_inference_args # Arguments for enhancement (default="${enh_inference_args}").

    # Scoring related
    --scoring_protocol # SE metrics to report (default="${scoring_protocol}").
    --score_groups     # Groupings "[<name>=]<file>[:<field>]" of a test set, scored separately
                       # (e.g. "noise=utt2condition:1 snr=utt2condition:2", default="${score_groups}").

    # [Task dependent] Set the datadir name created by local/data.sh
    --train_set      # Name of training set (required).
    --valid_set      # Name of validation set used for monitoring/tuning network training (required).
    --test_sets      # Names of test sets (required).
    --bpe_train_text # Text file path of bpe training set.
    --lm_train_text  # Text file path of language model training set.
    --lm_dev_text    # Text file path of language model development set.
    --lm_test_text   # Text file path of language model evaluation set.
EOF
)

log "$0 $*"
# Save command line args for logging (they will be lost after utils/parse_options.sh)
_cmdline=("$0" "$@")
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: No positional arguments are required, got: $*"
    log "${help_message}"
    exit 2
fi

. ./path.sh
. ./cmd.sh
run_args=$(${python} pyscripts/utils/print_args.py "${_cmdline[@]}")
_omp_threads=${OMP_NUM_THREADS:-1}

# ---------------------------------------------------------------------------------------------------------------
# Check the options
[ -z "${train_set}" ] && { log "Error: --train_set is required"; exit 2; }
[ -z "${valid_set}" ] && { log "Error: --valid_set is required"; exit 2; }
[ -z "${test_sets}" ] && { log "Error: --test_sets is required"; exit 2; }
[ -z "${enh_asr_config}" ] && { log "Error: --enh_asr_config is required"; exit 2; }
[ "${feats_type}" != raw ] && { log "Error: only --feats_type raw is supported, got '${feats_type}'"; exit 2; }
case "${token_type}" in bpe|char|word) ;; *) log "Error: --token_type must be bpe, char or word, got '${token_type}'"; exit 2;; esac
case "${audio_format}" in wav|flac) ;; *) log "Error: --audio_format must be wav or flac, got '${audio_format}'"; exit 2;; esac
case "${feats_normalize}" in ""|global_mvn) ;; *) log "Error: --feats_normalize must be empty or global_mvn"; exit 2;; esac
case "${enh_asr_task}" in
    enh_s2t_gr|enh_s2t_gr_speaker) ;;
    *) log "Error: --enh_asr_task must be enh_s2t_gr or enh_s2t_gr_speaker, got '${enh_asr_task}'"; exit 2 ;;
esac
if [ -n "${grad_rule}" ]; then
    # The trainer's registry is the list of rules (espnet2/train/gradient_rules.py)
    _rules=$(${python} -c "from espnet2.train.gradient_rules import RULES; print(' '.join(sorted(RULES)))")
    case " ${_rules} " in
        *" ${grad_rule} "*) ;;
        *) log "Error: unknown --grad_rule '${grad_rule}' (one of: ${_rules})"; exit 2 ;;
    esac
fi
[ -f "${enh_asr_config}" ] || { log "Error: --enh_asr_config ${enh_asr_config}: no such file"; exit 2; }
if [ -n "${inference_config}" ] && [ ! -f "${inference_config}" ]; then
    log "Error: --inference_config ${inference_config}: no such file"; exit 2
fi
if "${use_lm}" && [ -z "${lm_config}" ]; then
    log "Error: --use_lm true needs --lm_config"; exit 2
fi

fs_hz=$(${python} -c "import humanfriendly as h; print(h.parse_size('${fs}'))")
data_feats=${dumpdir}/raw

# Training data after speed perturbation
if [ -n "${speed_perturb_factors}" ]; then
    train_set_sp="${train_set}_sp"
else
    train_set_sp="${train_set}"
fi

[ -z "${bpe_train_text}" ] && bpe_train_text="${data_feats}/${train_set_sp}/text_spk1"
[ -z "${lm_train_text}" ] && lm_train_text="${data_feats}/lm_train.txt"
[ -z "${lm_dev_text}" ] && lm_dev_text="${data_feats}/${valid_set}/text_spk1"
[ -z "${lm_test_text}" ] && lm_test_text="${data_feats}/${test_sets%% *}/text_spk1"

# Token list and model
token_listdir=data/${lang}_token_list
bpedir="${token_listdir}/bpe_${bpemode}${nbpe}"
bpeprefix="${bpedir}"/bpe
bpemodel="${bpeprefix}".model
if [ "${token_type}" = bpe ]; then
    token_list="${bpedir}"/tokens.txt
else
    token_list="${token_listdir}/${token_type}/tokens.txt"
    bpemodel=none
fi
lm_token_list="${token_list}"
lm_token_type="${token_type}"

# Experiment names
if [ -z "${enh_asr_tag}" ]; then
    enh_asr_tag="$(basename "${enh_asr_config}" .yaml)_${feats_type}_${lang}_${token_type}"
    [ "${token_type}" = bpe ] && enh_asr_tag+="${nbpe}"
    [ -n "${grad_rule}" ] && enh_asr_tag+="_${grad_rule}"
    # Add overwritten arg's info
    [ -n "${enh_asr_args}" ] && enh_asr_tag+="$(echo "${enh_asr_args}" | sed -e "s/--/\_/g" -e "s/[ |=/]//g")"
    [ -n "${speed_perturb_factors}" ] && enh_asr_tag+="_sp"
fi
if [ -z "${lm_tag}" ]; then
    lm_tag="$(basename "${lm_config:-lm}" .yaml)_${lang}_${lm_token_type}"
    [ "${lm_token_type}" = bpe ] && lm_tag+="${nbpe}"
    [ -n "${lm_args}" ] && lm_tag+="$(echo "${lm_args}" | sed -e "s/--/\_/g" -e "s/[ |=/]//g")"
fi
if [ -z "${enh_asr_stats_dir}" ]; then
    enh_asr_stats_dir="${expdir}/enh_asr_stats_${feats_type}_${lang}_${token_type}"
    [ "${token_type}" = bpe ] && enh_asr_stats_dir+="${nbpe}"
    [ -n "${speed_perturb_factors}" ] && enh_asr_stats_dir+="_sp"
fi
if [ -z "${lm_stats_dir}" ]; then
    lm_stats_dir="${expdir}/lm_stats_${lang}_${lm_token_type}"
    [ "${lm_token_type}" = bpe ] && lm_stats_dir+="${nbpe}"
fi
[ -z "${enh_asr_exp}" ] && enh_asr_exp="${expdir}/enh_asr_${enh_asr_tag}"
[ -z "${lm_exp}" ] && lm_exp="${expdir}/lm_${lm_tag}"

if [ -z "${inference_tag}" ]; then
    if [ -n "${inference_config}" ]; then
        inference_tag="$(basename "${inference_config}" .yaml)"
    else
        inference_tag=inference
    fi
    [ -n "${inference_args}" ] && inference_tag+="$(echo "${inference_args}" | sed -e "s/--/\_/g" -e "s/[ |=]//g")"
    if "${use_lm}"; then
        inference_tag+="_lm_$(basename "${lm_exp}")_$(echo "${inference_lm}" | sed -e "s/\//_/g" -e "s/\.[^.]*$//g")"
    fi
    inference_tag+="_enh_asr_model_$(echo "${inference_model}" | sed -e "s/\//_/g" -e "s/\.[^.]*$//g")"
fi

# Training arguments of stage 11 (and of its signature: a different rule is a different training)
_train_args="${enh_asr_args}"
[ -n "${grad_rule}" ] && _train_args="--grad_rule ${grad_rule} ${_train_args}"

# ---------------------------------------------------------------------------------------------------------------
# Completion markers: see the header. sig_of hashes its arguments and, for those that are files, their content.
sig_of() {
    local a
    for a in "$@"; do
        if [ -f "${a}" ]; then
            echo "${a} $(md5sum < "${a}" | cut -d' ' -f1)"
        else
            echo "${a}"
        fi
    done | md5sum | cut -d' ' -f1
}
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mark_done() { echo "$2" > "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }
# require_done <marker> <stage>: a stage never reads an output whose marker is missing (incomplete or absent)
require_done() {
    [ -f "$1" ] || { log "Error: $1 is missing: $(dirname "$1") is incomplete or absent; run stage $2 first"; exit 1; }
}

# run_with_progress <what> <status command> -- <command...>: runs the command and, every 20 s while it runs,
# logs "<what>: <output of the status command>" (long stages show progress).
run_with_progress() {
    local what=$1 status_cmd=$2 pid rc=0 ticks=0
    shift 3
    "$@" &
    pid=$!
    while kill -0 "${pid}" 2>/dev/null; do
        sleep 1
        ticks=$((ticks + 1))
        if [ $((ticks % 20)) -eq 0 ] && kill -0 "${pid}" 2>/dev/null; then
            log "${what}: $(eval "${status_cmd}" 2>/dev/null || true)"
        fi
    done
    wait "${pid}" || rc=$?
    return "${rc}"
}
# count_lines <file>...: the number of lines in the files that exist (0 when none does)
count_lines() { cat "$@" 2>/dev/null | wc -l || true; }

# Extra files of a data dir carried through stages 3-4 (beside wav.scp/spk1.scp/utt2spk/spk2utt): the
# transcript, the categories and the files the score groupings read.
utt_extra_files="text_spk1 utt2category"
for _g in ${score_groups}; do
    _f=${_g#*=}
    _f=${_f%%:*}
    case " ${utt_extra_files} " in *" ${_f} "*) ;; *) utt_extra_files+=" ${_f}" ;; esac
done

# ---------------------------------------------------------------------------------------------------------------
if ! "${skip_data_prep}"; then
    if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
        log "Stage 1: Data preparation: local/data.sh ${local_data_opts} -> data/{${train_set},${valid_set},${test_sets// /,}}"
        _sig=$(sig_of local/data.sh "${local_data_opts}")
        if is_done data/.done.data_prep "${_sig}"; then
            log "Stage 1: skipped: data/.done.data_prep is up to date"
        else
            # shellcheck disable=SC2086
            local/data.sh ${local_data_opts}
            for dset in "${train_set}" "${valid_set}" ${test_sets}; do
                for f in wav.scp spk1.scp text_spk1 utt2spk spk2utt; do
                    [ -f "data/${dset}/${f}" ] || { log "Error: local/data.sh did not write data/${dset}/${f}"; exit 1; }
                done
            done
            mark_done data/.done.data_prep "${_sig}"
        fi
    fi

    if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
        if [ -n "${speed_perturb_factors}" ]; then
            log "Stage 2: Speed perturbation: data/${train_set} -> data/${train_set_sp} (factors ${speed_perturb_factors})"
            _sig=$(sig_of "${speed_perturb_factors}" "data/${train_set}/wav.scp" "data/${train_set}/spk1.scp" "data/${train_set}/text_spk1")
            if is_done "data/${train_set_sp}/.done.speed_perturb" "${_sig}"; then
                log "Stage 2: skipped: data/${train_set_sp} is up to date"
            else
                _dirs=""
                for factor in ${speed_perturb_factors}; do
                    if ${python} -c "import sys; sys.exit(0 if float('${factor}') == 1.0 else 1)"; then
                        _dirs+="data/${train_set} "
                    else
                        ${python} pyscripts/enh_asr/perturb_speed.py --factor "${factor}" \
                            --audio_dir "${dumpdir}/speed_perturb/${train_set}_sp${factor}" \
                            --extra_files "${utt_extra_files}" \
                            "data/${train_set}" "data/${train_set}_sp${factor}"
                        _dirs+="data/${train_set}_sp${factor} "
                    fi
                done
                rm -rf "data/${train_set_sp}.tmp"
                # shellcheck disable=SC2086
                utils/combine_data.sh --extra_files "spk1.scp ${utt_extra_files}" "data/${train_set_sp}.tmp" ${_dirs}
                rm -rf "data/${train_set_sp}"
                mv "data/${train_set_sp}.tmp" "data/${train_set_sp}"
                mark_done "data/${train_set_sp}/.done.speed_perturb" "${_sig}"
            fi
        else
            log "Skip stage 2: Speed perturbation (no --speed_perturb_factors)"
        fi
    fi

    if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
        log "Stage 3: Format wav.scp and spk1.scp at ${fs}: data/ -> ${data_feats}/"
        for dset in "${train_set_sp}" "${valid_set}" ${test_sets}; do
            if [ "${dset}" = "${train_set_sp}" ] || [ "${dset}" = "${valid_set}" ]; then
                _out="${data_feats}/org/${dset}"
            else
                _out="${data_feats}/${dset}"
            fi
            _sig=$(sig_of "${fs}" "${audio_format}" "${ref_channel}" data/"${dset}"/{wav.scp,spk1.scp,utt2spk,text_spk1})
            if is_done "${_out}/.done.format" "${_sig}"; then
                log "Stage 3: skipped: ${_out} is up to date"
                continue
            fi
            log "Stage 3: data/${dset} -> ${_out}"
            # Written in place (wav.scp names the audio files by their final paths); the marker comes last.
            rm -rf "${_out}"
            mkdir -p "$(dirname "${_out}")"
            utils/copy_data_dir.sh --validate_opts "--non-print --no-text" data/"${dset}" "${_out}"
            for f in ${utt_extra_files}; do
                if [ -f "data/${dset}/${f}" ]; then cp "data/${dset}/${f}" "${_out}/${f}"; fi
            done
            _nj=$(min "${nj}" "$(<"${_out}/utt2spk" wc -l)")
            for scp in spk1.scp wav.scp; do
                scripts/audio/format_wav_scp.sh --nj "${_nj}" --cmd "${train_cmd}" \
                    --out-filename "${scp}" --ref-channels "${ref_channel}" \
                    --audio-format "${audio_format}" --fs "${fs}" \
                    "data/${dset}/${scp}" "${_out}"
            done
            echo "${feats_type}" > "${_out}/feats_type"
            mark_done "${_out}/.done.format" "${_sig}"
        done
    fi

    if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
        log "Stage 4: Remove utterances shorter than ${min_wav_duration} s or longer than ${max_wav_duration} s: ${data_feats}/org -> ${data_feats}"
        _min_len=$(${python} -c "print(int(${min_wav_duration} * ${fs_hz}))")
        _max_len=$(${python} -c "print(int(${max_wav_duration} * ${fs_hz}))")
        for dset in "${train_set_sp}" "${valid_set}"; do
            _in="${data_feats}/org/${dset}"
            _out="${data_feats}/${dset}"
            require_done "${_in}/.done.format" 3
            _sig=$(sig_of "${_min_len}" "${_max_len}" "${_in}/.done.format")
            if is_done "${_out}/.done.filter" "${_sig}"; then
                log "Stage 4: skipped: ${_out} is up to date"
                continue
            fi
            rm -rf "${_out}.tmp"
            utils/copy_data_dir.sh --validate_opts "--non-print --no-text" "${_in}" "${_out}.tmp"
            cp "${_in}/feats_type" "${_out}.tmp/feats_type"
            <"${_in}/utt2num_samples" awk -v min="${_min_len}" -v max="${_max_len}" \
                '{ if ($2 > min && $2 < max) print $0 }' > "${_out}.tmp/utt2num_samples"
            for f in wav.scp spk1.scp ${utt_extra_files}; do
                [ -f "${_in}/${f}" ] || continue
                utils/filter_scp.pl "${_out}.tmp/utt2num_samples" "${_in}/${f}" > "${_out}.tmp/${f}"
            done
            # Remove empty transcripts
            <"${_out}.tmp/text_spk1" awk 'NF > 1' > "${_out}.tmp/text_spk1.nonempty"
            mv "${_out}.tmp/text_spk1.nonempty" "${_out}.tmp/text_spk1"
            utils/fix_data_dir.sh --utt_extra_files "spk1.scp ${utt_extra_files}" "${_out}.tmp"
            _n_in=$(<"${_in}/wav.scp" wc -l)
            _n_out=$(<"${_out}.tmp/wav.scp" wc -l)
            [ "${_n_out}" -gt 0 ] || { log "Error: no utterance of ${_in} is between ${min_wav_duration} s and ${max_wav_duration} s"; exit 1; }
            log "Stage 4: ${_in} (${_n_in} utterances) -> ${_out} (${_n_out} utterances)"
            rm -rf "${_out}"
            mv "${_out}.tmp" "${_out}"
            mark_done "${_out}/.done.filter" "${_sig}"
        done
        # shellcheck disable=SC2002
        cut -d' ' -f2- "${data_feats}/${train_set_sp}/text_spk1" | awk '{ print "lm_" NR " " $0 }' \
            > "${data_feats}/lm_train.txt.tmp"
        mv "${data_feats}/lm_train.txt.tmp" "${data_feats}/lm_train.txt"
    fi

    if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
        _sig=$(sig_of "${token_type}" "${nbpe}" "${bpemode}" "${bpe_nlsyms}" "${bpe_char_cover}" "${nlsyms_txt}" "${cleaner}" "${bpe_train_text}")
        if is_done "${token_list}.done" "${_sig}"; then
            log "Stage 5: skipped: ${token_list} is up to date"
        else
            _tokdir=$(dirname "${token_list}")
            mkdir -p "${_tokdir}"
            _opts=""
            if [ "${token_type}" = bpe ]; then
                log "Stage 5: Train a ${bpemode} sentencepiece model (${nbpe} pieces): ${bpe_train_text} -> ${bpemodel}"
                _opts_spm=""
                [ -n "${bpe_nlsyms}" ] && _opts_spm="--user_defined_symbols ${bpe_nlsyms}"
                # shellcheck disable=SC2086
                ${python} pyscripts/enh_asr/train_bpe.py --input "${bpe_train_text}" --model_prefix "${bpeprefix}" \
                    --vocab_size "${nbpe}" --model_type "${bpemode}" --character_coverage "${bpe_char_cover}" \
                    --input_sentence_size "${bpe_input_sentence_size}" ${_opts_spm}
                _opts="--bpemodel ${bpemodel}"
            fi
            log "Stage 5: Token list (${token_type}): ${bpe_train_text} -> ${token_list}"
            [ "${nlsyms_txt}" != none ] && _opts+=" --non_linguistic_symbols ${nlsyms_txt}"
            # shellcheck disable=SC2086
            # (ESPnet's text frontends try to download nltk data on import; offline that is noise, dropped here)
            ${python} -m espnet2.bin.tokenize_text --token_type "${token_type}" \
                --input "${bpe_train_text}" --output "${token_list}.tmp" ${_opts} \
                --field 2- --cleaner "${cleaner}" --write_vocabulary true \
                --add_symbol "${blank}:0" --add_symbol "${oov}:1" --add_symbol "${sos_eos}:-1" \
                2> >(grep -v '^\[nltk_data\]' >&2)
            mv "${token_list}.tmp" "${token_list}"
            log "Stage 5: ${token_list}: $(<"${token_list}" wc -l) tokens"
            mark_done "${token_list}.done" "${_sig}"
        fi
    fi
else
    log "Skip the stages for data preparation"
fi

# ---------------------------------------------------------------------------------------------------------------
# Language model
if ! "${skip_train}" && "${use_lm}"; then
    if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
        log "Stage 6: LM collect stats: ${lm_train_text}, ${lm_dev_text} -> ${lm_stats_dir}"
        _sig=$(sig_of "${lm_config}" "${lm_args}" "${lm_train_text}" "${lm_dev_text}" "${token_list}")
        if is_done "${lm_stats_dir}/.done" "${_sig}"; then
            log "Stage 6: skipped: ${lm_stats_dir} is up to date"
        else
            _logdir="${lm_stats_dir}/logdir"
            rm -rf "${lm_stats_dir}"
            mkdir -p "${_logdir}"
            _nj=$(min "${nj}" "$(<"${lm_train_text}" wc -l)" "$(<"${lm_dev_text}" wc -l)")
            key_file="${lm_train_text}"
            split_scps=""
            for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/train.${n}.scp"; done
            # shellcheck disable=SC2086
            utils/split_scp.pl "${key_file}" ${split_scps}
            key_file="${lm_dev_text}"
            split_scps=""
            for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/dev.${n}.scp"; done
            # shellcheck disable=SC2086
            utils/split_scp.pl "${key_file}" ${split_scps}
            _opts=""
            [ "${lm_token_type}" = bpe ] && _opts+="--bpemodel ${bpemodel} "
            [ "${nlsyms_txt}" != none ] && _opts+="--non_linguistic_symbols ${nlsyms_txt} "
            # shellcheck disable=SC2086
            ${train_cmd} JOB=1:"${_nj}" "${_logdir}"/stats.JOB.log \
                ${python} -m espnet2.bin.lm_train --collect_stats true --use_preprocessor true \
                    --token_type "${lm_token_type}" --token_list "${lm_token_list}" --cleaner "${cleaner}" \
                    --train_data_path_and_name_and_type "${lm_train_text},text,text" \
                    --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
                    --train_shape_file "${_logdir}/train.JOB.scp" --valid_shape_file "${_logdir}/dev.JOB.scp" \
                    --output_dir "${_logdir}/stats.JOB" --config "${lm_config}" ${_opts} ${lm_args}
            _opts=""
            for i in $(seq "${_nj}"); do _opts+="--input_dir ${_logdir}/stats.${i} "; done
            # shellcheck disable=SC2086
            ${python} -m espnet2.bin.aggregate_stats_dirs ${_opts} --output_dir "${lm_stats_dir}"
            # Append the vocabulary size to the text shape
            _ntok=$(<"${lm_token_list}" wc -l)
            for mode in train valid; do
                <"${lm_stats_dir}/${mode}/text_shape" awk -v N="${_ntok}" '{ print $0 "," N }' \
                    > "${lm_stats_dir}/${mode}/text_shape.${lm_token_type}"
            done
            mark_done "${lm_stats_dir}/.done" "${_sig}"
        fi
    fi

    if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
        log "Stage 7: LM training: ${lm_train_text} -> ${lm_exp} (log: ${lm_exp}/train.log)"
        _sig=$(sig_of "${lm_stats_dir}/.done" "${lm_config}" "${lm_args}")
        if is_done "${lm_exp}/.done.train" "${_sig}"; then
            log "Stage 7: skipped: ${lm_exp} is trained"
        else
            # As in stage 11: resume only a training with the same inputs and options
            if [ -e "${lm_exp}/checkpoint.pth" ] || [ -e "${lm_exp}/.done.train" ]; then
                if ! is_done "${lm_exp}/.train_signature" "${_sig}"; then
                    log "Error: ${lm_exp} holds a training with other data, config or options;" \
                        "remove it or choose another --lm_tag"
                    exit 1
                fi
                log "Stage 7: resuming the interrupted training in ${lm_exp}"
            fi
            mkdir -p "${lm_exp}"
            mark_done "${lm_exp}/.train_signature" "${_sig}"
            _opts=""
            [ "${lm_token_type}" = bpe ] && _opts+="--bpemodel ${bpemodel} "
            [ "${nlsyms_txt}" != none ] && _opts+="--non_linguistic_symbols ${nlsyms_txt} "
            # shellcheck disable=SC2086
            ${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${lm_exp}/train.log" \
                --log "${lm_exp}/train.log" --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
                --init_file_prefix "${lm_exp}/.dist_init_" --multiprocessing_distributed true -- \
                ${python} -m espnet2.bin.lm_train --ngpu "${ngpu}" --use_preprocessor true \
                    --token_type "${lm_token_type}" --token_list "${lm_token_list}" --cleaner "${cleaner}" \
                    --train_data_path_and_name_and_type "${lm_train_text},text,text" \
                    --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
                    --train_shape_file "${lm_stats_dir}/train/text_shape.${lm_token_type}" \
                    --valid_shape_file "${lm_stats_dir}/valid/text_shape.${lm_token_type}" \
                    --fold_length "${lm_fold_length}" --resume true --output_dir "${lm_exp}" \
                    --config "${lm_config}" ${_opts} ${lm_args}
            mark_done "${lm_exp}/.done.train" "${_sig}"
        fi
    fi

    if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
        log "Stage 8: LM perplexity: ${lm_test_text} -> ${lm_exp}/perplexity_test"
        _dir="${lm_exp}/perplexity_test"
        _sig=$(sig_of "${lm_exp}/.done.train" "${lm_test_text}" "${inference_lm}")
        if is_done "${_dir}/.done" "${_sig}"; then
            log "Stage 8: skipped: ${_dir} is up to date"
        else
            rm -rf "${_dir}"
            mkdir -p "${_dir}/logdir"
            ${cuda_cmd} --gpu "${ngpu}" "${_dir}/logdir/lm_calc_perplexity.log" \
                ${python} -m espnet2.bin.lm_calc_perplexity --ngpu "${ngpu}" \
                    --data_path_and_name_and_type "${lm_test_text},text,text" \
                    --train_config "${lm_exp}/config.yaml" --model_file "${lm_exp}/${inference_lm}" \
                    --output_dir "${_dir}"
            log "Stage 8: perplexity: $(cat "${_dir}/ppl")"
            mark_done "${_dir}/.done" "${_sig}"
        fi
    fi
else
    log "Skip the LM stages (6-8)"
fi

# ---------------------------------------------------------------------------------------------------------------
_train_dir="${data_feats}/${train_set_sp}"
_valid_dir="${data_feats}/${valid_set}"
_data_args() {  # _data_args <train|valid> <data dir>: the training CLI's data arguments
    echo "--$1_data_path_and_name_and_type $2/wav.scp,speech,sound" \
         "--$1_data_path_and_name_and_type $2/spk1.scp,speech_ref1,sound" \
         "--$1_data_path_and_name_and_type $2/text_spk1,text_spk1,text"
}
_token_args="--use_preprocessor true --token_type ${token_type} --token_list ${token_list} --text_name text_spk1 --cleaner ${cleaner}"
[ "${token_type}" = bpe ] && _token_args+=" --bpemodel ${bpemodel}"
[ "${nlsyms_txt}" != none ] && _token_args+=" --non_linguistic_symbols ${nlsyms_txt}"

if ! "${skip_train}"; then
    if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
        log "Stage 10: Collect stats: ${_train_dir}, ${_valid_dir} -> ${enh_asr_stats_dir}"
        require_done "${_train_dir}/.done.filter" 4
        require_done "${_valid_dir}/.done.filter" 4
        require_done "${token_list}.done" 5
        _sig=$(sig_of "${_train_dir}/.done.filter" "${_valid_dir}/.done.filter" "${token_list}" "${enh_asr_config}")
        if is_done "${enh_asr_stats_dir}/.done" "${_sig}"; then
            log "Stage 10: skipped: ${enh_asr_stats_dir} is up to date"
        else
            _logdir="${enh_asr_stats_dir}/logdir"
            rm -rf "${enh_asr_stats_dir}"
            mkdir -p "${_logdir}"
            _nj=$(min "${nj}" "$(<"${_train_dir}/wav.scp" wc -l)" "$(<"${_valid_dir}/wav.scp" wc -l)")
            for mode in train valid; do
                [ "${mode}" = train ] && _dir="${_train_dir}" || _dir="${_valid_dir}"
                split_scps=""
                for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/${mode}.${n}.scp"; done
                # shellcheck disable=SC2086
                utils/split_scp.pl "${_dir}/wav.scp" ${split_scps}
            done
            log "Stage 10: ${_nj} jobs, log: ${_logdir}/stats.*.log"
            # The statistics do not depend on the rule: the config's trainer options are read, not applied.
            # shellcheck disable=SC2046,SC2086
            ${train_cmd} JOB=1:"${_nj}" "${_logdir}"/stats.JOB.log \
                ${python} -m "espnet2.bin.${enh_asr_task}_train" --collect_stats true ${_token_args} \
                    $(_data_args train "${_train_dir}") $(_data_args valid "${_valid_dir}") \
                    --train_shape_file "${_logdir}/train.JOB.scp" --valid_shape_file "${_logdir}/valid.JOB.scp" \
                    --output_dir "${_logdir}/stats.JOB" --config "${enh_asr_config}" ${enh_asr_args}
            _opts=""
            for i in $(seq "${_nj}"); do _opts+="--input_dir ${_logdir}/stats.${i} "; done
            # shellcheck disable=SC2086
            ${python} -m espnet2.bin.aggregate_stats_dirs ${_opts} --output_dir "${enh_asr_stats_dir}"
            # Append the vocabulary size to the text shape
            _ntok=$(<"${token_list}" wc -l)
            for mode in train valid; do
                <"${enh_asr_stats_dir}/${mode}/text_spk1_shape" awk -v N="${_ntok}" '{ print $0 "," N }' \
                    > "${enh_asr_stats_dir}/${mode}/text_spk1_shape.${token_type}"
            done
            mark_done "${enh_asr_stats_dir}/.done" "${_sig}"
        fi
    fi

    if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
        log "Stage 11: Joint SE+ASR training (rule: ${grad_rule:-from the config}): ${_train_dir} -> ${enh_asr_exp} (log: ${enh_asr_exp}/train.log)"
        require_done "${enh_asr_stats_dir}/.done" 10
        _sig=$(sig_of "${enh_asr_stats_dir}/.done" "${enh_asr_config}" "${_train_args}" "${feats_normalize}" "${enh_asr_task}")
        if is_done "${enh_asr_exp}/.done.train" "${_sig}"; then
            log "Stage 11: skipped: ${enh_asr_exp} is trained"
        else
            # ESPnet resumes from checkpoint.pth (--resume true): only a training with the same inputs and
            # options may be resumed, never one of another config or rule that happens to share the dir.
            if [ -e "${enh_asr_exp}/checkpoint.pth" ] || [ -e "${enh_asr_exp}/.done.train" ]; then
                if ! is_done "${enh_asr_exp}/.train_signature" "${_sig}"; then
                    log "Error: ${enh_asr_exp} holds a training with other data, config or options;" \
                        "remove it or choose another --enh_asr_tag"
                    exit 1
                fi
                log "Stage 11: resuming the interrupted training in ${enh_asr_exp}"
            fi
            mkdir -p "${enh_asr_exp}"
            mark_done "${enh_asr_exp}/.train_signature" "${_sig}"
            _opts=""
            if [ "${feats_normalize}" = global_mvn ]; then
                _opts+="--normalize global_mvn --normalize_conf stats_file=${enh_asr_stats_dir}/train/feats_stats.npz "
            fi
            if [ "${enh_asr_task}" = enh_s2t_gr_speaker ]; then
                # Integer speaker labels of the (filtered) training set; the validation speakers are not the
                # training speakers, so validation gets none (its loss stays the ASR loss).
                ${python} -m espnet2.bin.make_utt2spkid "${_train_dir}"
                _opts+="--train_data_path_and_name_and_type ${_train_dir}/utt2spkid,spk_labels,text_int "
                _opts+="--speaker_branch_conf num_speakers=$(<"${_train_dir}/spk2spkid" wc -l) "
                log "Stage 11: speaker branch on $(<"${_train_dir}/spk2spkid" wc -l) training speakers (${_train_dir}/spk2spkid)"
            fi
            _fold=$((enh_asr_speech_fold_length * 100))
            # The run's own command, for re-running this stage by hand
            echo "${run_args} --stage 11 --stop_stage 11 # Time: $(date)" >> "${enh_asr_exp}/run.sh"
            chmod +x "${enh_asr_exp}/run.sh"
            _start=${SECONDS}
            [ -n "${train_num_threads}" ] && export OMP_NUM_THREADS="${train_num_threads}" MKL_NUM_THREADS="${train_num_threads}"
            # shellcheck disable=SC2046,SC2086
            run_with_progress "Stage 11: training" \
                "grep -o '[0-9]*epoch results: .*' '${enh_asr_exp}/train.log' | tail -n 1 | cut -c1-200 || echo 'first epoch running'" -- \
                ${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${enh_asr_exp}/train.log" \
                    --log "${enh_asr_exp}/train.log" --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
                    --init_file_prefix "${enh_asr_exp}/.dist_init_" --multiprocessing_distributed true -- \
                    ${python} -m "espnet2.bin.${enh_asr_task}_train" ${_token_args} \
                        $(_data_args train "${_train_dir}") $(_data_args valid "${_valid_dir}") \
                        --train_shape_file "${enh_asr_stats_dir}/train/speech_shape" \
                        --train_shape_file "${enh_asr_stats_dir}/train/speech_ref1_shape" \
                        --train_shape_file "${enh_asr_stats_dir}/train/text_spk1_shape.${token_type}" \
                        --valid_shape_file "${enh_asr_stats_dir}/valid/speech_shape" \
                        --valid_shape_file "${enh_asr_stats_dir}/valid/speech_ref1_shape" \
                        --valid_shape_file "${enh_asr_stats_dir}/valid/text_spk1_shape.${token_type}" \
                        --fold_length "${_fold}" --fold_length "${_fold}" --fold_length "${enh_asr_text_fold_length}" \
                        --resume true --use_matplotlib true --output_dir "${enh_asr_exp}" \
                        --config "${enh_asr_config}" ${_opts} ${_train_args}
            export OMP_NUM_THREADS="${_omp_threads}" MKL_NUM_THREADS="${_omp_threads}"
            # Wall time of this attempt; a resumed training adds one line per attempt (RESULTS.md sums them)
            echo "$((SECONDS - _start))" >> "${enh_asr_exp}/train_wall_time_s"
            [ -e "${enh_asr_exp}/${inference_model}" ] || {
                log "Error: training ended without ${enh_asr_exp}/${inference_model}: check best_model_criterion in ${enh_asr_config} or --inference_model"
                exit 1
            }
            mark_done "${enh_asr_exp}/.done.train" "${_sig}"
        fi
    fi
else
    log "Skip the training stages"
fi

# ---------------------------------------------------------------------------------------------------------------
if ! "${skip_eval}"; then
    if "${gpu_inference}"; then
        _cmd="${cuda_cmd}"
        _ngpu=1
    else
        _cmd="${decode_cmd}"
        _ngpu=0
    fi
    _model_sig=$(sig_of "${enh_asr_exp}/.done.train" "${inference_model}")

    if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
        log "Stage 12: Decoding: ${enh_asr_exp}/${inference_model} -> ${enh_asr_exp}/${inference_tag}"
        _opts=""
        [ -n "${inference_config}" ] && _opts+="--config ${inference_config} "
        if "${use_lm}"; then
            _opts+="--lm_train_config ${lm_exp}/config.yaml --lm_file ${lm_exp}/${inference_lm} "
        fi
        for dset in ${test_sets}; do
            _data="${data_feats}/${dset}"
            _dir="${enh_asr_exp}/${inference_tag}/${dset}"
            require_done "${enh_asr_exp}/.done.train" 11
            require_done "${_data}/.done.format" 3
            _sig=$(sig_of "${_model_sig}" "${_opts}" "${inference_args}" "${inference_config}" "${_data}/.done.format")
            if is_done "${_dir}/.done" "${_sig}"; then
                log "Stage 12: skipped: ${_dir} is up to date"
                continue
            fi
            _logdir="${_dir}/logdir"
            rm -rf "${_dir}"
            mkdir -p "${_logdir}"
            _n=$(<"${_data}/wav.scp" wc -l)
            _nj=$(min "${inference_nj}" "${_n}")
            key_file=${_data}/wav.scp
            split_scps=""
            for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/keys.${n}.scp"; done
            # shellcheck disable=SC2086
            utils/split_scp.pl "${key_file}" ${split_scps}
            log "Stage 12: ${_data} (${_n} utterances, ${_nj} jobs) -> ${_dir}, log: ${_logdir}/asr_inference.*.log"
            # Progress: ESPnet's beam search logs one "best hypo:" line per utterance (the output files are
            # written through a buffer and lag behind).
            # shellcheck disable=SC2086
            run_with_progress "Stage 12: decoding ${dset}" \
                "echo \$(cat ${_logdir}/asr_inference.*.log 2>/dev/null | grep -c 'best hypo: ' || true)/${_n} utterances" -- \
                ${_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${_logdir}"/asr_inference.JOB.log \
                    ${python} -m espnet2.bin.asr_inference --enh_s2t_task true --batch_size 1 --ngpu "${_ngpu}" \
                        --data_path_and_name_and_type "${_data}/wav.scp,speech,sound" \
                        --key_file "${_logdir}/keys.JOB.scp" \
                        --asr_train_config "${enh_asr_exp}/config.yaml" \
                        --asr_model_file "${enh_asr_exp}/${inference_model}" \
                        --output_dir "${_logdir}/output.JOB" ${_opts} ${inference_args}
            for f in token token_int score text; do
                for i in $(seq "${_nj}"); do
                    cat "${_logdir}/output.${i}/1best_recog/${f}_spk1"
                done | LC_ALL=C sort -k1,1 > "${_dir}/${f}_spk1.tmp"
                mv "${_dir}/${f}_spk1.tmp" "${_dir}/${f}_spk1"
            done
            _n_hyp=$(<"${_dir}/text_spk1" wc -l)
            [ "${_n_hyp}" -eq "${_n}" ] || { log "Error: ${_dir}/text_spk1 has ${_n_hyp} lines for ${_n} utterances"; exit 1; }
            mark_done "${_dir}/.done" "${_sig}"
        done
    fi

    if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ]; then
        log "Stage 13: Enhancement: ${enh_asr_exp}/${inference_model} -> ${enh_asr_exp}/enhanced_<test set>"
        for dset in ${test_sets}; do
            _data="${data_feats}/${dset}"
            _dir="${enh_asr_exp}/enhanced_${dset}"
            require_done "${enh_asr_exp}/.done.train" 11
            require_done "${_data}/.done.format" 3
            _sig=$(sig_of "${_model_sig}" "${enh_inference_args}" "${_data}/.done.format")
            if is_done "${_dir}/.done" "${_sig}"; then
                log "Stage 13: skipped: ${_dir} is up to date"
                continue
            fi
            _logdir="${_dir}/logdir"
            rm -rf "${_dir}"
            mkdir -p "${_logdir}"
            _n=$(<"${_data}/wav.scp" wc -l)
            _nj=$(min "${inference_nj}" "${_n}")
            split_scps=""
            for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/keys.${n}.scp"; done
            # shellcheck disable=SC2086
            utils/split_scp.pl "${_data}/wav.scp" ${split_scps}
            log "Stage 13: ${_data} (${_n} utterances, ${_nj} jobs) -> ${_dir}, log: ${_logdir}/enh_inference.*.log"
            # shellcheck disable=SC2086
            run_with_progress "Stage 13: enhancing ${dset}" \
                "echo \$(count_lines ${_logdir}/output.*/spk1.scp)/${_n} utterances" -- \
                ${_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${_logdir}"/enh_inference.JOB.log \
                    ${python} -m espnet2.bin.enh_inference --enh_s2t_task true --ngpu "${_ngpu}" --fs "${fs_hz}" \
                        --data_path_and_name_and_type "${_data}/wav.scp,speech_mix,sound" \
                        --key_file "${_logdir}/keys.JOB.scp" \
                        --train_config "${enh_asr_exp}/config.yaml" \
                        --model_file "${enh_asr_exp}/${inference_model}" \
                        --normalize_output_wav true \
                        --output_dir "${_logdir}/output.JOB" ${enh_inference_args}
            for i in $(seq "${_nj}"); do
                cat "${_logdir}/output.${i}/spk1.scp"
            done | LC_ALL=C sort -k1,1 > "${_dir}/spk1.scp.tmp"
            mv "${_dir}/spk1.scp.tmp" "${_dir}/spk1.scp"
            mark_done "${_dir}/.done" "${_sig}"
        done
    fi

    if [ "${stage}" -le 14 ] && [ "${stop_stage}" -ge 14 ]; then
        log "Stage 14: ASR scoring: ${enh_asr_exp}/${inference_tag}/<test set>/text_spk1 vs ${data_feats}/<test set>/text_spk1"
        _types="cer wer"
        [ "${token_type}" = bpe ] && _types+=" ter"
        for dset in ${test_sets}; do
            _data="${data_feats}/${dset}"
            _dir="${enh_asr_exp}/${inference_tag}/${dset}"
            require_done "${_dir}/.done" 12
            _sig=$(sig_of "${_dir}/.done" "${_dir}/text_spk1" "${_data}/text_spk1" "${_types}" "${score_groups}")
            if is_done "${_dir}/.done.score" "${_sig}"; then
                log "Stage 14: skipped: ${_dir}/score_* are up to date"
                continue
            fi
            _groups=""
            for g in ${score_groups}; do
                _f=${g#*=}
                _f=${_f%%:*}
                if [ -f "${_data}/${_f}" ]; then
                    case "${g}" in *=*) _groups+="${g%%=*}=${_data}/${g#*=} " ;; *) _groups+="${_data}/${g} " ;; esac
                fi
            done
            for _type in ${_types}; do
                case "${_type}" in cer) _tok=char ;; wer) _tok=word ;; ter) _tok=bpe ;; esac
                _opts="--cleaner ${cleaner}"
                [ "${_tok}" = bpe ] && _opts+=" --bpemodel ${bpemodel}"
                [ "${nlsyms_txt}" != none ] && _opts+=" --nlsyms ${nlsyms_txt}"
                # shellcheck disable=SC2086
                ${python} pyscripts/scoring/score_asr.py --ref "${_data}/text_spk1" --hyp "${_dir}/text_spk1" \
                    --token-type "${_tok}" --utt2spk "${_data}/utt2spk" --out-dir "${_dir}/score_${_type}" ${_opts} \
                    > /dev/null
                if [ -n "${_groups}" ]; then
                    # shellcheck disable=SC2086
                    ${python} pyscripts/enh_asr/score_groups.py --score_dir "${_dir}/score_${_type}" \
                        --utt2spk "${_data}/utt2spk" ${_groups} > /dev/null
                fi
                log "Stage 14: ${dset} ${_type}: $(grep -e Sum/Avg "${_dir}/score_${_type}/result.txt" | tr -s ' ')"
            done
            mark_done "${_dir}/.done.score" "${_sig}"
        done
    fi

    if [ "${stage}" -le 15 ] && [ "${stop_stage}" -ge 15 ]; then
        log "Stage 15: SE scoring of the noisy input and of the enhanced output against spk1.scp"
        _opts=""
        if ${python} -c "import pesq" 2>/dev/null; then
            _opts="--use_pesq true"
        else
            log "Stage 15: pesq is not installed: PESQ is not scored"
        fi
        for dset in ${test_sets}; do
            _data="${data_feats}/${dset}"
            require_done "${_data}/.done.format" 3
            # Only utterances with a true clean reference: a REAL recording's spk1.scp is a dummy copy of its input.
            _keys="${_data}/scoring_enh_keys"
            if [ -f "${_data}/utt2category" ]; then
                <"${_data}/utt2category" awk '$2 != "REAL" { print $1 }' > "${_keys}.tmp"
            else
                cut -d' ' -f1 "${_data}/wav.scp" > "${_keys}.tmp"
            fi
            mv "${_keys}.tmp" "${_keys}"
            if [ ! -s "${_keys}" ]; then
                log "Stage 15: skipped ${dset}: every utterance is REAL (no clean reference)"
                continue
            fi
            for _input in noisy enhanced; do
                if [ "${_input}" = noisy ]; then
                    _inf="${_data}/wav.scp"
                    _dir="${_data}/scoring_enh"  # the same for every model: scored once
                    _sig=$(sig_of "${_data}/.done.format" "${_keys}" "${_opts}")
                else
                    require_done "${enh_asr_exp}/enhanced_${dset}/.done" 13
                    _inf="${enh_asr_exp}/enhanced_${dset}/spk1.scp"
                    _dir="${enh_asr_exp}/enhanced_${dset}/scoring_enh"
                    _sig=$(sig_of "${enh_asr_exp}/enhanced_${dset}/.done" "${_keys}" "${_opts}")
                fi
                if is_done "${_dir}/.done" "${_sig}"; then
                    log "Stage 15: skipped: ${_dir} is up to date"
                    continue
                fi
                _logdir="${_dir}/logdir"
                rm -rf "${_dir}"
                mkdir -p "${_logdir}"
                _n=$(<"${_keys}" wc -l)
                _nj=$(min "${nj}" "${_n}")
                split_scps=""
                for n in $(seq "${_nj}"); do split_scps+=" ${_logdir}/keys.${n}.scp"; done
                # shellcheck disable=SC2086
                utils/split_scp.pl "${_keys}" ${split_scps}
                log "Stage 15: ${dset} ${_input} (${_n} utterances, ${_nj} jobs) -> ${_dir}"
                # shellcheck disable=SC2086
                run_with_progress "Stage 15: scoring ${dset} ${_input}" \
                    "echo \$(count_lines ${_logdir}/output.*/SI_SNR_spk1)/${_n} utterances" -- \
                    ${_cmd} JOB=1:"${_nj}" "${_logdir}"/enh_scoring.JOB.log \
                        ${python} -m espnet2.bin.enh_scoring --key_file "${_logdir}/keys.JOB.scp" \
                            --ref_scp "${_data}/spk1.scp" --inf_scp "${_inf}" \
                            --output_dir "${_logdir}/output.JOB" --ref_channel "${ref_channel}" ${_opts}
                ${python} pyscripts/enh_asr/average_enh_scores.py --output_dir "${_dir}" "${_logdir}"/output.*
                mark_done "${_dir}/.done" "${_sig}"
            done
        done
    fi

    if [ "${stage}" -le 16 ] && [ "${stop_stage}" -ge 16 ]; then
        log "Stage 16: Results: ${expdir}/enh_asr_*/ -> ${enh_asr_exp}/RESULTS.md, ${expdir}/RESULTS.md"
        _protocol="${scoring_protocol}"
        if ${python} -c "import pesq" 2>/dev/null; then
            [ "${fs_hz}" -eq 8000 ] && _protocol+=" PESQ_NB" || _protocol+=" PESQ_WB"
        fi
        # shellcheck disable=SC2086
        ${python} pyscripts/enh_asr/write_results.py --dumpdir "${data_feats}" --test_sets ${test_sets} \
            --inference_tag "${inference_tag}" --inference_model "${inference_model}" \
            --se_metrics ${_protocol} --output "${enh_asr_exp}/RESULTS.md" "${enh_asr_exp}"
        # Every system trained under the same expdir, side by side (e.g. MTL and Gradient Remedy)
        # shellcheck disable=SC2086
        ${python} pyscripts/enh_asr/write_results.py --dumpdir "${data_feats}" --test_sets ${test_sets} \
            --inference_tag "${inference_tag}" --inference_model "${inference_model}" \
            --se_metrics ${_protocol} --output "${expdir}/RESULTS.md" "${expdir}"/enh_asr_*/
        cat "${expdir}/RESULTS.md"
    fi
else
    log "Skip the evaluation stages"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
