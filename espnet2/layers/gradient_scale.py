"""Gradient scaling: the identity forward, a factor on the gradient backward.

``scale_gradient(x, coeff)`` returns ``x`` unchanged; the gradient that flows
back through it is multiplied by ``coeff`` (a 0-d tensor, read when the gradient
flows, so no host/device synchronisation and in-place updates of ``coeff``
take effect). Two uses in this project:

* gradient reversal (:mod:`espnet2.layers.gradient_reversal`): ``-lambda``;
* one-backward gradient rules (the lagged weights of
  :class:`~espnet2.train.trainer_gradient_remedy.GradientRemedyTrainer`): the
  joint SE + ASR model scales the ASR loss's cotangent entering the enhanced
  signal by ``w_asr``, so that one backward of ``l_asr + w_se * l_se`` gives the
  SE front-end ``w_asr * G_ASR + w_se * G_SE`` and the ASR back-end ``G_ASR``.

Example (``coeff = 0.25``: the identity's gradient 1 becomes 0.25; with
``negate`` it becomes -0.25):

>>> import torch
>>> x = torch.ones(2, requires_grad=True)
>>> scale_gradient(x, torch.tensor(0.25)).sum().backward()
>>> x.grad
tensor([0.2500, 0.2500])
>>> x.grad = None
>>> scale_gradient(x, torch.tensor(0.25), negate=True).sum().backward()
>>> x.grad
tensor([-0.2500, -0.2500])
"""

from typing import Optional, Tuple

import torch


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; ``grad * (+-coeff)`` backward, ``coeff`` read at backward time."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, coeff: torch.Tensor, negate: bool
    ) -> torch.Tensor:
        # Keep a reference (not save_for_backward): the value is meant to be
        # read when the gradient flows, even if it was updated in place since.
        ctx.coeff = coeff
        ctx.negate = negate
        return x.view_as(x)

    @staticmethod
    def backward(
        ctx, grad: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], None]:
        coeff = ctx.coeff.to(dtype=grad.dtype, device=grad.device)
        return grad * (-coeff if ctx.negate else coeff), None, None


def scale_gradient(
    x: torch.Tensor, coeff: torch.Tensor, negate: bool = False
) -> torch.Tensor:
    """Return ``x`` unchanged; its gradient is multiplied by ``coeff`` (``-coeff``
    with ``negate``).

    Args:
        x: any tensor.
        coeff: 0-d tensor, read when the gradient flows back (not when the graph
            is built); it receives no gradient itself.
        negate: multiply by ``-coeff`` instead (gradient reversal).
    """
    if not torch.is_tensor(coeff) or coeff.dim() != 0:
        raise ValueError(
            f"scale_gradient: coeff must be a 0-d tensor, got {type(coeff).__name__}"
            + (f" of shape {tuple(coeff.shape)}" if torch.is_tensor(coeff) else "")
        )
    return _ScaleGradient.apply(x, coeff, negate)
