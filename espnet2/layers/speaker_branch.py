"""The speaker classification branch of Adi et al. 2019 (section 4.1).

One gated convolution over time (kernel width 5, 200 feature maps, weight
normalisation, GLU), a linear layer from the 200 maps to the speakers (per
frame), then LogSumExp pooling over the valid frames to one score vector per
utterance. Trained with the negative log-likelihood of the speaker
(``speaker_nll``: cross-entropy of the pooled scores, label -1 = unknown).

The branch forks off an encoder after one of its layers. ``resolve_fork_layer``
turns the paper's IN / MID / OUT settings (after layers 2, 8 and 15 of 17) into
a layer of an encoder of any depth.
"""

from typing import Dict, Tuple, Union

import torch
import torch.nn.functional as F

from espnet2.layers.logsumexp_pooling import logsumexp_pool

# Adi et al. fork after layer 2 (IN), 8 (MID) and 15 (OUT) of 17.
FORK_PRESETS: Dict[str, float] = {"in": 2 / 17, "mid": 8 / 17, "out": 15 / 17}


def resolve_fork_layer(fork: Union[str, int], num_layers: int) -> int:
    """Return the 1-based encoder layer after which the branch forks.

    Args:
        fork: ``"in"``, ``"mid"``, ``"out"`` (the paper's fractions of the
            depth, rounded, at least 1) or an explicit layer number in
            ``[1, num_layers]``.
        num_layers: number of encoder layers.

    >>> [resolve_fork_layer(f, 17) for f in ("in", "mid", "out")]
    [2, 8, 15]
    >>> [resolve_fork_layer(f, 12) for f in ("in", "mid", "out")]
    [1, 6, 11]
    """
    if num_layers < 1:
        raise ValueError(f"the encoder has no layers to fork from ({num_layers})")
    if isinstance(fork, str) and not fork.isdigit():
        key = fork.lower()
        if key not in FORK_PRESETS:
            raise ValueError(
                f"unknown fork preset {fork!r}: use one of {sorted(FORK_PRESETS)} "
                f"or a layer number in [1, {num_layers}]"
            )
        return min(num_layers, max(1, round(FORK_PRESETS[key] * num_layers)))
    layer = int(fork)
    if not 1 <= layer <= num_layers:
        raise ValueError(
            f"fork layer {layer} is outside the encoder's layers [1, {num_layers}]"
        )
    return layer


class SpeakerBranch(torch.nn.Module):
    """Gated conv + linear + LogSumExp pooling: frames -> speaker scores.

    Args:
        input_size: feature size D of the representation it reads.
        num_speakers: number of speaker classes S.
        channels: feature maps of the gated convolution (paper: 200).
        kernel_size: its width in frames, odd (paper: 5).
        tau: LogSumExp temperature (paper: 1).
    """

    def __init__(
        self,
        input_size: int,
        num_speakers: int,
        channels: int = 200,
        kernel_size: int = 5,
        tau: float = 1.0,
    ):
        super().__init__()
        if num_speakers < 2:
            raise ValueError(f"a speaker branch needs >= 2 speakers, got {num_speakers}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length output), got {kernel_size}")
        if tau <= 0:
            raise ValueError(f"LogSumExp pooling needs tau > 0, got {tau}")
        self.num_speakers = num_speakers
        self.tau = tau
        conv = torch.nn.Conv1d(
            input_size, 2 * channels, kernel_size, padding=kernel_size // 2
        )
        self.conv = torch.nn.utils.parametrizations.weight_norm(conv)
        self.linear = torch.nn.Linear(channels, num_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Score the speakers of a batch.

        Args:
            x: (B, T, D) representation; frames at or beyond ``lengths`` are
                padding and do not influence the result.
            lengths: (B,) valid frames per utterance.

        Returns:
            (B, S) unnormalised speaker scores (log-softmax gives the posteriors).
        """
        valid = torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(
            x.device
        )[:, None]
        # Zero the padding so the convolution's receptive field cannot read it.
        x = x.masked_fill(~valid[:, :, None], 0.0)
        h = F.glu(self.conv(x.transpose(1, 2)), dim=1)  # (B, channels, T)
        frame_scores = self.linear(h.transpose(1, 2))  # (B, T, S)
        return logsumexp_pool(frame_scores, lengths, self.tau)


def speaker_nll(
    scores: torch.Tensor, labels: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean negative log-likelihood and accuracy over utterances with a label.

    Args:
        scores: (B, S) speaker scores.
        labels: (B,) speaker ids in [0, S), or -1 for "unknown speaker".

    Returns:
        ``(loss, accuracy, count)``: the mean NLL and accuracy over labelled
        utterances (both 0 when none is labelled: the loss then contributes no
        gradient) and the number of labelled utterances.
    """
    labels = labels.to(scores.device).long()
    if bool(((labels < -1) | (labels >= scores.size(1))).any()):
        raise ValueError(
            f"speaker labels must be in [0, {scores.size(1)}) or -1 (unknown), "
            f"got {labels.tolist()}"
        )
    known = labels >= 0
    count = known.sum()
    nll = F.cross_entropy(scores, labels.clamp(min=0), reduction="none")
    denom = count.clamp(min=1).to(scores.dtype)
    loss = (nll * known).sum() / denom
    correct = (scores.argmax(dim=1) == labels) & known
    accuracy = correct.sum().to(scores.dtype) / denom
    return loss, accuracy, count
