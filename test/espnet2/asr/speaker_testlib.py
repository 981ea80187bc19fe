"""Tiny ESPnet ASR models and batches with speaker labels (CPU, milliseconds)."""

import argparse
import copy

import torch

from espnet2.tasks.asr_speaker import ASRSpeakerTask

TOKENS = ["<blank>", "<unk>"] + list("abcdefgh") + ["<sos/eos>"]
NUM_SPEAKERS = 3

#: Dropout 0 and no SpecAugment: training-mode forwards are deterministic.
TINY_ASR_CONF = dict(
    token_list=TOKENS,
    token_type="char",
    bpemodel=None,
    init=None,
    input_size=None,
    frontend="default",
    frontend_conf=dict(n_fft=128, hop_length=32, n_mels=20),
    specaug=None,
    normalize="utterance_mvn",
    normalize_conf={},
    encoder="conformer",
    encoder_conf=dict(
        output_size=16,
        attention_heads=2,
        linear_units=16,
        num_blocks=4,
        input_layer="conv2d",
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
        attention_dropout_rate=0.0,
        cnn_module_kernel=3,
    ),
    decoder="transformer",
    decoder_conf=dict(
        attention_heads=2, linear_units=16, num_blocks=1, dropout_rate=0.0,
        positional_dropout_rate=0.0, self_attention_dropout_rate=0.0,
        src_attention_dropout_rate=0.0,
    ),
    model_conf=dict(ctc_weight=0.3, lsm_weight=0.1),
)


def tiny_args(speaker_branch_conf=None, **overrides) -> argparse.Namespace:
    """ASRSpeakerTask arguments: parser defaults + TINY_ASR_CONF + overrides."""
    args = ASRSpeakerTask.get_parser().parse_args([])
    conf = {**copy.deepcopy(TINY_ASR_CONF), **overrides}
    conf["speaker_branch_conf"] = dict(speaker_branch_conf or {})
    for key, value in conf.items():
        setattr(args, key, value)
    return args


def build(speaker_branch_conf=None, seed: int = 0, **overrides):
    """The task's model; the same seed gives the same ASR and branch weights."""
    torch.manual_seed(seed)
    return ASRSpeakerTask.build_model(tiny_args(speaker_branch_conf, **overrides))


def make_batch(lengths=(4000, 3200, 2400), speakers=(0, 2, 1), seed: int = 0, text_len=5):
    """Collated batch: waveforms zero-padded, text padded with -1, spk_labels (B, 1)."""
    g = torch.Generator().manual_seed(seed)
    batch_size, total = len(lengths), max(lengths)
    speech = torch.randn(batch_size, total, generator=g)
    text = torch.randint(2, len(TOKENS) - 1, (batch_size, text_len), generator=g)
    text_lengths = torch.tensor([max(2, text_len - i) for i in range(batch_size)])
    for i, n in enumerate(lengths):
        speech[i, n:] = 0.0
        text[i, text_lengths[i]:] = -1
    return dict(
        speech=speech,
        speech_lengths=torch.tensor(lengths),
        text=text,
        text_lengths=text_lengths,
        spk_labels=torch.tensor(speakers).view(-1, 1),
        spk_labels_lengths=torch.ones(batch_size, dtype=torch.long),
    )


#: A tiny joint SE (STFT + TCN mask) + ASR (Conformer, 4 layers) model, dropout 0.
TINY_ENH_S2T_CONF = dict(
    token_list=TOKENS,
    token_type="char",
    bpemodel=None,
    init=None,
    enh_encoder="stft",
    enh_encoder_conf=dict(n_fft=128, hop_length=32),
    enh_decoder="stft",
    enh_decoder_conf=dict(n_fft=128, hop_length=32),
    enh_separator="tcn",
    enh_separator_conf=dict(num_spk=1, layer=2, stack=1, bottleneck_dim=16, hidden_dim=16, kernel=3),
    enh_criterions=[dict(name="si_snr", conf={}, wrapper="fixed_order", wrapper_conf=dict(weight=0.3))],
    frontend="default",
    frontend_conf=dict(n_fft=128, hop_length=32, n_mels=20),
    specaug=None,
    normalize="utterance_mvn",
    normalize_conf={},
    asr_encoder="conformer",
    asr_encoder_conf=TINY_ASR_CONF["encoder_conf"],
    asr_decoder="transformer",
    asr_decoder_conf=TINY_ASR_CONF["decoder_conf"],
    asr_model_conf=dict(ctc_weight=0.3, lsm_weight=0.1, extract_feats_in_collect_stats=False),
    model_conf=dict(calc_enh_loss=True, bypass_enh_prob=0.0),
)


def tiny_enh_s2t_args(speaker_branch_conf=None, **overrides) -> argparse.Namespace:
    """EnhS2TGRSpeakerTask arguments: parser defaults + TINY_ENH_S2T_CONF + overrides."""
    from espnet2.tasks.enh_s2t_gr_speaker import EnhS2TGRSpeakerTask

    args = EnhS2TGRSpeakerTask.get_parser().parse_args([])
    conf = {**copy.deepcopy(TINY_ENH_S2T_CONF), **overrides}
    conf["speaker_branch_conf"] = dict(speaker_branch_conf or {})
    for key, value in conf.items():
        setattr(args, key, value)
    return args


def build_enh_s2t(speaker_branch_conf=None, seed: int = 0, **overrides):
    from espnet2.tasks.enh_s2t_gr_speaker import EnhS2TGRSpeakerTask

    torch.manual_seed(seed)
    return EnhS2TGRSpeakerTask.build_model(tiny_enh_s2t_args(speaker_branch_conf, **overrides))


def make_enh_s2t_batch(seed: int = 0):
    """The ASR batch renamed for the joint model, plus a clean reference, SIMU ids."""
    batch = make_batch(seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    ref = torch.randn(batch["speech"].shape, generator=g)
    for i, n in enumerate(batch["speech_lengths"].tolist()):
        ref[i, n:] = 0.0
    return dict(
        speech=batch["speech"],
        speech_lengths=batch["speech_lengths"],
        speech_ref1=ref,
        text_spk1=batch.pop("text"),
        text_spk1_lengths=batch.pop("text_lengths"),
        spk_labels=batch["spk_labels"],
        spk_labels_lengths=batch["spk_labels_lengths"],
        utt_id=[f"u{i}_SIMU" for i in range(len(ref))],
    )
