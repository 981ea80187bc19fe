"""LogSumExp pooling: between mean and max, limits in tau, padding ignored."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2.layers.logsumexp_pooling import LogSumExpPooling, logsumexp_pool


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 1])
    return x, lengths


def _valid_max_mean(x, lengths):
    mx = torch.stack([x[b, : int(n)].max(dim=0).values for b, n in enumerate(lengths)])
    mean = torch.stack([x[b, : int(n)].mean(dim=0) for b, n in enumerate(lengths)])
    return mx, mean


def test_matches_paper_formula_on_valid_frames():
    # s = 1/tau * log(1/T * sum_t exp(tau r_t)), T the valid frames, written directly.
    x, lengths = _batch()
    tau = 1.7
    s = logsumexp_pool(x, lengths, tau)
    for b, n in enumerate(lengths.tolist()):
        direct = torch.log(torch.exp(tau * x[b, :n]).mean(dim=0)) / tau
        assert torch.allclose(s[b], direct, atol=1e-12)


def test_tends_to_max_as_tau_grows():
    # s - max is in [-log(T)/tau, 0]: it vanishes like 1/tau.
    x, lengths = _batch()
    mx, _ = _valid_max_mean(x, lengths)
    for tau in (10.0, 100.0, 1e4):
        gap = (mx - logsumexp_pool(x, lengths, tau)).abs().max()
        assert gap <= torch.log(torch.tensor(7.0)) / tau + 1e-9
    # and it is numerically stable where exp(tau * r) overflows float32
    s32 = logsumexp_pool(x.float(), lengths, 1e4)
    assert torch.isfinite(s32).all()
    assert torch.allclose(s32.double(), mx, atol=1e-3)


def test_tends_to_mean_as_tau_goes_to_zero():
    # Second-order expansion: s = mean + tau/2 * var + O(tau^2).
    x, lengths = _batch()
    _, mean = _valid_max_mean(x, lengths)
    for tau in (1e-2, 1e-4):
        assert (logsumexp_pool(x, lengths, tau) - mean).abs().max() < 5 * tau


def test_padded_frames_change_nothing():
    # Replacing every padded value (even by huge numbers) leaves the output equal.
    x, lengths = _batch()
    s = logsumexp_pool(x, lengths, 1.0)
    x2 = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x2[b, n:] = 1e6 * (b + 1)
    assert torch.equal(logsumexp_pool(x2, lengths, 1.0), s)
    assert torch.equal(LogSumExpPooling(1.0)(x2, lengths), s)


def test_invalid_lengths_and_tau_are_rejected():
    x, _ = _batch()
    for bad in (torch.tensor([7, 0, 1]), torch.tensor([8, 1, 1])):
        try:
            logsumexp_pool(x, bad, 1.0)
        except ValueError as e:
            assert "lengths in [1, 7]" in str(e)
        else:
            raise AssertionError("bad lengths accepted")
    try:
        LogSumExpPooling(0.0)
    except ValueError as e:
        assert "tau > 0" in str(e)
    else:
        raise AssertionError("tau 0 accepted")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-20, 20), min_size=1, max_size=12),
    st.floats(1e-3, 50.0),
)
def test_lies_between_mean_and_max(values, tau):
    # Jensen: mean <= s; averaging exponentials: s <= max.
    x = torch.tensor(values, dtype=torch.float64).view(1, -1, 1)
    s = float(logsumexp_pool(x, torch.tensor([len(values)]), tau))
    # (The tolerance covers rounding: the mean of equal values may round below them.)
    assert sum(values) / len(values) - 1e-9 <= s <= max(values) + 1e-9
