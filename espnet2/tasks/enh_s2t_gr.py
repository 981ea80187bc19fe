"""Joint SE + ASR task trained with a two-task gradient rule.

``EnhS2TGRTask`` is ESPnet's ``EnhS2TTask`` with two changes:

* ``trainer = GradientRemedyTrainer``: the training step obtains the SE and ASR
  losses separately and combines their gradients on the shared SE parameters
  with the configured rule (the trainer's own options, e.g. the rule name, are
  added by the trainer's ``add_arguments``);
* ``build_model`` returns a :class:`TwoTaskEnhS2TModel`, built by ESPnet's
  ``EnhS2TTask.build_model`` and re-wrapped with the same sub-modules, so the
  state-dict keys (``enh_model.*``, ``s2t_model.*``) are ESPnet's.

The ASR loss weight is the top-level option ``--asr_weight`` (YAML key
``asr_weight``), not a ``model_conf`` entry: ESPnet's stock inference
(``asr_inference --enh_s2t_task true``, ``enh_inference --enh_s2t_task true``)
builds ``ESPnetEnhS2TModel(**model_conf)`` from the saved ``config.yaml``, which
would reject an unknown ``model_conf`` key but ignores unknown top-level keys.
"""

import argparse

from espnet2.enh.espnet_enh_s2t_two_task_model import TwoTaskEnhS2TModel
from espnet2.tasks.enh_s2t import EnhS2TTask
from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer


class EnhS2TGRTask(EnhS2TTask):
    """ESPnet's EnhS2T task with per-task losses and a gradient-rule trainer."""

    trainer = GradientRemedyTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="Two-task loss related")
        group.add_argument(
            "--asr_weight",
            type=float,
            default=1.0,
            help="Weight of the ASR loss in the joint model (the SE weight is the "
            "enh_criterions wrapper weight). The paper's (1 - w) L_ASR + w L_SE "
            "with w = 0.3 is --asr_weight 0.7 with wrapper weight 0.3; 1.0 gives "
            "stock ESPnet's total loss.",
        )

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> TwoTaskEnhS2TModel:
        if tuple(args.subtask_series) != ("enh", "asr"):
            raise ValueError(
                "EnhS2TGRTask trains an SE front-end with an ASR back-end: "
                f"subtask_series must be 'enh asr', got {list(args.subtask_series)}"
            )
        if "asr_weight" in args.model_conf:
            raise ValueError(
                "asr_weight must be set at the top level of the config "
                "(--asr_weight), not in model_conf: ESPnet's stock inference "
                "passes model_conf to ESPnetEnhS2TModel, which does not accept it"
            )
        model = super().build_model(args)
        return TwoTaskEnhS2TModel.from_joint_model(
            model, asr_weight=getattr(args, "asr_weight", 1.0)
        )
