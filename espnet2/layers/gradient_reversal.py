"""Gradient reversal (Ganin & Lempitsky 2015; used by Adi et al. 2019 for speakers).

The layer is the identity in the forward pass and multiplies the incoming
gradient by ``-lambda`` in the backward pass, so the layers below it *maximise*
the loss that the layers above it minimise.

``lambda`` lives in a 0-d tensor buffer of :class:`GradientReversal`. The
backward pass reads the buffer's value when the gradient flows, so a schedule
can change it at any time (``set_lambda``) without rebuilding the module or the
optimizer, and no host/device synchronisation is needed (the multiplication is
a tensor op). Being a buffer, the value is saved in checkpoints.

Example (``lambda = 0.5``: the identity's gradient 1 becomes -0.5):

>>> import torch
>>> grl = GradientReversal(0.5)
>>> x = torch.ones(3, requires_grad=True)
>>> grl(x).sum().backward()
>>> x.grad
tensor([-0.5000, -0.5000, -0.5000])
"""

import math

import torch

from espnet2.layers.gradient_scale import scale_gradient


def reverse_gradient(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """Return ``x`` unchanged; its gradient is multiplied by ``-coeff``.

    Args:
        x: any tensor.
        coeff: 0-d tensor (lambda >= 0), read when the gradient flows back.
    """
    return scale_gradient(x, coeff, negate=True)


class GradientReversal(torch.nn.Module):
    """Gradient reversal layer with a settable coefficient.

    Args:
        lambda_: initial coefficient (>= 0). The backward pass returns
            ``-lambda_ * grad``; ``lambda_ = 0`` blocks the gradient.
    """

    def __init__(self, lambda_: float = 1.0):
        super().__init__()
        self.register_buffer("lambda_", torch.tensor(0.0))
        self.set_lambda(lambda_)

    def set_lambda(self, value) -> None:
        """Set the coefficient in place (a float or a 0-d tensor, >= 0)."""
        if not torch.is_tensor(value) and value < 0:
            raise ValueError(f"gradient reversal lambda must be >= 0, got {value}")
        with torch.no_grad():
            self.lambda_.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity on ``x`` of any shape; reverses and scales its gradient."""
        return reverse_gradient(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={float(self.lambda_):g}"


def dann_lambda(progress: float, lambda_max: float = 0.2, gamma: float = 10.0) -> float:
    """The DANN ramp (Ganin et al. 2016) capped at ``lambda_max`` (Adi et al.: 0.2).

    ``lambda_p = lambda_max * (2 / (1 + exp(-gamma * p)) - 1)`` for the training
    progress ``p`` in [0, 1] (values outside are clamped). It rises from 0 at
    ``p = 0`` to ``lambda_max * tanh(gamma / 2)`` (0.99991 * lambda_max for
    gamma = 10) at ``p = 1``.

    >>> dann_lambda(0.0), round(dann_lambda(0.5), 6), round(dann_lambda(1.0), 6)
    (0.0, 0.197323, 0.199982)
    """
    p = min(max(float(progress), 0.0), 1.0)
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
