"""Gradient Remedy trainer: ESPnet's ``Trainer`` with a two-task gradient rule.

The joint SE + ASR model returns its two weighted task losses separately. On the
shared parameters (the SE front-end) the trainer keeps the two task gradients
apart, accumulates and all-reduces them per task, and combines them with a
gradient rule (plain sum, Gradient Remedy, PCGrad, ...) from
:mod:`espnet2.train.gradient_rules` once per optimizer step. All other
parameters receive the ASR gradient unchanged. Everything else is ESPnet's:
``run()``, validation, checkpoints and resume (a stateful rule's state is
kept beside them, see ``_load_rule_state``), AMP,
gradient clipping, the non-finite skip, batch-step schedulers, reporter stats
and the ``iterator_stop`` protocol under DDP.

One training step, as the methods of :class:`GradientRemedyTrainer` name it
(the semantics are in ``shared/spec/gradient_remedy.md``)::

    _micro_batch, for each micro-batch       (under DDP inside model.no_sync())
        _forward          -> l_asr, l_se, scaled like stock ESPnet's loss
        _task_gradients   -> autograd.grad(l_se) on the shared parameters, added
                             to the G_SE segment of a flat buffer; one
                             backward(l_asr) into .grad of every parameter
                             (views into the G_ASR segment of the same buffer)
        [gr_apply=microbatch: _apply_rule on this micro-batch's gradients]
    _optimizer_step, every accum_grad micro-batches
        _reduce           -> ONE all_reduce(SUM) of the flat buffer
        _apply_rule       -> .grad(shared) = rule(G_ASR, G_SE), block by block
        _clip_and_step    -> unscale, clip, skip if non-finite, step, scheduler
        _broadcast_buffers-> rank 0's buffers (BatchNorm stats) to every rank
        _report_step      -> grad_norm, clip, loss_scale, gr_* stats, lr, time

Lagged weights (``--gr_weights_every N > 1``, whole-vector rules): a whole-vector
rule's result on the SE front-end is ``w_asr G_ASR + w_se G_SE``. Every N-th
optimizer step is computed as above and its weights are kept; the steps in
between take ONE backward of ``l_asr + w_se l_se`` inside the model's
``scale_asr_input_gradient(w_asr)`` (the ASR cotangent entering the enhanced
signal is scaled), which gives the SE front-end the same combination with the
kept weights at the cost of plain multi-task learning (see
docs/gradient_remedy_trainer.md, "Lagged weights").

Host synchronisation: none per parameter or per block. Once per optimizer step
the small vector ``[gr_* stats | use flags]`` is copied to the host (to report
floats and to release the gradients of unused parameters); stock ESPnet itself
syncs for ``grad_norm`` and for every reported stat.
"""

import argparse
import dataclasses
import inspect
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed
from torch.nn.parallel import DistributedDataParallel
from typeguard import typechecked

from espnet2.fileio.atomic_write import atomic_path
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler, AbsScheduler
from espnet2.torch_utils.add_gradient_noise import add_gradient_noise
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train import gradient_rules
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions, autocast_args
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str_or_none

GR_STAT_NAMES = (
    "gr_cos",
    "gr_conflict_rate",
    "gr_norm_ratio",
    "gr_projection_rate",
    "gr_rescale_rate",
    "gr_theta",
    "gr_w_asr",
    "gr_w_se",
)
#: Only with --gr_weights_every > 1: relative change of (w_asr, w_se) at an exact step.
LAG_STAT_NAMES = ("gr_w_drift",)
#: Stats that need the two task gradients apart (NaN, i.e. absent, on a lagged step).
_GRAM_STATS = 6
GRANULARITIES = ("tensor", "vector")
APPLY_MODES = ("step", "microbatch")
SUM = torch.distributed.ReduceOp.SUM


@dataclasses.dataclass
class GradientRemedyTrainerOptions(TrainerOptions):
    """ESPnet's trainer options plus the gradient-rule options (see add_arguments)."""

    grad_rule: str
    gr_K: float
    gr_granularity: str
    gr_apply: str
    gr_shared_params: Optional[List[str]]
    grad_rule_conf: Dict = dataclasses.field(default_factory=dict)
    gr_weights_every: int = 1


@dataclasses.dataclass
class TaskLosses:
    """The two task losses of one micro-batch, scaled for the accumulated step.

    Each is ``task_loss * w_local / W_global / accum_grad`` under DDP and
    ``task_loss / accum_grad`` in one process, as stock ESPnet scales its one
    loss (without DDP's ``* world_size``: the trainer sums over ranks itself),
    so that the sum over micro-batches and ranks is the gradient of the
    batch-weighted mean loss of the effective batch. ``se`` is None when the SE
    loss reaches no parameter (no utterance of the micro-batch has a reference).
    """

    asr: torch.Tensor  # 0-dim
    se: Optional[torch.Tensor]  # 0-dim or None


class GradientBuffer:
    """One flat buffer holding every trainable parameter's gradient(s) for a step.

    Layout (``n_s`` shared elements, ``n_r`` other elements, ``P`` parameters)::

        [ G_ASR shared (n_s) | G_ASR rest (n_r) | uses (P) | G_SE shared (n_s) ]
        \______________________ head ___________________/

    ``install()`` points each parameter's ``.grad`` at its slice of the G_ASR
    part (as DDP's ``gradient_as_bucket_view`` does), so ``backward()``
    accumulates there in place across micro-batches, the reduction is one
    collective, and writing the rule's result is one copy. ``uses[i]`` is 1 on a
    rank where parameter ``i`` received a gradient from either task during the
    step; after the reduction it counts those ranks. A lagged step (one
    backward, no separate G_SE) reduces only ``head``.
    """

    def __init__(
        self,
        shared: Sequence[torch.nn.Parameter],
        rest: Sequence[torch.nn.Parameter],
        block_sizes: Sequence[int],
    ):
        params = list(shared) + list(rest)
        kinds = {(p.dtype, p.device) for p in params}
        if len(kinds) != 1:
            raise RuntimeError(
                "GradientRemedyTrainer needs all trainable parameters on one device "
                f"with one dtype (see --train_dtype); found {sorted(map(str, kinds))}"
            )
        self.shared = list(shared)
        self.params = params
        self.block_sizes = list(block_sizes)
        n_s = sum(p.numel() for p in self.shared)
        n_all = sum(p.numel() for p in params)
        n_head = n_all + len(params)
        self.flat = params[0].new_zeros(n_head + n_s)
        self.asr_all = self.flat[:n_all]
        self.asr_shared = self.flat[:n_s]
        self.uses = self.flat[n_all:n_head]
        self.head = self.flat[:n_head]
        self.se_shared = self.flat[n_head:]
        self._asr_views = self._views(self.asr_all, params)
        self._se_views = self._views(self.se_shared, self.shared)
        self._used_local = [False] * len(params)
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._marker(i))
            for i, p in enumerate(params)
        ]

    @staticmethod
    def _views(
        flat: torch.Tensor, params: Sequence[torch.Tensor]
    ) -> List[torch.Tensor]:
        views, offset = [], 0
        for p in params:
            views.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return views

    def _marker(self, index: int):
        def mark_used(_param: torch.Tensor) -> None:
            self._used_local[index] = True

        return mark_used

    def install(self) -> None:
        """Zero the buffer and make every ``.grad`` its view (start of a step)."""
        self.flat.zero_()
        self._used_local = [False] * len(self.params)
        for p, view in zip(self.params, self._asr_views):
            p.grad = view

    def add_se(self, grads: Sequence[Optional[torch.Tensor]]) -> None:
        """Add one micro-batch's SE gradients (None: no dependence) to G_SE."""
        present = [(v, g) for v, g in zip(self._se_views, grads) if g is not None]
        if present:
            torch._foreach_add_([v for v, _ in present], [g for _, g in present])
        for i, g in enumerate(grads):
            if g is not None:
                self._used_local[i] = True

    def record_uses(self) -> None:
        """Write this rank's use flags into ``uses`` (before the reduction)."""
        flags = torch.tensor(self._used_local, dtype=self.flat.dtype)
        self.uses.copy_(flags, non_blocking=True)

    def release_unused(self, used: Sequence[bool]) -> None:
        """``.grad = None`` for the parameters that no rank gave a gradient."""
        for p, was_used in zip(self.params, used):
            if not was_used:
                p.grad = None

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


@dataclasses.dataclass
class LaggedWeights:
    """Whole-vector rule weights kept for the steps between exact ones.

    ``--gr_weights_every N``: a step is *exact* (two backwards, the rule on the
    Gram matrix) when no weights were kept yet or the kept ones are ``N`` steps
    old; the others are *lagged* (one backward with the kept weights). An exact
    step keeps nothing when its weights are the rule's fallback rather than a
    decision (a non-finite gradient: the step is skipped; or a zero task
    gradient, e.g. a batch of REAL utterances only), so the next step is exact
    again. Host state is a step counter only.
    """

    every: int
    weights: Optional[torch.Tensor] = None  # [2]: (w_asr, w_se) of the last exact step
    age: int = 0  # optimizer steps taken since ``weights`` were computed

    @property
    def exact_due(self) -> bool:
        return self.weights is None or self.age >= self.every

    def after_step(self, new_weights: Optional[torch.Tensor], keep: bool) -> None:
        """Advance after an optimizer step: a lagged one (``new_weights`` None)
        ages the kept weights; an exact one replaces them if ``keep``."""
        if new_weights is None:
            self.age += 1
        elif keep:
            self.weights, self.age = new_weights, 1

    def state_dict(self) -> Dict[str, torch.Tensor]:
        if self.weights is None:
            return {}
        return {
            "lagged_weights": self.weights.detach().cpu(),
            "lagged_age": torch.tensor(self.age),
        }

    def load_state_dict(self, state: Dict[str, torch.Tensor], device) -> None:
        if "lagged_weights" in state:
            self.weights = state["lagged_weights"].to(device)
            self.age = int(state["lagged_age"])


@dataclasses.dataclass
class StepState:
    """What an epoch carries from the micro-batches to the optimizer step."""

    buffer: GradientBuffer
    rule: gradient_rules.GradientRule
    microbatch_apply: bool  # gr_apply == "microbatch"
    # --gr_weights_every > 1 only; ``lag.exact_due`` decides the current step.
    lag: Optional[LaggedWeights] = None
    # gr_apply=microbatch: sum of the micro-batches' combined shared gradients.
    microbatch_sum: Optional[torch.Tensor] = None
    rule_stats: List[torch.Tensor] = dataclasses.field(default_factory=list)
    start_time: float = dataclasses.field(default_factory=time.perf_counter)

    def __post_init__(self):
        if self.microbatch_apply:
            self.microbatch_sum = torch.zeros_like(self.buffer.asr_shared)

    @property
    def lagged(self) -> bool:
        """True while the current step uses kept weights (one backward)."""
        return self.lag is not None and not self.lag.exact_due


class GradientRemedyTrainer(Trainer):
    """ESPnet ``Trainer`` applying a two-task gradient rule to shared parameters.

    Model contract: ``forward(**batch)`` returns a dict with ESPnet's
    ``loss``/``stats``/``weight`` plus ``task_losses = {"asr": l_asr, "se":
    l_se}``, two graph-attached losses (0-dim or ``[1]``; ``l_se`` depends only
    on the shared parameters, may not require grad, and may be None), and the
    model defines ``shared_parameters() -> [(name, param)]`` unless
    ``--gr_shared_params`` lists name prefixes. Options, semantics and stats:
    docs/gradient_remedy_trainer.md.
    """

    @classmethod
    @typechecked
    def build_options(cls, args: argparse.Namespace) -> TrainerOptions:
        """Build the options dataclass (stock fields plus ``grad_rule``/``gr_*``)."""
        return build_dataclass(GradientRemedyTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        """Add ``--grad_rule`` and the ``--gr_*`` options (saved in config.yaml)."""
        group = parser.add_argument_group("Gradient rule (GradientRemedyTrainer)")
        group.add_argument(
            "--grad_rule",
            type=str,
            default="gr",
            choices=sorted(gradient_rules.RULES),
            help="How the SE-loss and ASR-loss gradients on the shared (SE "
            "front-end) parameters are combined: sum = plain multi-task learning, "
            "gr = Gradient Remedy (Hu et al. 2023), gr_project_only / "
            "gr_rescale_only = its two steps alone, pcgrad / pcgrad_sym = "
            "PCGrad-style projection; fixed, mgda, imtl_g, cagrad, nash_mtl, "
            "aligned_mtl, gradvac = the baselines of docs/gradient_rules.md.",
        )
        group.add_argument(
            "--gr_K",
            type=float,
            default=5.0,
            help="Gradient Remedy's rescale threshold: rescale when "
            "|G_SE'|/|G_ASR| > K (the released code's K=5).",
        )
        group.add_argument(
            "--grad_rule_conf",
            action=NestedDictAction,
            default=dict(),
            help="The rule's other options, e.g. {c: 0.4} (cagrad), {w_se: 0.3} "
            "(fixed), {beta: 0.01} (gradvac); K comes from --gr_K. See "
            "docs/gradient_rules.md.",
        )
        group.add_argument(
            "--gr_granularity",
            type=str,
            default="tensor",
            choices=list(GRANULARITIES),
            help="tensor: apply the rule to each shared parameter tensor on its "
            "own (the released code); vector: to the whole shared-parameter "
            "vector (the paper's notation).",
        )
        group.add_argument(
            "--gr_apply",
            type=str,
            default="step",
            choices=list(APPLY_MODES),
            help="step: once per optimizer step, on the per-task gradients "
            "accumulated over micro-batches and all-reduced over ranks (invariant "
            "to accum_grad and world size); microbatch: on each rank's "
            "micro-batch before accumulation (the released code's behaviour).",
        )
        group.add_argument(
            "--gr_weights_every",
            type=int,
            default=1,
            help="1: every step computes the rule exactly (two backwards). N > 1 "
            "(whole-vector rules, --gr_granularity vector, --gr_apply step): every "
            "N-th step does; the steps in between reuse its weights (w_asr, w_se) "
            "in one backward at the cost of plain multi-task learning. See "
            "docs/gradient_remedy_trainer.md.",
        )
        group.add_argument(
            "--gr_shared_params",
            type=str_or_none,
            nargs="*",
            default=None,
            help="Name prefixes of the shared parameters (e.g. enh_model.). "
            "Default: the model's shared_parameters() (its SE front-end).",
        )

    # ---------------------------------------------------------------- the epoch

    @classmethod
    @typechecked
    def train_one_epoch(
        cls,
        model: torch.nn.Module,
        iterator: Iterable[Tuple[List[str], Dict[str, torch.Tensor]]],
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        scaler: Optional[torch.amp.GradScaler],
        reporter: SubReporter,
        summary_writer,
        options: GradientRemedyTrainerOptions,
        distributed_option: DistributedOption,
    ) -> bool:
        """Train one epoch; True when every step had a non-finite gradient."""
        distributed = distributed_option.distributed
        cls._check_supported(model, options, distributed)
        device = "cuda" if options.ngpu > 0 else "cpu"
        accum_grad = options.accum_grad
        log_interval = options.log_interval
        if log_interval is None:
            try:
                log_interval = max(len(iterator) // 20, 10)
            except TypeError:
                log_interval = 100

        state = StepState(
            buffer=cls._build_buffer(cls._unwrap(model), options),
            rule=cls._build_rule(options),
            microbatch_apply=options.gr_apply == "microbatch",
            lag=LaggedWeights(options.gr_weights_every)
            if options.gr_weights_every > 1
            else None,
        )
        cls._load_rule_state(state, options, reporter.epoch, device)
        state.buffer.install()
        model.train()
        all_steps_are_invalid = True
        pending = 0  # micro-batches accumulated since the last optimizer step
        # [DDP] ranks may hold different numbers of batches: a finished rank says
        # so before every batch and all ranks stop together (stock protocol).
        iterator_stop = torch.tensor(0, device=device)
        try:
            for iiter, (utt_id, batch) in enumerate(
                reporter.measure_iter_time(iterator, "iter_time"), 1
            ):
                assert isinstance(batch, dict), type(batch)
                if distributed:
                    torch.distributed.all_reduce(iterator_stop, SUM)
                    if iterator_stop > 0:
                        break
                batch["utt_id"] = utt_id
                batch = to_device(batch, device)
                if options.no_forward_run:
                    all_steps_are_invalid = False
                    continue

                cls._micro_batch(
                    model, batch, state, scaler, reporter, options, distributed
                )
                pending += 1
                if iiter % accum_grad == 0:
                    stepped = cls._optimizer_step(
                        model,
                        state,
                        optimizers,
                        schedulers,
                        scaler,
                        reporter,
                        options,
                        distributed,
                    )
                    all_steps_are_invalid &= not stepped
                    pending = 0

                reporter.next()
                if iiter % log_interval == 0:
                    logging.info(reporter.log_message(-log_interval))
                    if summary_writer is not None:
                        reporter.tensorboard_add_scalar(summary_writer, -log_interval)
                    if options.use_wandb:
                        reporter.wandb_log()
            else:
                if distributed:
                    iterator_stop.fill_(1)
                    torch.distributed.all_reduce(iterator_stop, SUM)
        finally:
            state.buffer.close()
            for optimizer in optimizers:
                optimizer.zero_grad()
        cls._save_rule_state(state, options, reporter.epoch, distributed_option)
        if pending:
            logging.warning(
                f"The last {pending} micro-batch(es) of the epoch were fewer than "
                f"accum_grad={accum_grad}: their gradients were dropped (stock "
                "ESPnet would add them to the next epoch's first step)"
            )
        return all_steps_are_invalid

    @classmethod
    def _micro_batch(
        cls,
        model: torch.nn.Module,
        batch: Dict[str, torch.Tensor],
        state: StepState,
        scaler: Optional[torch.amp.GradScaler],
        reporter: SubReporter,
        options: GradientRemedyTrainerOptions,
        distributed: bool,
    ) -> None:
        """Forward and per-task gradients of one micro-batch, into the buffer
        (a lagged step: one backward with the kept weights, into ``.grad``)."""
        lagged = state.lagged
        with cls._no_sync(model):
            with reporter.measure_time("forward_time"):
                with cls._asr_input_scale(model, state.lag.weights[0] if lagged else None):
                    losses, stats, weight = cls._forward(
                        model, batch, scaler, options, distributed
                    )
            reporter.register(stats, weight)
            with reporter.measure_time("backward_time"):
                if lagged:
                    cls._weighted_backward(losses, state.lag.weights[1], scaler)
                else:
                    cls._task_gradients(losses, state.buffer, scaler)
        if state.microbatch_apply:
            stats, _ = cls._apply_rule(state.rule, state.buffer, state.microbatch_sum)
            state.rule_stats.append(stats)

    @classmethod
    def _optimizer_step(
        cls,
        model: torch.nn.Module,
        state: StepState,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        scaler: Optional[torch.amp.GradScaler],
        reporter: SubReporter,
        options: GradientRemedyTrainerOptions,
        distributed: bool,
    ) -> bool:
        """Reduce, apply the rule, clip and step, sync buffers, report.

        Returns whether the optimizers stepped (False: non-finite gradient).
        """
        buffer, lag, lagged = state.buffer, state.lag, state.lagged
        if state.microbatch_apply:
            buffer.asr_shared.copy_(state.microbatch_sum)
            state.microbatch_sum.zero_()
        buffer.record_uses()
        cls._reduce(buffer, distributed, with_se=not lagged)
        new_weights, lag_stats = None, None
        if lagged:
            # The rule was applied by the backward itself: report its weights.
            nan = lag.weights.new_full((_GRAM_STATS,), math.nan)
            state.rule_stats.append(torch.cat([nan, lag.weights]))
        elif not state.microbatch_apply:
            stats, weights = cls._apply_rule(state.rule, buffer)
            state.rule_stats.append(stats)
            if lag is not None:
                new_weights = torch.cat([weights.w_asr, weights.w_se])
                lag_stats = cls._weights_drift(lag.weights, new_weights)
        rule_stats = cls._host_step_stats(state.rule_stats, buffer, lag_stats)
        state.rule_stats = []
        grad_norm = cls._clip_and_step(
            model, optimizers, schedulers, scaler, reporter, options
        )
        stepped = bool(torch.isfinite(grad_norm))
        if lag is not None:
            # gr_cos is finite iff both task gradients are finite and non-zero.
            keep = stepped and math.isfinite(rule_stats["gr_cos"])
            if not keep:
                rule_stats.pop("gr_w_drift", None)
            lag.after_step(new_weights, keep)
        if distributed:
            cls._broadcast_buffers(cls._unwrap(model))
        cls._report_step(
            reporter,
            rule_stats,
            grad_norm,
            scaler,
            optimizers,
            options,
            state.start_time,
        )
        state.start_time = time.perf_counter()
        buffer.install()
        return stepped

    # ----------------------------------------------------------- set-up helpers

    @classmethod
    def _check_supported(
        cls,
        model: torch.nn.Module,
        options: GradientRemedyTrainerOptions,
        distributed: bool,
    ) -> None:
        if options.ngpu > 1 and not distributed:
            raise RuntimeError(
                "GradientRemedyTrainer supports one process per device (DDP): use "
                "--multiprocessing_distributed true with --ngpu > 1, not "
                "DataParallel"
            )
        if options.sharded_ddp:
            raise RuntimeError("GradientRemedyTrainer does not support --sharded_ddp")
        if options.gr_granularity not in GRANULARITIES:
            raise ValueError(f"gr_granularity must be one of {GRANULARITIES}")
        if options.gr_apply not in APPLY_MODES:
            raise ValueError(f"gr_apply must be one of {APPLY_MODES}")
        if options.gr_weights_every < 1:
            raise ValueError(
                f"--gr_weights_every must be >= 1, got {options.gr_weights_every}"
            )
        if options.gr_weights_every > 1:
            cls._check_lag_supported(cls._unwrap(model), options)
        if options.create_graph_in_tensorboard:
            logging.warning(
                "GradientRemedyTrainer ignores --create_graph_in_tensorboard"
            )
        if distributed and not isinstance(model, DistributedDataParallel):
            raise RuntimeError(
                "distributed training expects the model wrapped in "
                "DistributedDataParallel"
            )

    @classmethod
    def _check_lag_supported(
        cls, core: torch.nn.Module, options: GradientRemedyTrainerOptions
    ) -> None:
        """--gr_weights_every > 1 needs one pair of weights per step, applied by
        the model at the one point where the SE front-end feeds the ASR branch."""
        where = f"--gr_weights_every {options.gr_weights_every}"
        if options.gr_granularity != "vector":
            raise ValueError(
                f"{where} needs --gr_granularity vector: a per-tensor rule has one "
                "pair of weights per SE tensor, and one backward cannot give each "
                "tensor its own mix of the two tasks (scaling the ASR gradient where "
                "it enters the SE front-end scales every SE tensor alike)"
            )
        if options.gr_apply != "step":
            raise ValueError(
                f"{where} needs --gr_apply step (one pair of weights per optimizer "
                "step)"
            )
        if options.gr_shared_params:
            raise ValueError(
                f"{where} takes the shared parameters from the model's "
                "shared_parameters() (exactly the parameters upstream of its "
                "scale_asr_input_gradient point); drop --gr_shared_params"
            )
        if not callable(getattr(core, "scale_asr_input_gradient", None)):
            raise RuntimeError(
                f"{where} needs a model with a scale_asr_input_gradient(coeff) "
                "context manager (as TwoTaskEnhS2TModel has) that scales the ASR "
                "loss's gradient entering the SE front-end; "
                f"{type(core).__name__} has none"
            )

    @classmethod
    def _build_rule(
        cls, options: GradientRemedyTrainerOptions
    ) -> gradient_rules.GradientRule:
        """The configured rule: ``--grad_rule_conf``, plus ``--gr_K`` for the
        rules that take a K."""
        conf = dict(options.grad_rule_conf or {})
        if "K" in conf:
            raise ValueError("--grad_rule_conf: give K with --gr_K")
        rule_cls = gradient_rules.RULES[options.grad_rule]
        if "K" in inspect.signature(rule_cls.__init__).parameters:
            conf["K"] = options.gr_K
        return gradient_rules.get_rule(options.grad_rule, **conf)

    @staticmethod
    def _rule_state_path(options: GradientRemedyTrainerOptions, epoch: int) -> Path:
        """Where a stateful rule's state after ``epoch`` is kept."""
        return Path(options.output_dir) / "grad_rule_state" / f"{epoch}epoch.pth"

    @classmethod
    def _load_rule_state(
        cls,
        state: StepState,
        options: GradientRemedyTrainerOptions,
        epoch: int,
        device: str,
    ) -> None:
        """Continue a stateful rule (gradvac) and the lagged weights from the
        previous epoch's state.

        ESPnet's checkpoint holds only the model, optimizers, schedulers, scaler
        and reporter, and the rule is rebuilt every epoch, so the state of epoch
        ``e`` is saved to ``grad_rule_state/<e>epoch.pth`` before the
        checkpoint of epoch ``e``: a resumed run finds exactly its state.
        """
        if not (state.rule.stateful or state.lag is not None) or epoch <= 1:
            return
        path = cls._rule_state_path(options, epoch - 1)
        if not path.exists():
            logging.warning(
                f"{path} is missing: {state.rule!r} (and the lagged weights) "
                "start from scratch"
            )
            return
        saved = torch.load(path, map_location="cpu")
        if state.lag is not None:
            state.lag.load_state_dict(saved, device)
        if state.rule.stateful:
            rule_keys = {k: v for k, v in saved.items() if not k.startswith("lagged_")}
            state.rule.load_state_dict(rule_keys)

    @classmethod
    def _save_rule_state(
        cls,
        step_state: StepState,
        options: GradientRemedyTrainerOptions,
        epoch: int,
        distributed_option: DistributedOption,
    ) -> None:
        """Rank 0 writes a stateful rule's state and the lagged weights
        (atomically). Every rank has the same state in --gr_apply step mode
        (computed from all-reduced gradients) and reads the file back next epoch
        (a shared output_dir, as ESPnet's resume assumes)."""
        state = step_state.rule.state_dict()
        if step_state.lag is not None:
            state.update(step_state.lag.state_dict())
        if not state or distributed_option.dist_rank not in (None, 0):
            return
        with atomic_path(cls._rule_state_path(options, epoch)) as tmp:
            torch.save({k: v.cpu() for k, v in state.items()}, tmp)

    @classmethod
    def shared_parameters(
        cls, core: torch.nn.Module, prefixes: Optional[Sequence[str]]
    ) -> List[Tuple[str, torch.nn.Parameter]]:
        """The trainable shared parameters: by name prefix, else the model's list."""
        if prefixes:
            named = [
                (n, p)
                for n, p in core.named_parameters()
                if any(n.startswith(prefix) for prefix in prefixes)
            ]
            source = f"--gr_shared_params {' '.join(prefixes)}"
        elif hasattr(core, "shared_parameters"):
            named = list(core.shared_parameters())
            source = f"{type(core).__name__}.shared_parameters()"
        else:
            raise RuntimeError(
                f"{type(core).__name__} has no shared_parameters() method; give "
                "the shared parameters' name prefixes with --gr_shared_params"
            )
        named = [(n, p) for n, p in named if p.requires_grad]
        if not named:
            raise RuntimeError(f"no trainable shared parameters selected by {source}")
        return named

    @classmethod
    def _build_buffer(
        cls, core: torch.nn.Module, options: GradientRemedyTrainerOptions
    ) -> GradientBuffer:
        shared = [p for _, p in cls.shared_parameters(core, options.gr_shared_params)]
        shared_ids = {id(p) for p in shared}
        rest = [
            p for p in core.parameters() if p.requires_grad and id(p) not in shared_ids
        ]
        if options.gr_granularity == "tensor":
            block_sizes = [p.numel() for p in shared]
        else:
            block_sizes = [sum(p.numel() for p in shared)]
        return GradientBuffer(shared, rest, block_sizes)

    @staticmethod
    def _no_sync(model: torch.nn.Module):
        """Keep DDP's reducer out of the step: the trainer reduces per task itself."""
        if isinstance(model, DistributedDataParallel):
            return model.no_sync()
        return nullcontext()

    @staticmethod
    def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
        if isinstance(model, DistributedDataParallel):
            return model.module
        return model

    # ---------------------------------------------------------- the named steps

    @classmethod
    def _forward(
        cls,
        model: torch.nn.Module,
        batch: Dict[str, torch.Tensor],
        scaler: Optional[torch.amp.GradScaler],
        options: GradientRemedyTrainerOptions,
        distributed: bool,
    ) -> Tuple[TaskLosses, Dict[str, torch.Tensor], torch.Tensor]:
        """Forward one micro-batch; return the scaled task losses, stats, weight.

        Stats that are None are dropped as in stock ESPnet, except under DDP
        where they become NaN: every rank must all-gather the same keys, or
        ``recursive_average`` deadlocks (NaN is left out of the mean).
        """
        # Stock ESPnet: CUDA autocast iff use_amp (bf16 where supported); it does
        # nothing to CPU ops, so on CPU it is left off (no warning).
        use_autocast = scaler is not None and options.ngpu > 0
        with torch.autocast("cuda", enabled=use_autocast, **autocast_args):
            retval = model(**batch)
            cls._check_return(model, retval)
            stats, weight = retval["stats"], retval["weight"]
            if distributed:
                nan = torch.full(weight.shape, math.nan, device=retval["loss"].device)
                stats = {k: (nan if v is None else v) for k, v in stats.items()}
            else:
                stats = {k: v for k, v in stats.items() if v is not None}
            l_asr, l_se = retval["task_losses"]["asr"], retval["task_losses"]["se"]
            if distributed:
                local_weight = weight
                stats, weight = recursive_average(stats, weight, distributed)
                l_asr = cls._batch_weighted(l_asr, local_weight, weight)
                if l_se is not None:
                    l_se = cls._batch_weighted(l_se, local_weight, weight)
            scale = 1.0 / options.accum_grad
            losses = TaskLosses(
                asr=l_asr.reshape(()) * scale,
                se=l_se.reshape(()) * scale
                if l_se is not None and l_se.requires_grad
                else None,
            )
        return losses, stats, weight

    @staticmethod
    def _check_return(model: torch.nn.Module, retval) -> None:
        """The model must return ESPnet's dict plus ``task_losses``."""
        task_losses = retval.get("task_losses") if isinstance(retval, dict) else None
        if not isinstance(task_losses, dict) or not {"asr", "se"} <= set(task_losses):
            name = type(GradientRemedyTrainer._unwrap(model)).__name__
            got = (
                f"a dict with keys {sorted(retval)}"
                + (f", task_losses keys {sorted(task_losses)}" if task_losses else "")
                if isinstance(retval, dict)
                else type(retval).__name__
            )
            raise RuntimeError(
                "GradientRemedyTrainer needs the model's forward to return a dict "
                "with 'task_losses': {'asr': loss, 'se': loss} besides 'loss', "
                f"'stats' and 'weight'; {name} returned {got}"
            )
        if retval.get("optim_idx") is not None:
            raise RuntimeError("GradientRemedyTrainer does not support optim_idx")

    @staticmethod
    def _batch_weighted(
        task_loss: torch.Tensor, local_weight: torch.Tensor, global_weight: torch.Tensor
    ) -> torch.Tensor:
        """``task_loss * w_local / W_global``: this rank's share of the global mean."""
        if task_loss.numel() == 1:
            task_loss = task_loss.reshape(local_weight.shape)
        return (task_loss * local_weight.to(task_loss.dtype)).sum() / global_weight

    @classmethod
    def _task_gradients(
        cls,
        losses: TaskLosses,
        buffer: GradientBuffer,
        scaler: Optional[torch.amp.GradScaler],
    ) -> None:
        """G_SE: autograd.grad on the shared parameters; G_ASR: one backward.

        The SE gradient comes first and keeps the graph, which the ASR backward
        then frees. Under a GradScaler both losses are scaled by the same
        factor; the rules are positively homogeneous, so combining in scaled
        space and unscaling afterwards gives the unscaled result.
        """

        def scaled(loss: torch.Tensor) -> torch.Tensor:
            return loss if scaler is None else scaler.scale(loss)

        if losses.se is not None:
            grads = torch.autograd.grad(
                scaled(losses.se), buffer.shared, retain_graph=True, allow_unused=True
            )
            buffer.add_se(grads)
        if losses.asr.requires_grad:
            scaled(losses.asr).backward()

    @staticmethod
    def _asr_input_scale(model: torch.nn.Module, coeff: Optional[torch.Tensor]):
        """The model's ``scale_asr_input_gradient(coeff)``; nothing when None."""
        if coeff is None:
            return nullcontext()
        return GradientRemedyTrainer._unwrap(model).scale_asr_input_gradient(coeff)

    @classmethod
    def _weighted_backward(
        cls,
        losses: TaskLosses,
        w_se: torch.Tensor,
        scaler: Optional[torch.amp.GradScaler],
    ) -> None:
        """A lagged step's one backward: ``l_asr + w_se * l_se`` into ``.grad``.

        The forward ran inside ``scale_asr_input_gradient(w_asr)``, so the SE
        front-end receives ``w_asr G_ASR + w_se G_SE`` and every other parameter
        ``G_ASR``, as an exact whole-vector step with these weights.
        """
        total = losses.asr
        if losses.se is not None:
            total = total + w_se.to(losses.se.dtype) * losses.se
        if total.requires_grad:
            (total if scaler is None else scaler.scale(total)).backward()

    @classmethod
    def _reduce(
        cls, buffer: GradientBuffer, distributed: bool, with_se: bool = True
    ) -> None:
        """Sum the buffer (both tasks, all parameters, uses) over ranks; a lagged
        step (``with_se`` False) has no separate G_SE to sum."""
        if distributed:
            torch.distributed.all_reduce(buffer.flat if with_se else buffer.head, SUM)

    @staticmethod
    def _weights_drift(
        previous: Optional[torch.Tensor], new: torch.Tensor
    ) -> torch.Tensor:
        """``[1]``: ``|new - previous| / |previous|`` of (w_asr, w_se); NaN at first."""
        if previous is None:
            return new.new_full((1,), math.nan)
        return ((new - previous).norm() / previous.norm()).reshape(1)

    @classmethod
    def _apply_rule(
        cls,
        rule: gradient_rules.GradientRule,
        buffer: GradientBuffer,
        microbatch_sum: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, gradient_rules.RuleWeights]:
        """Combine G_ASR and G_SE on the shared parameters; return the gr_* stats
        and the rule's weights (``[n_blocks]`` each).

        Step mode writes the result into ``.grad`` (the G_ASR segment).
        Microbatch mode adds it to ``microbatch_sum`` and clears both task
        segments for the next micro-batch. A non-finite task gradient stays
        non-finite through every rule (combine_blocks then falls back to the
        plain sum), so :meth:`_clip_and_step` skips the step as stock ESPnet.
        """
        combined, gram, weights = gradient_rules.combine_blocks(
            rule, buffer.asr_shared, buffer.se_shared, buffer.block_sizes
        )
        if microbatch_sum is None:
            buffer.asr_shared.copy_(combined)
        else:
            microbatch_sum.add_(combined)
            buffer.asr_shared.zero_()
            buffer.se_shared.zero_()
        return cls.rule_stats(gram, weights), weights

    @staticmethod
    def rule_stats(
        gram: gradient_rules.BlockGram, weights: gradient_rules.RuleWeights
    ) -> torch.Tensor:
        """The gr_* stats of one rule application: ``[8]`` in GR_STAT_NAMES order.

        gr_cos and gr_norm_ratio are whole-vector quantities (sums of the block
        Gram entries), the rates are fractions of blocks, gr_theta is the mean
        over projected blocks of arctan(|G_SE|/|G_ASR|) in degrees (the angle
        GR's projection lands at; NaN when no block was projected), gr_w_asr and
        gr_w_se the rule's weights (means over blocks).
        """
        aa, ss, asr_se = gram.aa.sum(), gram.ss.sum(), gram.as_.sum()
        projected = weights.projected.to(aa.dtype)
        theta = torch.rad2deg(torch.atan2(gram.ss.sqrt(), gram.aa.sqrt()))
        return torch.stack(
            [
                asr_se / (aa.sqrt() * ss.sqrt()),
                (gram.as_ < 0).to(aa.dtype).mean(),
                ss.sqrt() / aa.sqrt(),
                projected.mean(),
                weights.rescaled.to(aa.dtype).mean(),
                (theta * projected).sum() / projected.sum(),
                weights.w_asr.mean(),
                weights.w_se.mean(),
            ]
        )

    @classmethod
    def _host_step_stats(
        cls,
        rule_stats: List[torch.Tensor],
        buffer: GradientBuffer,
        lag_stats: Optional[torch.Tensor] = None,
    ) -> Dict[str, float]:
        """The one host sync per step: gr_* stats (mean over applications), the
        lagged-weights stats when given, uses.

        Parameters that received no gradient on any rank get ``.grad = None``.
        """
        stats = torch.stack(rule_stats).nanmean(dim=0).to(buffer.flat.dtype)
        names = GR_STAT_NAMES
        if lag_stats is not None:
            stats, names = torch.cat([stats, lag_stats]), names + LAG_STAT_NAMES
        host = torch.cat([stats, buffer.uses]).cpu().tolist()
        n_stats = len(names)
        buffer.release_unused([u > 0 for u in host[n_stats:]])
        return dict(zip(names, host[:n_stats]))

    @classmethod
    def _clip_and_step(
        cls,
        model: torch.nn.Module,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[Optional[AbsScheduler]],
        scaler: Optional[torch.amp.GradScaler],
        reporter: SubReporter,
        options: GradientRemedyTrainerOptions,
    ) -> torch.Tensor:
        """Stock ESPnet's update: unscale, noise, clip, skip if non-finite, step.

        Returns the gradient norm before clipping (non-finite: the step was
        skipped, but the scaler still steps and updates, as in stock ESPnet).
        """
        if scaler is not None:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
        if options.grad_noise:
            add_gradient_noise(
                model,
                reporter.get_total_count(),
                duration=100,
                eta=1.0,
                scale_factor=0.55,
            )
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(),
            max_norm=options.grad_clip,
            norm_type=options.grad_clip_type,
        )
        if not torch.isfinite(grad_norm):
            logging.warning(
                f"The grad norm is {grad_norm}. Skipping updating the model."
            )
            if scaler is not None:
                for optimizer in optimizers:
                    scaler.step(optimizer)  # skips optimizer.step on inf/nan
                    scaler.update()
        else:
            with reporter.measure_time("optim_step_time"):
                for optimizer, scheduler in zip(optimizers, schedulers):
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    if isinstance(scheduler, AbsBatchStepScheduler):
                        scheduler.step()
        for optimizer in optimizers:
            optimizer.zero_grad()
        return grad_norm

    @staticmethod
    def _broadcast_buffers(core: torch.nn.Module) -> None:
        """Rank 0's module buffers (BatchNorm running stats) win, as in stock DDP.

        ``no_sync`` also stops DDP's own buffer broadcast, so without this the
        running statistics would drift apart per rank.
        """
        works = [
            torch.distributed.broadcast(b, 0, async_op=True) for b in core.buffers()
        ]
        for work in works:
            work.wait()

    @classmethod
    def _report_step(
        cls,
        reporter: SubReporter,
        rule_stats: Dict[str, float],
        grad_norm: torch.Tensor,
        scaler: Optional[torch.amp.GradScaler],
        optimizers: Sequence[torch.optim.Optimizer],
        options: GradientRemedyTrainerOptions,
        start_time: float,
    ) -> None:
        """Register the step's stats: stock ESPnet's names plus the gr_* ones."""
        if torch.isfinite(grad_norm):
            reporter.register(
                {
                    "grad_norm": grad_norm,
                    "clip": 100.0 if grad_norm > options.grad_clip else 0.0,
                    "loss_scale": scaler.get_scale() if scaler is not None else 1.0,
                }
            )
        # NaN (gr_theta when no block was projected, gr_cos when G_SE = 0, ...) is
        # left out, as the reporter's mean would leave it out anyway.
        reporter.register({k: v for k, v in rule_stats.items() if math.isfinite(v)})
        lrs = {
            f"optim{i}_lr{j}": group["lr"]
            for i, optimizer in enumerate(optimizers)
            for j, group in enumerate(optimizer.param_groups)
            if "lr" in group
        }
        reporter.register(dict(lrs, train_time=time.perf_counter() - start_time))
