"""RobustDistiller's denoising head: a magnitude mask predicted from the conv features.

As published: the student's conv features (C = 512 channels, 20 ms frames) are repeated
twice in time (10 ms), matched in length to the STFT of the noisy input (n_fft 512,
hop 160, window 400, Hann: 257 bins), and a 3-layer BLSTM (256 units per direction,
dropout 0.1) -> Dropout(0.1) -> Linear(512, 257) -> sigmoid gives a mask in [0, 1].
The enhanced magnitude is ``mask * |STFT(noisy)|``; the loss (``losses.denoising_loss``)
compares it with ``|STFT(clean)|``. The head is used in training only.

Deviation: a LayerNorm over the channels comes first. The published head reads the raw
conv output, whose scale depends on the extractor: a randomly initialised or tiny one
gives features of order 1e-4, and the head's gradient into the extractor (the part the
gradient rule acts on) vanishes next to the distillation gradient.
"""

from typing import Tuple

import torch
from torch import nn

# Frames the repeated conv features may differ from the STFT frames before we call it
# a configuration error rather than edge effects (the published code allows 4).
MAX_FRAME_MISMATCH = 4


class STFTMagnitude(nn.Module):
    """Waveform (B, L) -> magnitude (B, N, F) with N = 1 + L // hop (centred frames)."""

    def __init__(self, n_fft: int = 512, hop_length: int = 160, win_length: int = 400):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        spec = torch.stft(
            wav,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(wav.dtype),
            center=True,
            return_complex=True,
        )
        frames = torch.div(lengths, self.hop_length, rounding_mode="floor") + 1
        return spec.abs().transpose(1, 2), frames


class DenoisingHead(nn.Module):
    """Conv features (B, T, C) -> sigmoid mask (B, N, F) on the noisy STFT frames.

    Args:
        input_dim: conv channels C.
        n_freq: STFT bins F (257 for n_fft 512).
        upsample: conv frame shift / STFT hop (320 / 160 = 2).
        hidden, layers, dropout: the BLSTM (256, 3, 0.1 as published).
    """

    def __init__(
        self,
        input_dim: int,
        n_freq: int = 257,
        upsample: int = 2,
        hidden: int = 256,
        layers: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.upsample = upsample
        self.input_norm = nn.LayerNorm(input_dim)
        self.blstm = nn.LSTM(
            input_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * hidden, n_freq)

    def forward(self, conv_feats: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = conv_feats.repeat_interleave(self.upsample, dim=1)
        mismatch = num_frames - x.size(1)
        if abs(mismatch) > MAX_FRAME_MISMATCH:
            raise ValueError(
                f"the conv features ({conv_feats.size(1)} frames x {self.upsample}) do not "
                f"line up with the {num_frames} STFT frames: check that the conv stride is "
                "upsample x the STFT hop"
            )
        if mismatch > 0:  # repeat the last frame
            x = torch.cat([x, x[:, -1:].expand(-1, mismatch, -1)], dim=1)
        x = x[:, :num_frames]
        h, _ = self.blstm(self.input_norm(x))
        return torch.sigmoid(self.linear(self.dropout(h)))
