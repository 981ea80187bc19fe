"""wav2vec 2.0-style building blocks shared by the student and the tiny teacher.

Written from the published architecture (Baevski et al. 2020, as used by DistilHuBERT
and RobustDistiller): a stack of 1-D convolutions on the raw waveform, a projection
to the transformer width, a grouped convolutional positional embedding, and post-LN
transformer layers. Shapes use B = batch, L = samples, T = frames, C = conv channels,
D = transformer width.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

# (channels, kernel, stride) per layer: wav2vec 2.0 / HuBERT / WavLM Base. The total
# stride is 320 samples (20 ms at 16 kHz) and the receptive field 400 samples (25 ms).
WAV2VEC2_CONV_LAYERS: Tuple[Tuple[int, int, int], ...] = (
    (512, 10, 5),
    (512, 3, 2),
    (512, 3, 2),
    (512, 3, 2),
    (512, 3, 2),
    (512, 2, 2),
    (512, 2, 2),
)


def conv_output_lengths(
    lengths: torch.Tensor, conv_layers: Sequence[Sequence[int]]
) -> torch.Tensor:
    """Frames produced from ``lengths`` samples: ``floor((n - k) / s) + 1`` per layer."""
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool, True at padded positions (PyTorch's key_padding_mask sense)."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class ConvFeatureExtractor(nn.Module):
    """Waveform (B, L) -> features (B, T, C).

    Each layer is Conv1d (no bias) + GELU; the first is followed by a GroupNorm with one
    group per channel (wav2vec 2.0's "default" mode).
    """

    def __init__(self, conv_layers: Sequence[Sequence[int]] = WAV2VEC2_CONV_LAYERS):
        super().__init__()
        self.conv_layers = [tuple(int(v) for v in layer) for layer in conv_layers]
        if not self.conv_layers or any(len(layer) != 3 for layer in self.conv_layers):
            raise ValueError(
                f"conv_layers must be (channels, kernel, stride) triples, got {conv_layers}"
            )
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(self.conv_layers):
            layers = [nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=False)]
            if i == 0:
                layers.append(nn.GroupNorm(channels, channels, affine=True))
            layers.append(nn.GELU())
            blocks.append(nn.Sequential(*layers))
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)

    @property
    def output_size(self) -> int:
        return self.conv_layers[-1][0]

    @property
    def total_stride(self) -> int:
        stride = 1
        for _, _, s in self.conv_layers:
            stride *= s
        return stride

    @property
    def receptive_field(self) -> int:
        field, jump = 1, 1
        for _, kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """wav (B, L) float, lengths (B,) samples -> feats (B, T, C), frame lengths (B,)."""
        if wav.dim() != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(wav.shape)}")
        if wav.size(1) < self.receptive_field:
            raise ValueError(
                f"waveform of {wav.size(1)} samples is shorter than the extractor's receptive "
                f"field ({self.receptive_field} samples)"
            )
        x = wav.unsqueeze(1)
        for block in self.blocks:
            x = block(x)
        frames = conv_output_lengths(lengths, self.conv_layers).clamp(min=0, max=x.size(2))
        return x.transpose(1, 2), frames


class PositionalConv(nn.Module):
    """Grouped convolutional relative positional embedding: (B, T, D) -> (B, T, D).

    Conv1d(D, D, kernel, padding kernel // 2, groups) + GELU; with an even kernel the
    extra last frame is dropped so the output length equals the input's.
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16):
        super().__init__()
        if dim % groups:
            raise ValueError(f"positional conv groups ({groups}) must divide the width ({dim})")
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        self.trim = 1 if kernel % 2 == 0 else 0
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return self.activation(y).transpose(1, 2)


class TransformerStack(nn.Module):
    """Conv features (B, T, C) -> hidden states after each of ``num_layers`` layers.

    LayerNorm(C) -> Linear(C, D) ("post_extract_proj") -> dropout -> + positional conv
    -> LayerNorm(D) -> post-LN transformer layers (GELU FFN). ``forward`` returns
    ``num_layers + 1`` tensors (B, T, D): index 0 is the input of the first layer,
    index i the output of layer i, as Hugging Face's ``hidden_states`` counts them.
    """

    def __init__(
        self,
        input_dim: int,
        dim: int = 768,
        ffn_dim: int = 3072,
        num_heads: int = 12,
        num_layers: int = 2,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.dim = dim
        self.feature_norm = nn.LayerNorm(input_dim)
        self.post_extract_proj = nn.Linear(input_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.pos_conv = PositionalConv(dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                num_heads,
                dim_feedforward=ffn_dim,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=False,
            )
            for _ in range(num_layers)
        )

    def forward(
        self, feats: torch.Tensor, frames: torch.Tensor, num_layers: Optional[int] = None
    ) -> List[torch.Tensor]:
        """feats (B, T, C), frames (B,) -> [hidden_0, ..., hidden_n], each (B, T, D).

        ``num_layers`` stops after that many layers (default: all). Padded frames are
        masked in self-attention and zeroed in every output.
        """
        pad = padding_mask(frames, feats.size(1))
        keep = (~pad).unsqueeze(-1).to(feats.dtype)
        x = self.dropout(self.post_extract_proj(self.feature_norm(feats))) * keep
        x = self.layer_norm(x + self.pos_conv(x)) * keep
        hidden = [x]
        for layer in self.layers[: len(self.layers) if num_layers is None else num_layers]:
            x = layer(x, src_key_padding_mask=pad) * keep
            hidden.append(x)
        return hidden
