"""The student's corruption: SNR, operation draw, padding, reverberation power."""

import collections

import pytest
import soundfile
import torch

from distill_testlib import waves
from espnet2.distill.augmentation import (
    OPERATIONS,
    Corruptor,
    mix_at_snr,
    reverberate,
    synthetic_rir,
)


@pytest.mark.parametrize("snr", [0.0, 7.0, 20.0])
def test_mixed_noise_is_at_the_requested_snr(snr):
    # SNR is defined on powers: 10 log10(P_speech / P_added); the added part is the
    # mixture minus the speech.
    g = torch.Generator().manual_seed(0)
    speech, noise = torch.randn(8000, generator=g), 3.0 * torch.randn(8000, generator=g)
    added = mix_at_snr(speech, noise, snr) - speech
    measured = 10 * torch.log10(speech.pow(2).mean() / added.pow(2).mean())
    assert measured.item() == pytest.approx(snr, abs=0.01)


def test_the_four_operations_are_drawn_with_equal_probability_and_snr_in_range():
    x, lengths = waves(batch=4, seconds=0.3)
    corrupt = Corruptor()
    g = torch.Generator().manual_seed(3)
    counts = collections.Counter()
    snrs = []
    for _ in range(100):
        _, ops, snr = corrupt(x, lengths, generator=g)
        counts.update(OPERATIONS[i] for i in ops.tolist())
        snrs += [s for s in snr.tolist() if s == s]
    # 400 draws, p = 1/4 each: the standard deviation of a count is sqrt(400 * 3/16) ~ 8.7,
    # so every count lies in 100 +/- 35 (4 sigma) unless the draw is biased.
    assert set(counts) == set(OPERATIONS)
    assert all(65 <= c <= 135 for c in counts.values()), counts
    assert min(snrs) >= 0 and max(snrs) <= 20 and all(s == int(s) for s in snrs)
    assert len(set(snrs)) > 15  # integers across the whole 0..20 range


def test_clean_draw_is_unchanged_and_padding_stays_zero():
    x, lengths = waves(batch=3)
    out, ops, _ = Corruptor()(x, lengths, generator=torch.Generator().manual_seed(1))
    for b in range(3):
        assert torch.all(out[b, lengths[b]:] == 0)
        if OPERATIONS[ops[b]] == "clean":
            assert torch.equal(out[b], x[b])
        else:
            assert not torch.equal(out[b], x[b])
    only_clean = Corruptor(operations=["clean"])(x, lengths)[0]
    assert torch.equal(only_clean, x)


def test_reverberation_keeps_the_power_and_smears_an_impulse_with_the_rir():
    rir = synthetic_rir(16000, 0.3, torch.Generator().manual_seed(0))
    assert rir[0] == 1.0 and rir.numel() == 4800
    impulse = torch.zeros(8000)
    impulse[100] = 1.0
    wet = reverberate(impulse, rir)
    # the convolution of a delayed impulse is the delayed RIR, rescaled to the dry power
    expected = torch.zeros(8000)
    expected[100:4900] = rir
    expected *= torch.sqrt(impulse.pow(2).mean() / expected.pow(2).mean())
    assert torch.allclose(wet, expected, atol=1e-5)


def test_noise_and_rir_files_are_used_and_bad_lists_named(tmp_path):
    noise_file = tmp_path / "n.wav"
    soundfile.write(noise_file, [0.5, -0.5] * 400, 16000)  # a 8 kHz square tone
    (tmp_path / "noise.list").write_text(f"{noise_file}\n")
    corrupt = Corruptor(noise_list=str(tmp_path / "noise.list"), p_file_noise=1.0,
                        operations=["noise"], snr_low=0, snr_high=0)
    x = torch.zeros(1, 1000)
    x[0, ::2] = 0.1
    out, _, _ = corrupt(x, torch.tensor([1000]))
    added = out - x
    # tiled file noise: values alternate +-g at 0 dB, so |added| equals the speech RMS
    assert torch.allclose(added.abs(), torch.full_like(added, x.pow(2).mean().sqrt().item()), atol=1e-6)
    (tmp_path / "empty.list").write_text("\n")
    with pytest.raises(ValueError, match="empty.list"):
        Corruptor(rir_list=str(tmp_path / "empty.list"))
    soundfile.write(tmp_path / "r8k.wav", [1.0, 0.5], 8000)
    (tmp_path / "rir.list").write_text(f"{tmp_path / 'r8k.wav'}\n")
    with pytest.raises(ValueError, match="r8k.wav: sampling rate 8000"):
        Corruptor(rir_list=str(tmp_path / "rir.list"), operations=["reverb"])(x, torch.tensor([1000]))
