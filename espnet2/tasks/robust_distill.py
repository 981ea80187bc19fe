"""RobustDistillTask: ESPnet task for RobustDistiller (distillation + denoising).

Data: one waveform per utterance, ``speech`` (the CLEAN signal; the model corrupts the
student's copy on the fly), e.g. ``--train_data_path_and_name_and_type
data/train/wav.scp,speech,sound``. Model options go in ``model_conf`` (the arguments of
:class:`espnet2.distill.model.RobustDistillModel`: teacher, pred_layers, student_conf,
loss weights, augmentation_conf). The trainer is :class:`RobustDistillTrainer`, so the
gradient-rule options (``--grad_rule sum|gr|pcgrad|...``, ``--gr_K``, ...) apply to the
two tasks' gradients on the student's conv extractor; the published recipe is
``grad_rule: sum``, which is also this task's default.
"""

import argparse
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from typeguard import typechecked

from espnet2.distill.model import RobustDistillModel
from espnet2.distill.trainer import RobustDistillTrainer
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.utils.nested_dict_action import NestedDictAction


class RobustDistillTask(AbsTask):
    """Distil a frozen teacher into a small student with a denoising auxiliary task."""

    num_optimizers: int = 1
    class_choices_list = []
    trainer = RobustDistillTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="RobustDistiller model")
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default={},
            help="The arguments of espnet2.distill.model.RobustDistillModel "
            "(teacher_kind, teacher_path, pred_layers, student_conf, ...)",
        )
        # The published recipe adds the two losses' gradients (grad_rule sum).
        parser.set_defaults(grad_rule="sum")

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)

    @classmethod
    @typechecked
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        return None

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> RobustDistillModel:
        return RobustDistillModel(**args.model_conf)
