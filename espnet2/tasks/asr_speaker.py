"""ASR task with an optional speaker branch (multi-task or adversarial).

``ASRSpeakerTask`` is ESPnet's ``ASRTask`` plus

* the top-level option ``--speaker_branch_conf`` (see
  :mod:`espnet2.asr.speaker_adversarial`); empty means no branch and the task
  then builds exactly ESPnet's model;
* the optional data name ``spk_labels``: one integer speaker id per utterance,
  read with ESPnet's ``text_int`` loader from a ``utt2spkid`` file
  (``--train_data_path_and_name_and_type data/train/utt2spkid,spk_labels,text_int``).

``config.yaml`` keeps ``model: espnet`` and a stock ``model_conf``, so ESPnet's
stock ``asr_inference`` loads the checkpoints (the branch's
``speaker_adversary.*`` keys are ignored by its ``strict=False`` load).
"""

import argparse
import logging
from typing import Optional, Tuple

import torch

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.speaker_adversarial import (
    ESPnetASRSpeakerModel,
    SpeakerAdversary,
    add_speaker_branch_arguments,
    build_speaker_adversary,
)
from espnet2.tasks.asr import ASRTask
from espnet2.train.distributed_utils import DistributedOption
from espnet2.utils.build_dataclass import build_dataclass


class SpeakerBranchTaskMixin:
    """Task options and data shared by every task with a speaker branch.

    Adds ``--speaker_branch_conf`` and the optional data name ``spk_labels``;
    the task's ``build_model`` attaches the branch.
    """

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        add_speaker_branch_arguments(parser)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return super().optional_data_names(train, inference) + ("spk_labels",)

    @classmethod
    def build_speaker_adversary(
        cls, encoder: torch.nn.Module, args: argparse.Namespace
    ) -> Optional[SpeakerAdversary]:
        """The branch ``args.speaker_branch_conf`` asks for on ``encoder``, or None.

        None as well with ``--collect_stats true``: the statistics never run the
        branch, so a recipe collects them with the branch config before any
        speaker label or count exists. ``total_steps: auto`` is resolved here
        (see :meth:`resolve_auto_total_steps`).
        """
        if getattr(args, "collect_stats", False):
            return None
        cls.resolve_auto_total_steps(args)
        return build_speaker_adversary(encoder, args)

    @classmethod
    def resolve_auto_total_steps(cls, args: argparse.Namespace) -> None:
        """Replace ``total_steps: auto`` by ``max_epoch`` x the training batches of
        one epoch: ``--num_iters_per_epoch`` when given, otherwise counted with this
        task's own training iterator (the batches the trainer will iterate; under
        DDP every rank runs that many).

        The number is written back into ``args.speaker_branch_conf`` before ESPnet
        dumps ``config.yaml`` (``build_model`` runs first), so a model rebuilt from
        that file (inference, probing) needs no training data.
        """
        conf = getattr(args, "speaker_branch_conf", None) or {}
        if conf.get("total_steps") != "auto":
            return
        batches = getattr(args, "num_iters_per_epoch", None)
        if not batches:
            if args.iterator_type != "sequence":
                raise ValueError(
                    "speaker_branch_conf.total_steps: auto counts the batches of the "
                    f"'sequence' iterator, not '{args.iterator_type}'; give "
                    "--num_iters_per_epoch or the number of training batches of the run"
                )
            factory = cls.build_iter_factory(
                args, build_dataclass(DistributedOption, args), mode="train"
            )
            batches = len(factory.sampler)
        total = int(args.max_epoch) * batches
        logging.info(
            f"speaker branch: total_steps auto = {args.max_epoch} epochs x {batches} batches = {total}"
        )
        args.speaker_branch_conf = {**conf, "total_steps": total}


class ASRSpeakerTask(SpeakerBranchTaskMixin, ASRTask):
    """ESPnet's ASR task with a speaker branch on the encoder."""

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        model = super().build_model(args)
        adversary = cls.build_speaker_adversary(model.encoder, args)
        if adversary is None:
            return model
        return ESPnetASRSpeakerModel.adopt(model, adversary)
