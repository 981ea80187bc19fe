"""RobustDistillTrainer: the Gradient Remedy trainer plus auxiliary-task-private parameters.

``GradientRemedyTrainer`` assumes the auxiliary ("se") loss reaches only the shared
parameters: it takes that loss's gradient on the shared ones (G_SE, combined with G_ASR
by the rule) and nothing else. RobustDistiller's denoising loss also trains its own
BLSTM head, which the distillation loss never reaches. This subclass adds one step to
``_task_gradients``: ``backward`` of the auxiliary loss restricted to the model's
``se_private_parameters()``, accumulated into their ``.grad`` (the trainer's buffer
views; G_ASR there is zero, so the head receives exactly its own task's gradient and
no rule touches it). Everything else, including the reduction over ranks, is the
parent's.
"""

from typing import Optional

import torch

from espnet2.train.trainer_gradient_remedy import GradientBuffer, GradientRemedyTrainer, TaskLosses


class RobustDistillTrainer(GradientRemedyTrainer):
    """Gradient-rule trainer whose auxiliary task may own private parameters."""

    @classmethod
    def _build_buffer(cls, core: torch.nn.Module, options) -> GradientBuffer:
        buffer = super()._build_buffer(core, options)
        private = getattr(core, "se_private_parameters", lambda: [])()
        buffer.se_private = [p for _, p in private if p.requires_grad]  # read by _task_gradients
        shared_ids = {id(p) for p in buffer.shared}
        overlap = [n for n, p in private if id(p) in shared_ids]
        if overlap:
            raise RuntimeError(f"parameters both shared and private to the SE task: {overlap}")
        return buffer

    @classmethod
    def _task_gradients(
        cls,
        losses: TaskLosses,
        buffer: GradientBuffer,
        scaler: Optional[torch.amp.GradScaler],
    ) -> None:
        private = getattr(buffer, "se_private", [])
        if losses.se is not None and private:
            se = losses.se if scaler is None else scaler.scale(losses.se)
            se.backward(inputs=private, retain_graph=True)
        super()._task_gradients(losses, buffer, scaler)
