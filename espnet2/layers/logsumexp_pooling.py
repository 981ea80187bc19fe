"""LogSumExp pooling over time (Adi et al. 2019, section 3; Palaz et al. 2016).

For one utterance with ``T`` valid frames ``r_1 .. r_T`` (each a vector), the
pooled vector is, per dimension,

    s = 1/tau * log( 1/T * sum_t exp(tau * r_t) )

It lies between the mean (``tau -> 0``) and the max (``tau -> inf``) of the
frames: by Jensen's inequality ``mean <= s``, and ``s <= max`` because the
average of exponentials is at most the largest one. Padded frames (``t >= T``)
are excluded from both the sum and ``T``. It is computed as
``(logsumexp(tau * r) - log T) / tau`` with ``torch.logsumexp``, which is stable
for large ``tau * r``.

Example (frames 0 and 2, tau = 1: log((1 + e^2) / 2) = 1.4338):

>>> import torch
>>> x = torch.tensor([[[0.0], [2.0], [99.0]]])  # (B=1, T=3, C=1), frame 3 is padding
>>> LogSumExpPooling(tau=1.0)(x, torch.tensor([2]))
tensor([[1.4338]])
"""

import math

import torch


def logsumexp_pool(x: torch.Tensor, lengths: torch.Tensor, tau: float) -> torch.Tensor:
    """Pool ``x`` over time with the length-normalised LogSumExp.

    Args:
        x: (B, T, C) frame representations.
        lengths: (B,) number of valid frames per utterance, each in [1, T].
        tau: temperature > 0.

    Returns:
        (B, C) pooled representations.
    """
    if tau <= 0:
        raise ValueError(f"LogSumExp pooling needs tau > 0, got {tau}")
    if x.dim() != 3:
        raise ValueError(f"expected x of shape (B, T, C), got {tuple(x.shape)}")
    lengths = lengths.to(x.device)
    if lengths.shape != (x.size(0),):
        raise ValueError(
            f"expected lengths of shape ({x.size(0)},), got {tuple(lengths.shape)}"
        )
    if bool((lengths < 1).any()) or bool((lengths > x.size(1)).any()):
        raise ValueError(
            f"LogSumExp pooling needs lengths in [1, {x.size(1)}], got {lengths.tolist()}"
        )
    frames = torch.arange(x.size(1), device=x.device)
    valid = frames[None, :] < lengths[:, None]  # (B, T)
    scaled = (tau * x).masked_fill(~valid[:, :, None], -math.inf)
    log_t = torch.log(lengths.to(x.dtype)).unsqueeze(1)  # (B, 1)
    return (torch.logsumexp(scaled, dim=1) - log_t) / tau


class LogSumExpPooling(torch.nn.Module):
    """Module form of :func:`logsumexp_pool`: (B, T, C), (B,) -> (B, C)."""

    def __init__(self, tau: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"LogSumExp pooling needs tau > 0, got {tau}")
        self.tau = tau

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return logsumexp_pool(x, lengths, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}"
