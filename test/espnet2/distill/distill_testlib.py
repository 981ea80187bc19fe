"""Shared tiny set-up for the RobustDistiller tests: a small student/teacher pair that
runs in well under a second on one CPU thread."""

from pathlib import Path

import torch

from espnet2.distill.model import RobustDistillModel
from espnet2.distill.teachers import TinyTeacher, load_teacher, save_tiny_teacher

# The published conv stack's kernels and strides (320-sample hop), with 32 channels.
CONV = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
TEACHER_CONF = dict(conv_layers=CONV, dim=32, ffn_dim=64, num_heads=4, num_layers=3,
                    pos_conv_kernel=16, pos_conv_groups=4)
STUDENT_CONF = dict(conv_layers=CONV, dim=32, ffn_dim=64, num_heads=4, num_layers=2,
                    pos_conv_kernel=16, pos_conv_groups=4)
MODEL_CONF = dict(pred_layers=[1, 2, 3], student_conf=STUDENT_CONF,
                  denoising_conf=dict(hidden=16, layers=2))


def tiny_teacher_file(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = directory / "teacher.pth"
    save_tiny_teacher(str(path), TinyTeacher(**TEACHER_CONF))
    return path


def tiny_model(directory: Path, seed: int = 0, **overrides) -> RobustDistillModel:
    path = tiny_teacher_file(directory, seed)
    conf = dict(MODEL_CONF, **overrides)
    return RobustDistillModel(teacher=load_teacher("tiny", str(path)), **conf)


def waves(batch: int = 3, seconds: float = 0.5, seed: int = 1):
    """A batch of speech-like waveforms (sums of modulated tones) and ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    n = int(16000 * seconds)
    t = torch.arange(n) / 16000.0
    x = torch.stack([
        sum(torch.sin(2 * torch.pi * f * t + torch.rand((), generator=g) * 6.28)
            for f in (150 + 40 * b, 700 + 90 * b, 2100.0))
        * (0.6 + 0.4 * torch.sin(2 * torch.pi * 3 * t))
        for b in range(batch)
    ]) * 0.1
    lengths = torch.tensor([n - n // 8 * b for b in range(batch)])
    for b in range(batch):
        x[b, lengths[b]:] = 0.0
    return x, lengths
