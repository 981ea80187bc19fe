"""Speaker branch on an ASR encoder: multi-task (MT) or adversarial (AL) training.

Adi et al. 2019 ("To reverse the gradient or not") fork a speaker classifier
(:class:`~espnet2.layers.speaker_branch.SpeakerBranch`) off the encoder after
layer k and train it with the speaker NLL ``L_spk``. Where its gradient enters
the encoder decides the method:

===== ================================ ==================== ====================
mode  objective added to the ASR loss  branch receives      encoder receives
===== ================================ ==================== ====================
mt    ``lambda_mt * L_spk``            ``lambda_mt dL_spk`` ``+lambda_mt dL_spk``
al    ``L_spk`` behind gradient        ``dL_spk``           ``-lambda_p dL_spk``
      reversal with ``lambda_p``
===== ================================ ==================== ====================

``lambda_mt`` is static (paper: 0.5). ``lambda_p`` follows the capped DANN ramp
``lambda_max * (2 / (1 + exp(-gamma q)) - 1)`` (paper: lambda_max 0.2; gamma 10,
DANN's value) over the progress ``q`` of the joint stage (below).

Staged training (the paper's procedure, "crucial for AL"): by training progress
``p``, stage ``asr`` (``p < branch_only_from``) trains the ASR model and the
branch, but no branch gradient enters the encoder; stage ``branch``
(``branch_only_from <= p < joint_from``) trains the branch alone (the returned
loss is the speaker term only, so the other parameters get no gradient and
stock optimizers leave them untouched); stage ``joint`` (``p >= joint_from``)
couples them as in the table, with ``q = (p - joint_from) / (1 - joint_from)``.
Both fractions default to 0 (joint from the start).

Progress. ESPnet's stock ``Trainer`` tells the model nothing about progress, so
the adversary counts its own training forward calls in the buffer ``step``
(saved in checkpoints, so ``--resume`` continues the schedule) and divides by
``total_steps``: the number of training batches of the whole run,
``max_epoch * batches per epoch`` (``max_epoch * num_iters_per_epoch`` when that
option is set; with ``accum_grad`` > 1 count batches, not optimizer steps).
Under DDP every rank counts its own batches, which are equally many.

Inference. The branch is a separate sub-module ``speaker_adversary.*`` of the
model; ESPnet's stock inference builds the stock model class from
``config.yaml`` and loads checkpoints with ``strict=False``, which drops these
keys: the branch is discarded, as in the paper.

Validation (``model.eval()``) never changes the loss; when the batch carries
speaker labels the speaker loss and accuracy are reported as stats.
"""

import argparse
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.layers.gradient_reversal import GradientReversal, dann_lambda
from espnet2.layers.speaker_branch import SpeakerBranch, resolve_fork_layer, speaker_nll
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.utils.nested_dict_action import NestedDictAction

MODES = ("mt", "al")
STAGES = ("asr", "branch", "joint")


@dataclass
class EncoderTap:
    """What a forward hook captured from one encoder layer."""

    layer: int
    outputs: List[Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def single(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The captured ``(x (B, T, D), lengths (B,))``; exactly one call expected."""
        if len(self.outputs) != 1:
            raise RuntimeError(
                f"encoder layer {self.layer} ran {len(self.outputs)} times in one "
                "forward; the speaker branch needs exactly one run (layer drop "
                "and repeated encoder calls are not supported)"
            )
        return self.outputs[0]


def _layer_output(output) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frames and lengths from an ESPnet encoder layer's output ``(x, mask, ...)``.

    ``x`` is ``(B, T, D)`` or, with relative positions, ``((B, T, D), pos_emb)``;
    ``mask`` is ``(B, 1, T)`` (or ``(B, T)``), True on valid frames.
    """
    if not isinstance(output, (tuple, list)) or len(output) < 2:
        raise TypeError(
            "expected an ESPnet encoder layer returning (x, mask, ...), got "
            f"{type(output).__name__}"
        )
    x, mask = output[0], output[1]
    if isinstance(x, (tuple, list)):
        x = x[0]
    lengths = mask.reshape(mask.size(0), -1).sum(dim=1)
    return x, lengths


def encoder_layers(encoder: torch.nn.Module) -> torch.nn.Module:
    """The layer stack ``encoder.encoders`` of an ESPnet encoder (Conformer, ...)."""
    layers = getattr(encoder, "encoders", None)
    if layers is None:
        raise TypeError(
            f"{type(encoder).__name__} has no 'encoders' layer stack; the speaker "
            "branch forks off ESPnet Transformer/Conformer-style encoders"
        )
    return layers


@contextmanager
def tap_encoder_layers(
    encoder: torch.nn.Module, layers: List[int]
) -> Iterator[Dict[int, EncoderTap]]:
    """Capture the outputs of 1-based encoder ``layers`` while the block runs.

    The captured tensors stay attached to the graph. Hooks are removed on exit.
    """
    stack = encoder_layers(encoder)
    taps = {k: EncoderTap(k) for k in layers}
    handles = []
    try:
        for k, tap in taps.items():
            if not 1 <= k <= len(stack):
                raise ValueError(f"encoder layer {k} outside [1, {len(stack)}]")

            def hook(_module, _inputs, output, tap=tap):
                tap.outputs.append(_layer_output(output))

            handles.append(stack[k - 1].register_forward_hook(hook))
        yield taps
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class SpeakerTerm:
    """The speaker branch's contribution to one training/validation forward.

    ``loss`` is None when nothing is to be added (validation). When
    ``replaces_task_loss`` is True (stage ``branch``), ``loss`` replaces the ASR
    loss instead of being added to it. ``stats`` are detached 0-d tensors.
    """

    loss: Optional[torch.Tensor]
    replaces_task_loss: bool
    stats: Dict[str, torch.Tensor]


class SpeakerAdversary(torch.nn.Module):
    """The speaker branch plus its coupling (mode, lambda, stage) to the encoder.

    Args:
        input_size: encoder feature size D.
        num_layers: number of encoder layers.
        num_speakers: speaker classes S (ids 0..S-1 in ``spk_labels``).
        fork: ``in`` / ``mid`` / ``out`` or a 1-based layer number (see
            :func:`~espnet2.layers.speaker_branch.resolve_fork_layer`).
        mode: ``mt`` or ``al``.
        lambda_mt: MT weight of the speaker loss (paper: 0.5).
        lambda_max: AL cap of the reversal coefficient (paper: 0.2).
        gamma: AL ramp steepness (DANN: 10).
        total_steps: training batches in the whole run (needed for ``al`` and
            for stages; 0 means "unknown": allowed only for ``mt`` without stages).
        branch_only_from, joint_from: stage boundaries as progress fractions.
        channels, kernel_size, tau: the branch (paper: 200, 5, 1).
    """

    def __init__(
        self,
        input_size: int,
        num_layers: int,
        num_speakers: int,
        fork: Union[str, int] = "mid",
        mode: str = "al",
        lambda_mt: float = 0.5,
        lambda_max: float = 0.2,
        gamma: float = 10.0,
        total_steps: int = 0,
        branch_only_from: float = 0.0,
        joint_from: float = 0.0,
        channels: int = 200,
        kernel_size: int = 5,
        tau: float = 1.0,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"speaker branch mode must be one of {MODES}, got {mode!r}")
        if not 0.0 <= branch_only_from <= joint_from <= 1.0:
            raise ValueError(
                "speaker branch stages need 0 <= branch_only_from <= joint_from <= 1, "
                f"got branch_only_from={branch_only_from}, joint_from={joint_from}"
            )
        if lambda_mt < 0 or lambda_max < 0 or gamma <= 0:
            raise ValueError(
                "speaker branch needs lambda_mt >= 0, lambda_max >= 0, gamma > 0; got "
                f"{lambda_mt}, {lambda_max}, {gamma}"
            )
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        if total_steps == 0 and (mode == "al" or joint_from > 0):
            raise ValueError(
                "speaker branch: total_steps (training batches of the whole run, "
                "max_epoch * batches per epoch) is required for mode 'al' and for "
                "staged training, which follow the training progress"
            )
        self.fork_layer = resolve_fork_layer(fork, num_layers)
        self.mode = mode
        self.lambda_mt = float(lambda_mt)
        self.lambda_max = float(lambda_max)
        self.gamma = float(gamma)
        self.total_steps = int(total_steps)
        self.branch_only_from = float(branch_only_from)
        self.joint_from = float(joint_from)
        self.branch = SpeakerBranch(input_size, num_speakers, channels, kernel_size, tau)
        self.reversal = GradientReversal(0.0)
        # Training forward calls so far; a buffer so checkpoints carry it.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_encoder(cls, encoder: torch.nn.Module, **conf) -> "SpeakerAdversary":
        """Build one sized for an ESPnet encoder (``output_size()``, ``encoders``)."""
        return cls(
            input_size=encoder.output_size(),
            num_layers=len(encoder_layers(encoder)),
            **conf,
        )

    def progress(self) -> float:
        """Training progress p in [0, 1] before the current step (1 if unknown)."""
        if self.total_steps == 0:
            return 1.0
        return min(1.0, int(self.step) / self.total_steps)

    def stage(self, p: float) -> str:
        """``asr``, ``branch`` or ``joint`` at progress ``p``."""
        if p < self.branch_only_from:
            return "asr"
        if p < self.joint_from:
            return "branch"
        return "joint"

    def encoder_coefficient(self, p: float) -> float:
        """Signed factor on ``dL_spk/dr`` that reaches the encoder at progress ``p``.

        ``+lambda_mt`` (mt) or ``-lambda_p`` (al) in the joint stage, else 0.
        """
        if self.stage(p) != "joint":
            return 0.0
        if self.mode == "mt":
            return self.lambda_mt
        q = 1.0 if self.joint_from >= 1.0 else (p - self.joint_from) / (1.0 - self.joint_from)
        return 0.0 - dann_lambda(q, self.lambda_max, self.gamma)  # never -0.0

    @contextmanager
    def tap(self, encoder: torch.nn.Module) -> Iterator[EncoderTap]:
        """Capture the fork layer's output during the enclosed encoder forward."""
        with tap_encoder_layers(encoder, [self.fork_layer]) as taps:
            yield taps[self.fork_layer]

    def speaker_term(
        self,
        tap: EncoderTap,
        spk_labels: Optional[torch.Tensor],
        training: bool,
    ) -> SpeakerTerm:
        """Run the branch on the captured representation and couple it.

        Args:
            tap: the fork layer's capture from this forward.
            spk_labels: (B, 1) or (B,) speaker ids (-1: unknown), or None.
            training: the model's mode; a training call advances ``step``.
        """
        if spk_labels is None:
            if training:
                raise ValueError(
                    "the speaker branch needs speaker labels in training: add "
                    "'<data dir>/utt2spkid,spk_labels,text_int' to "
                    "--train_data_path_and_name_and_type"
                )
            return SpeakerTerm(None, False, {})
        labels = spk_labels.reshape(spk_labels.size(0), -1)
        if labels.size(1) != 1:
            raise ValueError(
                f"spk_labels must hold one speaker id per utterance, got shape "
                f"{tuple(spk_labels.shape)}"
            )
        labels = labels[:, 0]
        x, lengths = tap.single()
        if labels.size(0) != x.size(0):
            raise ValueError(
                f"{labels.size(0)} speaker labels for a batch of {x.size(0)} "
                "(the speaker branch supports single-speaker ASR)"
            )
        p = self.progress()
        stage, coeff = self.stage(p), self.encoder_coefficient(p)
        if not training or stage != "joint":
            feats = x.detach()  # validation, or no branch gradient into the encoder
        elif self.mode == "al":
            self.reversal.set_lambda(-coeff)
            feats = self.reversal(x)
        else:
            feats = x
        loss_spk, acc_spk, _ = speaker_nll(self.branch(feats, lengths), labels)
        weight = self.lambda_mt if self.mode == "mt" else 1.0
        stats = {
            "loss_spk": loss_spk.detach(),
            "acc_spk": acc_spk.detach(),
        }
        if not training:
            return SpeakerTerm(None, False, stats)
        stats["lambda_spk"] = torch.tensor(coeff, device=loss_spk.device)
        stats["progress_spk"] = torch.tensor(p, device=loss_spk.device)
        with torch.no_grad():
            self.step += 1
        return SpeakerTerm(weight * loss_spk, stage == "branch", stats)


class ESPnetASRSpeakerModel(ESPnetASRModel):
    """ESPnet's ASR model with a speaker branch (``speaker_adversary``).

    Build it with :meth:`adopt` from an ``ESPnetASRModel`` that ESPnet's
    ``ASRTask.build_model`` made: the object keeps every sub-module, parameter,
    initialisation and state-dict key; this subclass only adds the
    ``speaker_adversary`` sub-module and wraps ``forward``. (Re-running
    ``ESPnetASRModel.__init__`` instead would re-create some sub-modules, e.g.
    the inter-CTC conditioning layer, after ``--init``.)

    ``forward`` takes the stock inputs plus ``spk_labels`` ``(B, 1)`` (ESPnet's
    ``text_int`` loader on a ``utt2spkid`` file) and returns ESPnet's
    ``(loss, stats, weight)``; in training ``loss`` is the ASR loss plus the
    speaker term (or the speaker term alone in stage ``branch``) and ``stats``
    add ``loss_spk``, ``acc_spk``, ``lambda_spk`` (the signed coefficient on the
    encoder gradient) and ``progress_spk``.
    """

    speaker_adversary: SpeakerAdversary

    @classmethod
    def adopt(
        cls, model: ESPnetASRModel, adversary: SpeakerAdversary
    ) -> "ESPnetASRSpeakerModel":
        """Turn ``model`` into this class in place and attach ``adversary``."""
        if type(model) is not ESPnetASRModel:
            raise TypeError(
                f"expected an ESPnetASRModel, got {type(model).__name__}"
            )
        model.__class__ = cls
        model.speaker_adversary = adversary
        return model

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        spk_labels: Optional[torch.Tensor] = None,
        spk_labels_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        with self.speaker_adversary.tap(self.encoder) as tap:
            loss, stats, weight = super().forward(
                speech, speech_lengths, text, text_lengths, **kwargs
            )
        term = self.speaker_adversary.speaker_term(tap, spk_labels, self.training)
        stats.update(term.stats)
        if term.loss is not None:
            loss = term.loss.reshape(loss.shape) if term.replaces_task_loss else loss + term.loss
            stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, weight), loss.device)


def add_speaker_branch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--speaker_branch_conf`` (YAML key ``speaker_branch_conf``) to a task.

    It is a top-level option on purpose: ESPnet's stock inference rebuilds the
    model from ``config.yaml`` with ``model_conf``, which must stay stock, and
    ignores unknown top-level keys.
    """
    group = parser.add_argument_group(description="Speaker branch (Adi et al. 2019)")
    group.add_argument(
        "--speaker_branch_conf",
        action=NestedDictAction,
        default=dict(),
        help="Speaker branch on the ASR encoder; empty (default) means none. Keys: "
        "num_speakers (required), fork (in|mid|out|layer number), mode (mt|al), "
        "lambda_mt, lambda_max, gamma, total_steps (training batches of the run, "
        "or 'auto' = max_epoch * the batches of one epoch), branch_only_from, "
        "joint_from, channels, kernel_size, tau. See "
        "espnet2/asr/speaker_adversarial.py and docs/speaker_branch.md.",
    )


def build_speaker_adversary(
    encoder: torch.nn.Module, args: argparse.Namespace
) -> Optional[SpeakerAdversary]:
    """The adversary that ``args.speaker_branch_conf`` asks for, or None if empty.

    ``total_steps: auto`` must have been resolved to a number first (the speaker
    tasks do it: ``SpeakerBranchTaskMixin.resolve_auto_total_steps``).
    """
    conf = dict(getattr(args, "speaker_branch_conf", None) or {})
    if not conf:
        return None
    if "num_speakers" not in conf:
        raise ValueError(
            "speaker_branch_conf needs num_speakers (the number of lines of the "
            "recipe's spk2spkid file)"
        )
    if conf.get("total_steps") == "auto":
        raise ValueError(
            "speaker_branch_conf.total_steps: auto is resolved by the speaker tasks "
            "(SpeakerBranchTaskMixin.resolve_auto_total_steps); here give the number "
            "of training batches of the whole run"
        )
    try:
        return SpeakerAdversary.for_encoder(encoder, **conf)
    except TypeError as e:
        raise ValueError(f"speaker_branch_conf: {e}") from e
