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
from typing import Tuple

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.speaker_adversarial import (
    ESPnetASRSpeakerModel,
    add_speaker_branch_arguments,
    build_speaker_adversary,
)
from espnet2.tasks.asr import ASRTask


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


class ASRSpeakerTask(SpeakerBranchTaskMixin, ASRTask):
    """ESPnet's ASR task with a speaker branch on the encoder."""

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        model = super().build_model(args)
        adversary = build_speaker_adversary(model.encoder, args)
        if adversary is None:
            return model
        return ESPnetASRSpeakerModel.adopt(model, adversary)
