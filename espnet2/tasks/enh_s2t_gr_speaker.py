"""Joint SE + ASR task (gradient-rule trainer) with a speaker branch.

``EnhS2TGRSpeakerTask`` is :class:`~espnet2.tasks.enh_s2t_gr.EnhS2TGRTask` plus
``--speaker_branch_conf`` and the optional data name ``spk_labels`` (as in
:mod:`espnet2.tasks.asr_speaker`). With an empty ``speaker_branch_conf`` it builds
exactly ``EnhS2TGRTask``'s model. Checkpoints decode with ESPnet's stock
``asr_inference --enh_s2t_task true`` (the ``speaker_adversary.*`` keys are
ignored).
"""

import argparse

from espnet2.asr.speaker_adversarial_enh_s2t import TwoTaskEnhS2TSpeakerModel
from espnet2.enh.espnet_enh_s2t_two_task_model import TwoTaskEnhS2TModel
from espnet2.tasks.asr_speaker import SpeakerBranchTaskMixin
from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask


class EnhS2TGRSpeakerTask(SpeakerBranchTaskMixin, EnhS2TGRTask):
    """The two-task joint SE + ASR task with a speaker branch on the ASR encoder."""

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> TwoTaskEnhS2TModel:
        model = super().build_model(args)
        adversary = cls.build_speaker_adversary(model.s2t_model.encoder, args)
        if adversary is None:
            return model
        return TwoTaskEnhS2TSpeakerModel.from_two_task_model(model, adversary)
