"""The RobustDistiller student: conv extractor + 2 transformer layers + prediction heads.

As published (DistilHuBERT's student with RobustDistiller's settings): the wav2vec 2.0
conv extractor, ``num_layers`` (2) transformer layers, and one head per distilled teacher
layer: ``Linear(D, n D) -> GELU -> n x Linear(D, D_teacher)`` ("expand-last"). The conv
gradient is scaled by ``feature_grad_mult`` (0.1 as published). The denoising head lives
in :mod:`espnet2.distill.denoising_head` and reads ``conv_feats``.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from espnet2.distill.wav2vec2_blocks import (
    WAV2VEC2_CONV_LAYERS,
    ConvFeatureExtractor,
    TransformerStack,
)


class GradMultiply(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class PredictionHeads(nn.Module):
    """(B, T, D) -> (B, n, T, D_teacher): shared expansion, one output layer per head."""

    def __init__(self, dim: int, num_heads: int, target_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.expand = nn.Linear(dim, num_heads * dim)
        self.activation = nn.GELU()
        self.weight = nn.Parameter(torch.empty(num_heads, dim, target_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, target_dim))
        bound = dim**-0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.activation(self.expand(x)).view(b, t, self.num_heads, d)
        out = torch.einsum("btnd,nde->bnte", h, self.weight)
        return out + self.bias[None, :, None, :]


class DistillStudent(nn.Module):
    """Raw waveform -> student hidden states and teacher-layer predictions.

    Args:
        conv_layers: (channels, kernel, stride) per conv layer (default wav2vec 2.0's).
        dim, ffn_dim, num_heads, num_layers, pos_conv_kernel, pos_conv_groups, dropout:
            the transformer (default: 768, 3072, 12, 2, 128, 16, 0.1 as published).
        num_pred_heads: number of distilled teacher layers (3 for layers 4, 8, 12).
        target_dim: the teacher's hidden size.
        feature_grad_mult: gradient scale on the conv extractor's output.
    """

    def __init__(
        self,
        conv_layers: Sequence[Sequence[int]] = WAV2VEC2_CONV_LAYERS,
        dim: int = 768,
        ffn_dim: int = 3072,
        num_heads: int = 12,
        num_layers: int = 2,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
        num_pred_heads: int = 3,
        target_dim: int = 768,
        feature_grad_mult: float = 0.1,
    ):
        super().__init__()
        self.feature_extractor = ConvFeatureExtractor(conv_layers)
        self.encoder = TransformerStack(
            self.feature_extractor.output_size,
            dim=dim,
            ffn_dim=ffn_dim,
            num_heads=num_heads,
            num_layers=num_layers,
            pos_conv_kernel=pos_conv_kernel,
            pos_conv_groups=pos_conv_groups,
            dropout=dropout,
        )
        # No heads (num_pred_heads 0): the student as a front-end, after distillation.
        self.heads = PredictionHeads(dim, num_pred_heads, target_dim) if num_pred_heads else None
        self.feature_grad_mult = feature_grad_mult

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> Dict[str, object]:
        """wav (B, L), lengths (B,) samples -> dict with

        * ``conv_feats`` (B, T, C): the conv extractor output (after the gradient scale),
        * ``hidden``: list of ``num_layers + 1`` tensors (B, T, D) (index 0 = projected
          conv features + positional embedding, i = after layer i),
        * ``preds`` (B, n, T, D_teacher) (None without heads), ``frames`` (B,) valid frames.
        """
        feats, frames = self.feature_extractor(wav, lengths)
        if self.feature_grad_mult != 1.0 and torch.is_grad_enabled():
            feats = GradMultiply.apply(feats, self.feature_grad_mult)
        hidden = self.encoder(feats, frames)
        preds = self.heads(hidden[-1]) if self.heads is not None else None
        return {"conv_feats": feats, "hidden": hidden, "preds": preds, "frames": frames}

    def features(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """All hidden states (``num_layers + 1`` tensors (B, T, D)) and frames (B,); no heads."""
        feats, frames = self.feature_extractor(wav, lengths)
        return self.encoder(feats, frames), frames
