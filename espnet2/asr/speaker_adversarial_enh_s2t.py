"""Speaker branch on the ASR encoder of the joint SE + ASR model.

:class:`TwoTaskEnhS2TSpeakerModel` is the two-task joint model
(:class:`~espnet2.enh.espnet_enh_s2t_two_task_model.TwoTaskEnhS2TModel`) with a
:class:`~espnet2.asr.speaker_adversarial.SpeakerAdversary` forked off
``s2t_model.encoder``. The speaker term (MT or AL, see that module) belongs to
the ASR task::

    task_losses["asr"] = asr_weight * L_ASR + speaker term
    task_losses["se"]  = unchanged
    loss               = task_losses["asr"] + task_losses["se"]

(``lambda_mt`` / ``lambda_max`` are absolute, not multiplied by ``asr_weight``.)

Composition with a gradient rule (``--grad_rule``): the speaker loss reaches the
shared SE parameters only through the ASR encoder and the enhanced waveform,
so the rule's ``G_ASR`` on the SE parameters already contains the multi-task
(``+lambda_mt``) or reversed (``-lambda_p``) speaker gradient. Gradient Remedy
or PCGrad then treat it as part of the ASR gradient: for AL, a rule that removes
the SE/ASR conflict does not undo the reversal, because the reversal is inside
``G_ASR`` (it is not a third task); but the rule's decisions (conflict, ratio)
are made on ``G_ASR`` including it.

In stage ``branch`` (only the branch trains) ``task_losses["asr"]`` is the
speaker term alone and ``task_losses["se"]`` is a zero that reaches no
parameter, so the SE and ASR parameters receive no gradient.
"""

from typing import Dict, Optional

import torch

from espnet2.asr.speaker_adversarial import SpeakerAdversary
from espnet2.enh.espnet_enh_s2t_two_task_model import TwoTaskEnhS2TModel


class TwoTaskEnhS2TSpeakerModel(TwoTaskEnhS2TModel):
    """The two-task joint model with a speaker branch (``speaker_adversary``).

    ``forward`` takes the joint model's inputs plus ``spk_labels`` ``(B, 1)``
    and returns its dict; ``stats`` add ``loss_spk``, ``acc_spk``,
    ``lambda_spk`` and ``progress_spk`` (training) as in
    :class:`~espnet2.asr.speaker_adversarial.ESPnetASRSpeakerModel`.
    """

    def __init__(self, speaker_adversary: SpeakerAdversary, **joint_kwargs):
        super().__init__(**joint_kwargs)
        self.speaker_adversary = speaker_adversary

    @classmethod
    def from_two_task_model(
        cls, model: TwoTaskEnhS2TModel, adversary: SpeakerAdversary
    ) -> "TwoTaskEnhS2TSpeakerModel":
        """Re-wrap a two-task model; sub-modules (and state-dict keys) are shared."""
        return cls(
            speaker_adversary=adversary,
            enh_model=model.enh_model,
            s2t_model=model.s2t_model,
            calc_enh_loss=model.calc_enh_loss,
            bypass_enh_prob=model.bypass_enh_prob,
            asr_weight=model.asr_weight,
        )

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor] = None,
        spk_labels: Optional[torch.Tensor] = None,
        spk_labels_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Dict[str, object]:
        with self.speaker_adversary.tap(self.s2t_model.encoder) as tap:
            out = super().forward(speech, speech_lengths, **kwargs)
        term = self.speaker_adversary.speaker_term(tap, spk_labels, self.training)
        stats = out["stats"]
        for key, value in term.stats.items():
            stats[key] = value.reshape(1)
        if term.loss is None:
            return out
        loss_asr, loss_se = out["task_losses"]["asr"], out["task_losses"]["se"]
        if term.replaces_task_loss:
            loss_asr = term.loss
            loss_se = loss_se.detach() * 0.0
            if torch.is_grad_enabled():
                # A zero with a grad_fn that reaches no parameter (as the
                # two-task model's own "no SE reference" case).
                loss_se = loss_se.requires_grad_() * 1.0
        else:
            loss_asr = loss_asr + term.loss
        loss = loss_asr + loss_se
        stats["loss_asr"] = loss_asr.detach().reshape(1)
        stats["loss"] = loss.detach().reshape(1)
        out["loss"] = loss.reshape(out["loss"].shape)
        out["task_losses"] = {"asr": loss_asr, "se": loss_se}
        return out
