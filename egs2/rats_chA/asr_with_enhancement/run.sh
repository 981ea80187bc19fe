#!/usr/bin/env bash
# RATS channel A (8 kHz) joint speech enhancement + ASR, the Gradient Remedy paper's setting
# (Hu et al., ICASSP 2023): BLSTM magnitude-mask SE front-end + Conformer CTC/attention ASR,
# BPE 1000, LSTM LM, trained with Gradient Remedy by default.
#
#   ./run.sh                                    # every stage (1: local/data.sh ... 16: RESULTS.md)
#   ./run.sh --stage 1 --stop_stage 5           # data preparation and the BPE model only
#   ./run.sh --grad_rule sum                    # the multi-task baseline (or --enh_asr_config
#                                               #   conf/tuning/train_enh_asr_blstm_conformer_sum.yaml)
#   ./run.sh --local_data_opts "--mode ldc"     # prepare from LDC2015S02 + Fisher (best effort)
#   cmd_backend=slurm ./run.sh --ngpu 1         # on a Slurm cluster (see cmd.sh)
#
# Corpus locations: db.sh. Every option of enh_asr.sh can be given here; later options win.
# Values from the released recipe (run_rats_chA_gradient_remedy.sh, see
# shared/reference/gradient_remedy_paper_and_released_code.md section 6): fs 8k, wav, max 30 s,
# min 0.1 s, BPE 1000 (bpemode bpe), LM on, decoding with the LM's valid.loss.best.pth and the
# average of the 10 best joint checkpoints. The release trained on 2 GPUs; ESPnet's batch_size is
# the total over GPUs, so --ngpu 1 keeps the same batch (16 x accum_grad 4).
set -e
set -u
set -o pipefail

train_set=rats_Ach_waveform_8k_joint_enh_asr_train
valid_set=rats_Ach_waveform_8k_joint_enh_asr_valid
test_sets=rats_Ach_waveform_8k_joint_enh_asr_test

enh_asr_config=conf/train_enh_asr.yaml     # -> tuning/train_enh_asr_blstm_conformer_gr.yaml
inference_config=conf/decode_enh_asr.yaml  # -> tuning/decode.yaml
lm_config=conf/train_lm.yaml               # -> tuning/train_lm_lstm.yaml

./enh_asr.sh \
    --lang en \
    --ngpu 1 \
    --nj 16 \
    --inference_nj 32 \
    --fs 8k \
    --audio_format wav \
    --min_wav_duration 0.1 \
    --max_wav_duration 30 \
    --token_type bpe \
    --nbpe 1000 \
    --bpemode bpe \
    --use_lm true \
    --lm_config "${lm_config}" \
    --inference_lm valid.loss.best.pth \
    --enh_asr_config "${enh_asr_config}" \
    --inference_config "${inference_config}" \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    "$@"
