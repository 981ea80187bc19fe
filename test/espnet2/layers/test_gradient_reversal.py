"""Gradient reversal: identity forward, -lambda backward, lambda settable; DANN ramp."""

import math

import pytest
import torch

from espnet2.layers.gradient_reversal import GradientReversal, dann_lambda


def test_forward_is_identity():
    # The branch must see exactly the encoder's representation.
    x = torch.randn(2, 5, 3)
    assert torch.equal(GradientReversal(0.7)(x), x)


@pytest.mark.parametrize("lam", [0.0, 0.2, 1.0, 3.5])
def test_gradient_is_minus_lambda_times_identity_gradient(lam):
    # Same upstream gradient through the identity and through the layer: the
    # layer's input gradient must be exactly -lambda times the identity's.
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(4, 6)
    (g_identity,) = torch.autograd.grad((x * w).sum() ** 2, x)
    (g_reversed,) = torch.autograd.grad((GradientReversal(lam)(x) * w).sum() ** 2, x)
    assert torch.allclose(g_reversed, -lam * g_identity, rtol=1e-6, atol=0)


def test_lambda_changed_between_backward_passes_takes_effect():
    # A schedule updates lambda in place during training; no rebuild. The value
    # is read when the gradient flows, so it applies even to a graph built before.
    grl = GradientReversal(0.5)
    x = torch.ones(3, requires_grad=True)
    grl(x).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))
    x.grad = None
    grl.set_lambda(0.2)
    grl(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.2))
    y = grl(x).sum()  # graph built with lambda 0.2 ...
    grl.set_lambda(0.05)  # ... changed before the backward pass
    x.grad = None
    y.backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.05))


def test_lambda_is_a_buffer_saved_in_state_dict():
    # Resuming from a checkpoint must restore the current coefficient.
    grl = GradientReversal(0.3)
    other = GradientReversal(0.0)
    other.load_state_dict(grl.state_dict())
    assert float(other.lambda_) == pytest.approx(0.3)


def test_negative_lambda_is_rejected():
    with pytest.raises(ValueError, match="lambda must be >= 0"):
        GradientReversal(-0.1)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_dann_schedule_matches_formula(p):
    # lambda_p = lambda_max * (2 / (1 + exp(-gamma p)) - 1), written out by hand:
    # p=0 -> 0; p=0.5 -> 0.2 * (2/(1+e^-5) - 1); p=1 -> 0.2 * (2/(1+e^-10) - 1).
    expected = {0.0: 0.0, 0.5: 0.2 * (2 / (1 + math.exp(-5)) - 1), 1.0: 0.2 * (2 / (1 + math.exp(-10)) - 1)}
    assert dann_lambda(p, lambda_max=0.2, gamma=10.0) == pytest.approx(expected[p], abs=1e-12)


def test_dann_schedule_is_monotone_and_capped():
    values = [dann_lambda(i / 20, 0.2, 10.0) for i in range(21)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] < 0.2 and values[-1] == pytest.approx(0.2 * math.tanh(5.0))
    assert dann_lambda(-1.0) == 0.0 and dann_lambda(2.0) == dann_lambda(1.0)
