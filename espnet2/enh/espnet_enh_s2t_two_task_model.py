"""Joint SE + ASR model that exposes its two task losses separately.

``TwoTaskEnhS2TModel`` is a thin subclass of ESPnet's ``ESPnetEnhS2TModel``
(speech enhancement front-end ``enh_model`` -> enhanced waveform -> ASR back-end
``s2t_model``). Its parameters, state-dict keys, ``encode`` (used by
``asr_inference``) and ``collect_feats`` are ESPnet's; only ``forward`` differs:

* it returns a dict with the two task losses still attached to the graph, so a
  trainer can take per-task gradients (Gradient Remedy and the other two-task
  rules in ``espnet2.train.gradient_rules``);
* the SE loss is decided **per utterance** from the utterance-id suffix (ESPnet's
  convention, which the stock model applies to ``utt_id[0]`` only):

  ========  =======================  ==================
  suffix    SE front-end             SE loss
  ========  =======================  ==================
  CLEAN     bypassed (raw input)     none
  REAL      applied                  none
  other     applied                  against speech_ref1
  ========  =======================  ==================

* stats that ESPnet reports as ``None`` are reported as NaN, so that every rank
  of a DistributedDataParallel job reports the same keys (ESPnet's
  ``recursive_average`` runs one ``all_gather`` per key and deadlocks otherwise).

One-backward gradient rules. Inside ``with model.scale_asr_input_gradient(w)``
the cotangent that the ASR loss sends back into the enhanced signal (the ASR
back-end's input) is multiplied by the 0-d tensor ``w``; the ASR back-end's
own gradient is unchanged. One backward of ``l_asr + w_se * l_se`` then gives
the SE front-end ``w * G_ASR + w_se * G_SE``, what a whole-vector gradient
rule with weights ``(w, w_se)`` writes after two backwards (the trainer's
``--gr_weights_every``).

Loss weighting. ESPnet keeps the SE weight on the loss wrapper
(``enh_criterions[i].wrapper_conf.weight``); this class adds ``asr_weight`` for
the ASR loss. The paper's ``l_asr = (1 - w) L_ASR`` and ``l_se = w L_SE`` with
``w = 0.3`` is ``asr_weight: 0.7`` plus wrapper weight 0.3; ``asr_weight: 1.0``
reproduces stock ESPnet's total loss exactly.
"""

import contextlib
import math
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.enh.espnet_enh_s2t_model import ESPnetEnhS2TModel
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.layers.gradient_scale import scale_gradient
from espnet2.torch_utils.device_funcs import force_gatherable

#: Utterance categories, decided from the utterance-id suffix.
CATEGORY_SIMU = "SIMU"  # has a clean reference: SE loss
CATEGORY_REAL = "REAL"  # no reference: SE front-end applied, no SE loss
CATEGORY_CLEAN = "CLEAN"  # clean input: SE front-end bypassed, no SE loss


def utterance_category(utt_id: str) -> str:
    """Category of one utterance from its id (ESPnet's suffix convention).

    Ids ending in ``CLEAN`` are clean speech, ids ending in ``REAL`` are real
    recordings without a reference; every other id (e.g. ``..._SIMU``) is
    simulated data with a clean reference.
    """
    if utt_id.endswith(CATEGORY_CLEAN):
        return CATEGORY_CLEAN
    if utt_id.endswith(CATEGORY_REAL):
        return CATEGORY_REAL
    return CATEGORY_SIMU


def _pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad a waveform batch ``(n, L[, C])`` to ``(n, length[, C])``."""
    missing = length - x.shape[1]
    if missing <= 0:
        return x[:, :length]
    pad = [0, 0] * (x.dim() - 2) + [0, missing]
    return F.pad(x, pad)


class TwoTaskEnhS2TModel(ESPnetEnhS2TModel):
    """ESPnet's joint SE + ASR model with separate, graph-attached task losses.

    Args:
        enh_model: ESPnet enhancement model (single speaker: ``num_spk == 1``).
        s2t_model: ESPnet ASR model (``ESPnetASRModel``).
        calc_enh_loss: as in ESPnet; False disables the SE loss for every row.
        bypass_enh_prob: as in ESPnet, but per utterance: in training, each
            utterance without an SE loss skips the front-end with this probability.
        asr_weight: factor on the ASR loss (hybrid CTC/attention loss of
            ``s2t_model``). The SE weight is the loss wrapper's ``weight``.
    """

    def __init__(
        self,
        enh_model: ESPnetEnhancementModel,
        s2t_model: ESPnetASRModel,
        calc_enh_loss: bool = True,
        bypass_enh_prob: float = 0.0,
        asr_weight: float = 1.0,
    ):
        if not isinstance(s2t_model, ESPnetASRModel):
            raise TypeError(
                "TwoTaskEnhS2TModel supports an ASR back-end only "
                f"(subtask_series 'enh asr'); got {type(s2t_model).__name__}"
            )
        super().__init__(
            enh_model=enh_model,
            s2t_model=s2t_model,
            calc_enh_loss=calc_enh_loss,
            bypass_enh_prob=bypass_enh_prob,
        )
        if self.enh_model.num_spk != 1:
            raise ValueError(
                "TwoTaskEnhS2TModel supports single-speaker enhancement only "
                "(enh_separator_conf.num_spk: 1); "
                f"got num_spk={self.enh_model.num_spk}"
            )
        asr_weight = float(asr_weight)
        if not math.isfinite(asr_weight) or asr_weight < 0.0:
            raise ValueError(f"asr_weight must be finite and >= 0, got {asr_weight}")
        self.asr_weight = asr_weight
        self._asr_input_grad_scale: Optional[torch.Tensor] = None

    @classmethod
    def from_joint_model(
        cls, model: ESPnetEnhS2TModel, asr_weight: float = 1.0
    ) -> "TwoTaskEnhS2TModel":
        """Re-wrap a stock joint model (shared sub-modules, same state-dict keys)."""
        return cls(
            enh_model=model.enh_model,
            s2t_model=model.s2t_model,
            calc_enh_loss=model.calc_enh_loss,
            bypass_enh_prob=model.bypass_enh_prob,
            asr_weight=asr_weight,
        )

    def shared_parameters(self) -> List[Tuple[str, torch.nn.Parameter]]:
        """The parameters both tasks train: the SE front-end's (``enh_model.*``).

        Frozen parameters (``requires_grad`` False, e.g. ``--freeze_param``) are
        left out. Names are those of ``self.named_parameters()``.
        """
        return [
            (name, p)
            for name, p in self.named_parameters()
            if name.startswith("enh_model.") and p.requires_grad
        ]

    @contextlib.contextmanager
    def scale_asr_input_gradient(self, coeff: torch.Tensor) -> Iterator[None]:
        """Within: the ASR loss's gradient into the SE front-end is scaled by ``coeff``.

        Applies to the graphs built by ``forward`` inside the block (their
        backward may run after it). ``coeff`` is a 0-d tensor on the model's
        device; the ASR back-end's gradient and the SE loss are unaffected.
        """
        previous, self._asr_input_grad_scale = self._asr_input_grad_scale, coeff
        try:
            yield
        finally:
            self._asr_input_grad_scale = previous

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Dict[str, object]:
        """SE front-end + ASR back-end + both losses.

        Args:
            speech: noisy input waveform ``(B, T)``.
            speech_lengths: ``(B,)`` samples; None means all ``T``.
            speech_ref1: clean reference ``(B, T')`` (needed when a row has an SE loss).
            text_spk1: token ids ``(B, L)``, padded with -1.
            text_spk1_lengths: ``(B,)`` tokens.
            utt_id: list of B utterance ids (categories, see the module docstring);
                without it every row counts as simulated (ESPnet's behaviour).

        Returns:
            dict with
            ``loss``: ``(1,)`` total ``task_losses["asr"] + task_losses["se"]``;
            ``stats``: ESPnet's keys (``loss, loss_asr, loss_enh, loss_ctc,
            loss_att, acc, cer, wer, cer_ctc``), detached ``(1,)`` tensors, None
            replaced by NaN; ``loss_asr``/``loss_enh`` are the weighted task losses
            below, ``loss_enh`` is NaN when no row has a reference;
            ``weight``: ``(1,)`` batch size B;
            ``task_losses``: ``{"asr": 0-dim, "se": 0-dim}``, attached to the graph:
            ``asr = asr_weight * L_ASR`` (batch mean of ESPnet's ASR loss) and
            ``se = sum over rows with a reference of (wrapper weight * per-utterance
            SE loss) / B``. ``se`` depends only on ``enh_model`` parameters. When no
            row has a reference, ``se`` is a zero that reaches no parameter: with
            grad mode on it requires grad and has a ``grad_fn`` (so
            ``torch.autograd.grad(se, params, allow_unused=True)`` returns None for
            every parameter), under ``torch.no_grad`` it is a plain zero.
        """
        batch_size, total_len = speech.shape[0], speech.shape[1]
        if speech_lengths is None:
            speech_lengths = speech.new_full((batch_size,), total_len, dtype=torch.long)
        if "text_spk1" not in kwargs or "text_spk1_lengths" not in kwargs:
            raise ValueError(
                "TwoTaskEnhS2TModel needs the transcript as 'text_spk1' and "
                "'text_spk1_lengths' (name the data file text_spk1 and pass "
                f"--text_name text_spk1); got keys {sorted(kwargs)}"
            )
        text, text_lengths = kwargs["text_spk1"], kwargs["text_spk1_lengths"]

        utt_id = kwargs.get("utt_id")
        rows_ref, rows_enh_only, rows_raw = self._partition_rows(utt_id, batch_size)

        # 1. SE front-end per group, SE loss on the rows with a reference.
        pieces: List[Tuple[List[int], torch.Tensor]] = []
        loss_se = None
        if rows_ref:
            speech_ref = kwargs.get("speech_ref1")
            if speech_ref is None:
                names = [utt_id[i] for i in rows_ref] if utt_id else rows_ref
                raise ValueError(
                    "speech_ref1 (spk1.scp) is required for utterances with an SE "
                    f"loss, but it is missing for {names[:5]}"
                )
            enhanced, loss_ref_mean = self._enhance(
                speech, speech_lengths, rows_ref, speech_ref
            )
            # ESPnet's wrappers average per-utterance losses over the rows they
            # see; rescale to "sum over reference rows / B".
            loss_se = loss_ref_mean * (len(rows_ref) / batch_size)
            pieces.append((rows_ref, enhanced))
        if rows_enh_only:
            enhanced, _ = self._enhance(speech, speech_lengths, rows_enh_only, None)
            pieces.append((rows_enh_only, enhanced))
        if rows_raw:
            pieces.append((rows_raw, speech[rows_raw]))
        asr_speech = self._assemble(pieces, batch_size, total_len)
        if self._asr_input_grad_scale is not None:
            asr_speech = scale_gradient(asr_speech, self._asr_input_grad_scale)

        # 2. ASR back-end on the enhanced (or raw, for CLEAN rows) waveform.
        loss_s2t, stats, _ = self.s2t_model(
            asr_speech, speech_lengths, text, text_lengths
        )
        # ESPnet's ASR model returns a (1,) batch mean (DataParallel-gatherable).
        loss_asr = self.asr_weight * loss_s2t.reshape(())
        if loss_se is None:
            loss_se = loss_asr.new_zeros((), requires_grad=torch.is_grad_enabled())
            if loss_se.requires_grad:
                loss_se = loss_se * 1.0  # a grad_fn that reaches no parameter
        loss = loss_asr + loss_se

        stats["loss_asr"] = loss_asr.detach()
        stats["loss_enh"] = loss_se.detach() if rows_ref else None
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        nan = torch.full_like(loss.detach(), float("nan"))
        stats = {k: (nan if v is None else v) for k, v in stats.items()}
        return {
            "loss": loss,
            "stats": stats,
            "weight": weight,
            "task_losses": {"asr": loss_asr, "se": loss_se},
        }

    def _partition_rows(
        self, utt_id: Optional[Sequence[str]], batch_size: int
    ) -> Tuple[List[int], List[int], List[int]]:
        """Split rows into (SE + SE loss, SE only, raw input to ASR)."""
        if utt_id is None:
            categories = [CATEGORY_SIMU] * batch_size
        else:
            if len(utt_id) != batch_size:
                raise ValueError(
                    f"{len(utt_id)} utterance ids for a batch of {batch_size}"
                )
            categories = [utterance_category(u) for u in utt_id]
        rows_ref, rows_enh_only, rows_raw = [], [], []
        for i, category in enumerate(categories):
            if category == CATEGORY_CLEAN:
                rows_raw.append(i)
            elif category == CATEGORY_SIMU and self.calc_enh_loss:
                rows_ref.append(i)
            elif (
                self.training
                and self.bypass_enh_prob > 0
                and random.random() < self.bypass_enh_prob
            ):
                rows_raw.append(i)
            else:
                rows_enh_only.append(i)
        return rows_ref, rows_enh_only, rows_raw

    def _enhance(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        rows: List[int],
        speech_ref: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Run the SE front-end (and its configured loss) on a subset of rows.

        The subset is cut to its own longest utterance (ESPnet's RNN separators
        return ``max(lengths)`` frames), so on a full, normally collated batch
        this is exactly ESPnet's computation.

        Returns:
            enhanced waveform ``(len(rows), L)`` and, when ``speech_ref`` is
            given, the SE loss averaged over these rows (0-dim), else None.
        """
        lengths = speech_lengths[rows]
        max_len = int(lengths.max())
        x = speech[rows, :max_len]
        speech_pre, feature_mix, feature_pre, others = self.enh_model.forward_enhance(
            x, lengths, {"num_spk": 1}
        )
        loss = None
        if speech_ref is not None:
            ref = speech_ref[rows, :max_len]
            loss, _, _, _ = self.enh_model.forward_loss(
                speech_pre, lengths, feature_mix, feature_pre, others, [ref]
            )
            loss = loss[0]
        return speech_pre[0], loss

    @staticmethod
    def _assemble(
        pieces: List[Tuple[List[int], torch.Tensor]], batch_size: int, total_len: int
    ) -> torch.Tensor:
        """Put row groups ``(rows, (n, L[, C]))`` back in order as ``(B, T[, C])``."""
        padded = [(rows, _pad_time(x, total_len)) for rows, x in pieces]
        if len(padded) == 1:
            return padded[0][1]
        shapes = {tuple(x.shape[2:]) for _, x in padded}
        if len(shapes) != 1:
            raise ValueError(
                "cannot mix enhanced and raw (CLEAN) rows of different channel "
                f"layouts in one batch: {shapes}"
            )
        order = torch.tensor([r for rows, _ in padded for r in rows])
        stacked = torch.cat([x for _, x in padded], dim=0)
        return stacked[torch.argsort(order).to(stacked.device)]
