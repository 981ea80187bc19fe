"""RobustDistillModel: distillation + denoising as a two-task ESPnet model.

One step (Guimaraes et al. 2024): the frozen teacher sees the clean waveform, the
student a corrupted copy (``augmentation.Corruptor``). The student's heads regress the
teacher layers ``pred_layers`` (L1 + cosine term) and its denoising head predicts a mask
on the noisy STFT magnitude (L1 to the clean magnitude, weight 2).

Gradient-rule contract (``GradientRemedyTrainer``): ``task_losses["asr"]`` is the main
task, the distillation loss; ``task_losses["se"]`` the auxiliary task, the weighted
denoising loss. ``shared_parameters()`` is the conv feature extractor, the only module
both losses reach. The denoising head is private to the auxiliary task:
``se_private_parameters()``, trained by ``RobustDistillTrainer`` with the denoising
gradient alone (the stock trainer gives the auxiliary loss no private parameters).
With ``grad_rule: sum`` the update is the published one.

The teacher is held outside the module tree: it is not saved in checkpoints, gets no
optimizer state, and stays in eval mode; ``.to()`` still moves it.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet2.distill.augmentation import Corruptor
from espnet2.distill.denoising_head import DenoisingHead, STFTMagnitude
from espnet2.distill.losses import denoising_loss, distillation_losses
from espnet2.distill.student import DistillStudent
from espnet2.distill.teachers import Teacher, load_teacher, student_init_state
from espnet2.train.abs_espnet_model import AbsESPnetModel


def align_frames(
    targets: torch.Tensor, t_frames: torch.Tensor, num_frames: int, same_rate: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Teacher states (B, n, T_t, D) -> (B, n, num_frames, D) on the student's frames.

    Same frame rate: crop, or repeat the last frame (edge effects of a frame or two).
    Otherwise linear interpolation in time, and the valid lengths are rescaled.
    """
    t = targets.size(2)
    if same_rate:
        if t >= num_frames:
            return targets[:, :, :num_frames], t_frames.clamp(max=num_frames)
        pad = targets[:, :, -1:].expand(-1, -1, num_frames - t, -1)
        return torch.cat([targets, pad], dim=2), t_frames
    b, n, _, d = targets.shape
    flat = targets.permute(0, 1, 3, 2).reshape(b, n * d, t)
    flat = F.interpolate(flat, size=num_frames, mode="linear", align_corners=False)
    scaled = torch.div(t_frames * num_frames, t, rounding_mode="floor")
    return flat.reshape(b, n, d, num_frames).permute(0, 1, 3, 2), scaled


class RobustDistillModel(AbsESPnetModel):
    """Student + denoising head trained against a frozen teacher.

    Args:
        teacher: a loaded teacher (tests); otherwise ``teacher_kind`` + ``teacher_path``.
        pred_layers: teacher hidden states to regress (1-based layer numbers; 0 is the
            transformer input), published: 4, 8, 12.
        student_conf: ``DistillStudent`` arguments (``num_pred_heads``/``target_dim``
            follow from ``pred_layers`` and the teacher).
        init_from_teacher: copy the teacher's conv extractor, projection, positional
            conv and first layers into the student where the shapes match.
        cosine_weight, denoise_weight: the loss weights (1 and 2 as published).
        denoising_conf: ``DenoisingHead`` arguments (hidden, layers, dropout).
        stft_conf: n_fft, hop_length, win_length (512, 160, 400).
        augmentation_conf: ``Corruptor`` arguments; ``eval_seed`` seeds the corruption
            in eval mode so validation losses are comparable across epochs.
    """

    def __init__(
        self,
        teacher_kind: str = "tiny",
        teacher_path: Optional[str] = None,
        pred_layers: Sequence[int] = (4, 8, 12),
        student_conf: Optional[Dict] = None,
        init_from_teacher: bool = True,
        cosine_weight: float = 1.0,
        denoise_weight: float = 2.0,
        denoising_conf: Optional[Dict] = None,
        stft_conf: Optional[Dict] = None,
        augmentation_conf: Optional[Dict] = None,
        eval_seed: int = 0,
        teacher: Optional[Teacher] = None,
    ):
        super().__init__()
        if teacher is None:
            if teacher_path is None:
                raise ValueError("RobustDistillModel needs model_conf.teacher_path")
            teacher = load_teacher(teacher_kind, teacher_path)
        self.pred_layers = [int(k) for k in pred_layers]
        bad = [k for k in self.pred_layers if not 0 <= k <= teacher.num_layers]
        if bad or not self.pred_layers:
            raise ValueError(
                f"pred_layers {self.pred_layers}: the teacher has layers 0..{teacher.num_layers}"
            )
        self.__dict__["teacher"] = teacher  # outside the module tree (see module docstring)
        student_conf = dict(student_conf or {})
        student_conf.update(num_pred_heads=len(self.pred_layers), target_dim=teacher.hidden_size)
        self.student = DistillStudent(**student_conf)
        self.stft = STFTMagnitude(**(stft_conf or {}))
        stride = self.student.feature_extractor.total_stride
        if stride % self.stft.hop_length:
            raise ValueError(
                f"the conv stride ({stride}) must be a multiple of the STFT hop "
                f"({self.stft.hop_length})"
            )
        self.denoising_head = DenoisingHead(
            self.student.feature_extractor.output_size,
            n_freq=self.stft.n_freq,
            upsample=stride // self.stft.hop_length,
            **(denoising_conf or {}),
        )
        self.corruptor = Corruptor(**(augmentation_conf or {}))
        self.cosine_weight = cosine_weight
        self.denoise_weight = denoise_weight
        self.eval_seed = eval_seed
        if init_from_teacher:
            self.init_student_from_teacher()

    # ------------------------------------------------------------------ set-up

    def init_student_from_teacher(self) -> List[str]:
        """Copy the teacher's matching weights into the student; returns the names copied."""
        own = self.student.state_dict()
        source = student_init_state(self.teacher, len(self.student.encoder.layers))
        copied = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(source) - set(copied))
        if not copied:
            raise ValueError(
                "init_from_teacher: no teacher weight matches the student's shapes; set "
                "init_from_teacher: false or make student_conf match the teacher"
            )
        if skipped:
            logging.warning(f"init_from_teacher: shapes differ, not copied: {skipped}")
        self.student.load_state_dict(copied, strict=False)
        return sorted(copied)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.teacher._apply(fn)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def shared_parameters(self) -> List[Tuple[str, torch.nn.Parameter]]:
        """The conv feature extractor: reached by both the distillation and denoising losses."""
        extractor = self.student.feature_extractor
        return [(f"student.feature_extractor.{n}", p) for n, p in extractor.named_parameters()]

    def se_private_parameters(self) -> List[Tuple[str, torch.nn.Parameter]]:
        """The denoising head: reached by the denoising loss only."""
        return [(f"denoising_head.{n}", p) for n, p in self.denoising_head.named_parameters()]

    # ------------------------------------------------------------------ forward

    def corrupt(self, speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        generator = None
        if not self.training:
            generator = torch.Generator().manual_seed(self.eval_seed + int(lengths.sum()))
        noisy, _, _ = self.corruptor(speech, lengths, generator=generator)
        return noisy

    def teacher_targets(
        self, clean: torch.Tensor, lengths: torch.Tensor, num_frames: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, n, num_frames, D_t) targets on the student's frames and their lengths."""
        with torch.no_grad():
            hidden, t_frames = self.teacher(clean, lengths)
            targets = torch.stack([hidden[k] for k in self.pred_layers], dim=1)
        same_rate = self.teacher.frame_shift == self.student.feature_extractor.total_stride
        return align_frames(targets.float(), t_frames, num_frames, same_rate)

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, object]:
        """speech (B, L) clean waveform, speech_lengths (B,) -> ESPnet's dict with
        ``loss``, ``stats``, ``weight`` and ``task_losses`` ("asr": distillation,
        "se": weighted denoising)."""
        speech = speech[:, : int(speech_lengths.max())]
        noisy = self.corrupt(speech, speech_lengths)
        out = self.student(noisy, speech_lengths)
        preds = out["preds"]
        targets, t_frames = self.teacher_targets(speech, speech_lengths, preds.size(2))
        frames = torch.minimum(out["frames"], t_frames)
        l1, cos_term = distillation_losses(preds, targets, frames)
        loss_distill = l1.mean() + self.cosine_weight * cos_term.mean()

        noisy_mag, stft_frames = self.stft(noisy, speech_lengths)
        clean_mag, _ = self.stft(speech, speech_lengths)
        mask = self.denoising_head(out["conv_feats"], noisy_mag.size(1))
        loss_denoise = denoising_loss(mask, noisy_mag, clean_mag, stft_frames)
        loss_se = self.denoise_weight * loss_denoise
        loss = loss_distill + loss_se

        with torch.no_grad():
            cos = F.cosine_similarity(preds, targets, dim=-1)  # (B, n, T)
            positions = torch.arange(preds.size(2), device=frames.device)
            valid = (positions[None] < frames[:, None]).float()
            cos_mean = (cos * valid[:, None]).sum((0, 2)) / valid.sum()
        stats = {
            "loss": loss.detach(),
            "loss_distill": loss_distill.detach(),
            "loss_l1": l1.mean().detach(),
            "loss_cos": cos_term.mean().detach(),
            "loss_denoise": loss_denoise.detach(),
        }
        for k, layer in enumerate(self.pred_layers):
            stats[f"cos_layer{layer}"] = cos_mean[k]
        weight = torch.tensor(speech.size(0), device=speech.device)
        return {
            "loss": loss,
            "stats": stats,
            "weight": weight,
            "task_losses": {"asr": loss_distill, "se": loss_se},
        }

    def collect_feats(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Dict[str, torch.Tensor]:
        """No feature statistics are needed (the student reads raw waveforms)."""
        return {"feats": speech, "feats_lengths": speech_lengths}
