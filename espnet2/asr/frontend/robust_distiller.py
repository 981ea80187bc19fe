"""A RobustDistiller student as an ESPnet ASR front-end (``frontend: robust_distiller``).

The student (conv extractor + transformer layers, prediction heads dropped) turns the
raw waveform into features at its frame rate (20 ms): either one hidden state
(``layer: k``) or a learned softmax-weighted sum of all of them (``layer: null``, the
SUPERB convention; the default). ``freeze: true`` keeps the student fixed (eval mode,
no gradients; only the layer weights train); ``freeze: false`` fine-tunes it.

Selecting it from a config: ESPnet's front-end choices are a module-level
``ClassChoices`` (``espnet2.tasks.asr.frontend_choices``, shared by the ASR, EnhS2T and
this project's joint tasks). :func:`register` adds this class to it; call it (or import
a module that does) before the task builds its parser, e.g.::

    from espnet2.asr.frontend.robust_distiller import register
    register()
    ASRTask.main()

Stock entry points (``python -m espnet2.bin.asr_train`` / ``asr_inference``) do not
import it; the recipe egs2/mini_noisy/distill1 ships ``local/asr_train.py`` and
``local/asr_inference.py`` wrappers that register first. See docs/robust_distiller.md.
"""

from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
import yaml
from typeguard import typechecked

from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.distill.student import DistillStudent

NAME = "robust_distiller"


def load_student(
    distill_config: Optional[str] = None,
    distill_checkpoint: Optional[str] = None,
    student_conf: Optional[Dict] = None,
) -> DistillStudent:
    """Build the student from a distillation run and load its weights (without heads).

    Args:
        distill_config: the distillation experiment's ``config.yaml`` (its
            ``model_conf.student_conf`` gives the architecture), or ...
        student_conf: ... the architecture given directly.
        distill_checkpoint: a ``RobustDistillModel`` state dict (``*.pth`` of the
            distillation run, keys ``student.*``); None keeps random weights.
    """
    if (distill_config is None) == (student_conf is None):
        raise ValueError("give exactly one of distill_config and student_conf")
    if distill_config is not None:
        path = Path(distill_config)
        if not path.is_file():
            raise FileNotFoundError(f"distillation config {path} does not exist")
        config = yaml.safe_load(path.read_text()) or {}
        model_conf = config.get("model_conf")
        if not isinstance(model_conf, dict):
            raise ValueError(f"{path}: no model_conf section (not a robust_distill config?)")
        student_conf = model_conf.get("student_conf") or {}
    conf = dict(student_conf)
    conf.pop("target_dim", None)
    conf["num_pred_heads"] = 0
    student = DistillStudent(**conf)
    if distill_checkpoint is not None:
        ckpt = Path(distill_checkpoint)
        if not ckpt.is_file():
            raise FileNotFoundError(f"distillation checkpoint {ckpt} does not exist")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        prefix = "student."
        own = {
            k[len(prefix):]: v
            for k, v in state.items()
            if k.startswith(prefix) and not k.startswith(prefix + "heads.")
        }
        if not own:
            raise ValueError(
                f"{ckpt}: no 'student.*' weights (not a RobustDistillModel checkpoint?)"
            )
        try:
            student.load_state_dict(own, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{ckpt} does not match the student architecture: {e}") from e
    return student


class RobustDistillerFrontend(AbsFrontend):
    """Raw waveform (B, L) -> student features (B, T, D), frame lengths (B,).

    Args:
        fs: sampling rate the student was trained at (16 kHz); input must match.
        distill_config, distill_checkpoint, student_conf: see :func:`load_student`.
        layer: hidden state to output (0 = the transformer input, i = layer i, -1 the
            last); None: a learned softmax-weighted sum of all hidden states.
        freeze: keep the student's weights fixed.
    """

    @typechecked
    def __init__(
        self,
        fs: int = 16000,
        distill_config: Optional[str] = None,
        distill_checkpoint: Optional[str] = None,
        student_conf: Optional[Dict] = None,
        layer: Optional[int] = None,
        freeze: bool = True,
    ):
        super().__init__()
        if fs != 16000:
            raise ValueError(f"the RobustDistiller student reads 16 kHz audio, got fs={fs}")
        self.student = load_student(distill_config, distill_checkpoint, student_conf)
        num_states = len(self.student.encoder.layers) + 1
        if layer is not None and not -num_states <= layer < num_states:
            raise ValueError(f"layer {layer}: the student has hidden states 0..{num_states - 1}")
        self.layer = layer
        self.freeze = freeze
        if layer is None:
            self.layer_weights = torch.nn.Parameter(torch.zeros(num_states))
        if freeze:
            for p in self.student.parameters():
                p.requires_grad_(False)

    def output_size(self) -> int:
        return self.student.dim

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.student.eval()
        return self

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden, frames = self.student.features(input, input_lengths)
        if self.layer is not None:
            feats = hidden[self.layer]
        else:
            weights = torch.softmax(self.layer_weights, dim=0)
            feats = sum(w * h for w, h in zip(weights, hidden))
        return feats, frames


def register() -> None:
    """Make ``frontend: robust_distiller`` selectable in the ASR / EnhS2T tasks (idempotent)."""
    from espnet2.tasks.asr import frontend_choices

    frontend_choices.classes[NAME] = RobustDistillerFrontend
