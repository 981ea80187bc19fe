#!/usr/bin/env bash
# CHiME-4 1-channel track (16 kHz) joint speech enhancement + ASR with a two-task gradient rule:
# the Gradient Remedy paper's model (BLSTM magnitude-mask SE front-end + Conformer CTC/attention
# ASR), trained with Gradient Remedy by default, on tr05 simu + real (all 6 channels as separate
# utterances), validated on dt05 simu + real, tested on {dt05,et05}_{real,simu} 1ch track.
#
#   ./run.sh                                    # every stage (1: local/data.sh ... 16: RESULTS.md)
#   ./run.sh --stage 1 --stop_stage 5           # data preparation and the token list only
#   ./run.sh --grad_rule sum                    # the multi-task baseline (or --enh_asr_config
#                                               #   conf/tuning/train_enh_asr_blstm_conformer_sum.yaml)
#   ./run.sh --enh_asr_config conf/tuning/train_enh_asr_convtasnet_conformer_gr.yaml
#   ./run.sh --enh_asr_task enh_s2t_gr_speaker \
#       --enh_asr_config conf/tuning/train_enh_asr_blstm_conformer_gr_speaker_al_mid.yaml
#                                               # + the speaker branch of Adi et al. 2019 (mt/al x in/mid/out)
#   cmd_backend=slurm ./run.sh --ngpu 1         # on a Slurm cluster (see cmd.sh)
#
# Corpus locations: db.sh (CHIME4, CHIME4_EXTRA_ANNOTATIONS). Every option of enh_asr.sh can be
# given here; later options win.
#
# Clean SE targets: set isolated_ext below (or --local_data_opts "--isolated_ext DIR") to the
# re-simulated, sample-aligned <set>_<env>_simu/<stem>.CH<n>.Clean.wav of ESPnet's enh1 CHiME-4
# recipe (a MATLAB run). Without it the simulated utterances' targets are the WSJ0 originals /
# booth recordings, which are NOT time-aligned with the noisy channels: the SE losses of the
# configs here (phase-sensitive STFT MSE, SI-SNR) then train against shifted targets.
#
# Values: ESPnet's egs2/chime4/enh_asr1 (shared/reference/espnet_202511_notes.md section 3.2):
# same train/valid/test sets, char tokens with data/nlsyms.txt, utterance MVN, 16 kHz. Not from
# ESPnet: the LM is the paper's LSTM (conf/tuning/train_lm_lstm.yaml) trained on the training
# transcripts only (ESPnet adds the WSJ1 LM text, which local/data.sh does not prepare), and
# decoding uses the paper's settings (beam 60, CTC 0.3, LM 0.3, length bonus 0.3).
set -e
set -u
set -o pipefail

isolated_ext=   # re-simulated isolated_ext dir (strongly recommended, see above)

train_set=tr05_multi_noisy
valid_set=dt05_multi_isolated_1ch_track
test_sets="dt05_real_isolated_1ch_track dt05_simu_isolated_1ch_track et05_real_isolated_1ch_track et05_simu_isolated_1ch_track"

enh_asr_config=conf/train_enh_asr.yaml     # -> tuning/train_enh_asr_blstm_conformer_gr.yaml
inference_config=conf/decode_enh_asr.yaml  # -> tuning/decode.yaml
lm_config=conf/train_lm.yaml               # -> tuning/train_lm_lstm.yaml

local_data_opts=""
if [ -n "${isolated_ext}" ]; then
    local_data_opts="--isolated_ext ${isolated_ext}"
else
    echo "run.sh: warning: isolated_ext is empty (unless --local_data_opts sets it): simulated utterances get non-aligned clean targets" >&2
fi

./enh_asr.sh \
    --lang en \
    --ngpu 1 \
    --nj 16 \
    --inference_nj 32 \
    --fs 16k \
    --audio_format wav \
    --min_wav_duration 0.1 \
    --max_wav_duration 20 \
    --token_type char \
    --nlsyms_txt data/nlsyms.txt \
    --use_lm true \
    --lm_config "${lm_config}" \
    --inference_lm valid.loss.best.pth \
    --local_data_opts "${local_data_opts}" \
    --enh_asr_config "${enh_asr_config}" \
    --inference_config "${inference_config}" \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    "$@"
