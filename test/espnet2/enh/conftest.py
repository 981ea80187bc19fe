"""Tiny joint SE + ASR models for the two-task model tests (CPU, milliseconds)."""

import argparse
import copy

import pytest
import torch

from espnet2.tasks.enh_s2t import EnhS2TTask

TOKENS = ["<blank>", "<unk>"] + list("abcdefgh") + ["<sos/eos>"]

#: Dropout 0 everywhere, no SpecAugment: forward passes are deterministic.
TINY_CONF = dict(
    token_list=TOKENS,
    init=None,
    enh_encoder="stft",
    enh_encoder_conf=dict(n_fft=128, hop_length=32),
    enh_decoder="stft",
    enh_decoder_conf=dict(n_fft=128, hop_length=32),
    enh_separator="tcn",
    enh_separator_conf=dict(
        num_spk=1, layer=2, stack=1, bottleneck_dim=16, hidden_dim=16, kernel=3
    ),
    enh_criterions=[
        dict(
            name="si_snr",
            conf={},
            wrapper="fixed_order",
            wrapper_conf=dict(weight=0.3),
        )
    ],
    frontend="default",
    frontend_conf=dict(n_fft=128, hop_length=32, n_mels=20),
    specaug=None,
    normalize="utterance_mvn",
    normalize_conf={},
    asr_encoder="transformer",
    asr_encoder_conf=dict(
        output_size=16,
        attention_heads=2,
        linear_units=16,
        num_blocks=1,
        input_layer="conv2d",
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
    ),
    asr_decoder="transformer",
    asr_decoder_conf=dict(
        attention_heads=2,
        linear_units=16,
        num_blocks=1,
        dropout_rate=0.0,
        positional_dropout_rate=0.0,
    ),
    asr_model_conf=dict(
        ctc_weight=0.3, lsm_weight=0.1, extract_feats_in_collect_stats=False
    ),
    model_conf=dict(calc_enh_loss=True, bypass_enh_prob=0.0),
)


def tiny_args(**overrides) -> argparse.Namespace:
    """EnhS2TTask arguments (parser defaults + TINY_CONF + overrides)."""
    args = EnhS2TTask.get_parser().parse_args([])
    for key, value in {**copy.deepcopy(TINY_CONF), **overrides}.items():
        setattr(args, key, value)
    return args


def stock_model(args: argparse.Namespace, seed: int = 0):
    torch.manual_seed(seed)
    return EnhS2TTask.build_model(args)


def make_batch(lengths, utt_ids, seed: int = 0, text_len: int = 5):
    """A collated batch: noisy/clean waveforms zero-padded, text padded with -1."""
    g = torch.Generator().manual_seed(seed)
    batch_size, total = len(lengths), max(lengths)
    speech = torch.randn(batch_size, total, generator=g)
    ref = torch.randn(batch_size, total, generator=g)
    text = torch.randint(2, len(TOKENS) - 1, (batch_size, text_len), generator=g)
    text_lengths = torch.tensor([max(2, text_len - i) for i in range(batch_size)])
    for i, n in enumerate(lengths):
        speech[i, n:] = 0.0
        ref[i, n:] = 0.0
        text[i, text_lengths[i] :] = -1
    return dict(
        speech=speech,
        speech_lengths=torch.tensor(lengths),
        speech_ref1=ref,
        text_spk1=text,
        text_spk1_lengths=text_lengths,
        utt_id=list(utt_ids),
    )


def row(batch, i: int, utt_id: str):
    """Row ``i`` of a batch as a batch of one (same padded length)."""
    out = {k: v[i : i + 1] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    out["utt_id"] = [utt_id]
    return out


@pytest.fixture(scope="module")
def tiny_stock():
    return stock_model(tiny_args()).eval()
