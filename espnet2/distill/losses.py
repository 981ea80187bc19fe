"""RobustDistiller's loss terms, averaged over valid (unpadded) frames only.

Per distilled layer (head) k, with prediction p and teacher target y at frame t:

    L1_k  = mean_{t, d} |p_{t,d} - y_{t,d}|
    cos_k = mean_t  -log sigmoid(cos(p_t, y_t))

and the denoising term ``mean_{n, f} |m_{n,f} |X_{n,f}| - |S_{n,f}||`` with m the mask,
X the noisy and S the clean STFT. The published total is
``L1 + 1 * cos + 2 * denoise`` (``cosine_weight`` 1, ``denoise_weight`` 2), the first two
averaged over the heads as well.
"""

from typing import Tuple

import torch
import torch.nn.functional as F


def _valid(frames: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) float, 1 at valid frames."""
    return (torch.arange(max_len, device=frames.device)[None, :] < frames[:, None]).float()


def distillation_losses(
    preds: torch.Tensor, targets: torch.Tensor, frames: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """preds, targets (B, n, T, D); frames (B,) -> (L1, cosine term), each (n,) per head.

    Raises ValueError on a shape mismatch or when no frame is valid.
    """
    if preds.shape != targets.shape:
        raise ValueError(f"predictions {tuple(preds.shape)} vs targets {tuple(targets.shape)}")
    valid = _valid(frames, preds.size(2))  # (B, T)
    count = valid.sum()
    if not count > 0:
        raise ValueError("no valid frame in the batch (all lengths are 0)")
    l1 = ((preds - targets).abs().mean(-1) * valid[:, None]).sum((0, 2)) / count
    cos = F.cosine_similarity(preds, targets, dim=-1)  # (B, n, T)
    cos_term = (-F.logsigmoid(cos) * valid[:, None]).sum((0, 2)) / count
    return l1, cos_term


def denoising_loss(
    mask: torch.Tensor, noisy_mag: torch.Tensor, clean_mag: torch.Tensor, frames: torch.Tensor
) -> torch.Tensor:
    """mask, noisy_mag, clean_mag (B, N, F); frames (B,) -> 0-dim L1 over valid frames."""
    if not mask.shape == noisy_mag.shape == clean_mag.shape:
        raise ValueError(
            f"mask {tuple(mask.shape)}, noisy {tuple(noisy_mag.shape)} and clean "
            f"{tuple(clean_mag.shape)} magnitudes must have one shape"
        )
    valid = _valid(frames, mask.size(1))
    err = ((mask * noisy_mag - clean_mag).abs().mean(-1) * valid).sum()
    return err / valid.sum()


def mean_frame_cosine(a: torch.Tensor, b: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """a, b (B, T, D); frames (B,) -> (B,) mean over valid frames of cos(a_t, b_t)."""
    valid = _valid(frames, a.size(1))
    return (F.cosine_similarity(a, b, dim=-1) * valid).sum(1) / valid.sum(1).clamp(min=1)
