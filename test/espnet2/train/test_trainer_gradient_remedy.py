"""Unit tests of GradientRemedyTrainer on a tiny two-task model (CPU, in-process).

The toy model has the contract of the joint SE + ASR model: a shared front-end
(``enh_model``) trained by both losses, an ASR-only back-end (``s2t_model``),
per-utterance losses averaged over the batch, and a dict return with graph-attached
``task_losses``. Its per-utterance computation does not depend on the batch
composition, so any two ways of splitting the same effective batch into
micro-batches and ranks must produce the same update (spec: "Semantics across
micro-batches and devices").
"""

import contextlib
import datetime
import math
import os
import socket
import sys
import tempfile
import traceback
from typing import Dict, List, Optional, Tuple

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from espnet2.layers.gradient_scale import scale_gradient
from espnet2.schedulers.warmup_lr import WarmupLR
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer
from espnet2.train.trainer_gradient_remedy import (
    APPLY_MODES,
    GR_STAT_NAMES,
    GradientRemedyTrainer,
    GradientRemedyTrainerOptions,
)

DIM = 6
Batch = Tuple[List[str], Dict[str, torch.Tensor]]


class ToyTwoTaskModel(torch.nn.Module):
    """Shared front-end + ASR-only head; SE loss only on utterances ending in SIMU.

    ``se_scale`` makes the SE gradient dominant (so GR's rescale branch is
    reachable); ``batchnorm`` adds a BatchNorm buffer in the ASR head (its
    running stats depend on the rank's data, exercising the buffer broadcast);
    ``unused`` is a parameter no loss reaches. ``scale_asr_input_gradient`` is
    the joint model's hook for one-backward (lagged) rules: the ASR loss's
    gradient entering the front-end output is scaled.
    """

    def __init__(self, se_scale: float = 1.0, batchnorm: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.enh_model = torch.nn.Sequential(
            torch.nn.Linear(DIM, DIM), torch.nn.Tanh(), torch.nn.Linear(DIM, DIM)
        )
        head = [torch.nn.Linear(DIM, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)]
        if batchnorm:
            head.insert(1, torch.nn.BatchNorm1d(8, affine=False))
        self.s2t_model = torch.nn.Sequential(*head)
        self.unused = torch.nn.Linear(2, 2)
        self.se_scale = se_scale
        self.asr_input_scale = None

    @contextlib.contextmanager
    def scale_asr_input_gradient(self, coeff):
        self.asr_input_scale = coeff
        try:
            yield
        finally:
            self.asr_input_scale = None

    def shared_parameters(self):
        named = self.named_parameters()
        return [(n, p) for n, p in named if n.startswith("enh_model.")]

    def forward(self, speech, speech_ref1, target, utt_id=None):
        enhanced = self.enh_model(speech)
        has_ref = torch.tensor(
            [u.endswith("SIMU") for u in utt_id], dtype=speech.dtype
        )
        per_utt_se = ((enhanced - speech_ref1) ** 2).mean(-1) * has_ref
        loss_se = self.se_scale * per_utt_se.mean()
        asr_input = enhanced
        if self.asr_input_scale is not None:
            asr_input = scale_gradient(enhanced, self.asr_input_scale)
        loss_asr = ((self.s2t_model(asr_input) - target) ** 2).mean(-1).mean()
        loss = loss_asr + loss_se
        stats = dict(
            loss=loss.detach(),
            loss_asr=loss_asr.detach(),
            loss_enh=loss_se.detach() if bool(has_ref.any()) else None,
        )
        loss, stats, weight = force_gatherable(
            (loss, stats, speech.shape[0]), loss.device
        )
        return {
            "loss": loss,
            "stats": stats,
            "weight": weight,
            "task_losses": {"asr": loss_asr, "se": loss_se},
        }


def make_data(n_utt: int, seed: int = 1, conflict: bool = True, real_every: int = 0):
    """Utterances u000..: features, reference and targets; optionally some REAL ones.

    With ``conflict`` the reference pulls the front-end one way and the ASR target
    the other, so per-tensor dot products are negative for many tensors.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_utt, DIM, generator=g)
    ref = -x if conflict else x
    target = torch.randn(n_utt, 3, generator=g) + (x[:, :3] if conflict else 0)
    ids = [
        f"u{i:03d}_{'REAL' if real_every and i % real_every == 0 else 'SIMU'}"
        for i in range(n_utt)
    ]
    return ids, x, ref, target


def batches(data, batch_size: int, rank: int = 0, world_size: int = 1) -> List[Batch]:
    """Consecutive global batches, each split ``[rank::world_size]`` as ESPnet does."""
    ids, x, ref, target = data
    out = []
    for s in range(0, len(ids), batch_size):
        sel = list(range(s, min(s + batch_size, len(ids))))[rank::world_size]
        out.append(
            (
                [ids[i] for i in sel],
                {"speech": x[sel], "speech_ref1": ref[sel], "target": target[sel]},
            )
        )
    return out


#: Where runs without an output_dir of their own write (lagged weights, gradvac
#: state); removed when the test process exits.
_OUTPUT_ROOT = tempfile.TemporaryDirectory(prefix="gr_trainer_test_")


def make_options(**overrides) -> GradientRemedyTrainerOptions:
    """Trainer options: the gr_* CLI defaults, clipping effectively off (so it does
    not mask differences between updates), everything else inert."""
    values = dict(
        ngpu=0, resume=False, use_amp=False, train_dtype="float32", grad_noise=False,
        accum_grad=1, grad_clip=1e6, grad_clip_type=2.0, log_interval=None,
        no_forward_run=False, use_matplotlib=False, use_tensorboard=False,
        use_wandb=False, adapter="lora", use_adapter=False, save_strategy="all",
        output_dir=_OUTPUT_ROOT.name, max_epoch=1, seed=0, sharded_ddp=False, patience=None,
        keep_nbest_models=1, nbest_averaging_interval=0, early_stopping_criterion=(),
        best_model_criterion=(), val_scheduler_criterion=(), unused_parameters=False,
        wandb_model_log_interval=-1, create_graph_in_tensorboard=False,
        gradient_as_bucket_view=True, ddp_comm_hook=None,
        grad_rule="gr", gr_K=5.0, gr_granularity="tensor", gr_apply="step",
        gr_shared_params=None,
    )
    values.update(overrides)
    return GradientRemedyTrainerOptions(**values)


def train(
    model: torch.nn.Module,
    data_batches: List[Batch],
    options,
    trainer=GradientRemedyTrainer,
    optimizer: Optional[torch.optim.Optimizer] = None,
    distributed: bool = False,
    scaler: Optional[torch.amp.GradScaler] = None,
    scheduler=None,
):
    """Drive ``trainer.train_one_epoch`` as ESPnet's ``run()`` does."""
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        invalid = trainer.train_one_epoch(
            model=model,
            iterator=data_batches,
            optimizers=[optimizer],
            schedulers=[scheduler],
            scaler=scaler,
            reporter=sub,
            summary_writer=None,
            options=options,
            distributed_option=DistributedOption(distributed=distributed),
        )
    return reporter, invalid


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def assert_close_rel(a: torch.Tensor, b: torch.Tensor, rtol: float):
    err = (a - b).norm() / b.norm()
    assert err <= rtol, f"relative difference {err:.3e} > {rtol:.1e}"


RULE_CONFIGS = [
    dict(grad_rule="sum"),
    dict(grad_rule="gr", gr_granularity="tensor"),
    dict(grad_rule="gr", gr_granularity="vector"),
    # Lagged weights: steps 1 and 3 exact, step 2 one backward with step 1's weights.
    *(dict(grad_rule=r, gr_granularity="vector", gr_weights_every=2) for r in ("gr", "pcgrad", "mgda")),
]


# ----------------------------------------------------------------- equivalences


def test_sum_rule_reproduces_stock_trainer_updates_and_stats():
    """grad_rule sum = ESPnet's Trainer: same parameters and loss stats after 3 steps.

    Summing the two task gradients instead of one backward of the summed loss
    changes only float rounding (~1e-7 relative per step in float32). The stat
    "loss" is left out: with accum_grad > 1 in one process the stock trainer's
    in-place ``loss /= accum_grad`` also divides ``stats["loss"]``, which models
    build as ``loss.detach()`` (same storage); ours reports the undivided value.
    """
    data = batches(make_data(24), batch_size=2)
    stock, ours = ToyTwoTaskModel(), ToyTwoTaskModel()
    rep_stock, _ = train(stock, data, make_options(accum_grad=4), trainer=Trainer)
    rep_ours, _ = train(ours, data, make_options(accum_grad=4, grad_rule="sum"))
    assert_close_rel(flat_params(ours), flat_params(stock), 1e-6)
    for key in ("loss_asr", "loss_enh", "grad_norm"):
        a = rep_ours.get_value("train", key)
        b = rep_stock.get_value("train", key)
        assert math.isclose(a, b, rel_tol=1e-6), (key, a, b)


@pytest.mark.parametrize(
    "conf", RULE_CONFIGS, ids=lambda c: "-".join(map(str, c.values()))
)
def test_accumulated_step_equals_one_large_batch(conf):
    """Per-task accumulation: (batch 2, accum 4) == (batch 8, accum 1) for every rule.

    The rule sees the accumulated per-task gradients, i.e. the gradients of the
    effective batch of 8, so the update is the same (float rounding only).
    """
    data = make_data(24)
    small, large = ToyTwoTaskModel(), ToyTwoTaskModel()
    train(small, batches(data, 2), make_options(accum_grad=4, **conf))
    train(large, batches(data, 8), make_options(accum_grad=1, **conf))
    assert_close_rel(flat_params(small), flat_params(large), 1e-5)


def test_microbatch_application_differs_for_gr_and_agrees_for_sum():
    """gr_apply=microbatch remedies each micro-batch: different from step mode for GR
    on conflicting gradients (the rule is not additive), identical for sum (it is)."""
    data = batches(make_data(24, conflict=True), 2)
    results = {}
    for rule in ("sum", "gr"):
        for apply in ("step", "microbatch"):
            model = ToyTwoTaskModel()
            options = make_options(accum_grad=4, grad_rule=rule, gr_apply=apply)
            train(model, data, options)
            results[rule, apply] = flat_params(model)
    assert_close_rel(results["sum", "microbatch"], results["sum", "step"], 1e-6)
    diff = (results["gr", "microbatch"] - results["gr", "step"]).norm()
    assert diff / results["gr", "step"].norm() > 1e-4


def test_gr_changes_the_update_only_on_shared_parameters():
    """GR vs sum: the ASR-only parameters get G_ASR either way (same first step)."""
    data = batches(make_data(8), 8)
    by_rule = {}
    for rule in ("sum", "gr"):
        model = ToyTwoTaskModel()
        train(model, data, make_options(grad_rule=rule))
        by_rule[rule] = model
    s2t = [flat_params(by_rule[r].s2t_model) for r in ("sum", "gr")]
    enh = [flat_params(by_rule[r].enh_model) for r in ("sum", "gr")]
    torch.testing.assert_close(s2t[0], s2t[1], rtol=0, atol=0)
    assert (enh[0] - enh[1]).abs().max() > 1e-4


# ------------------------------------------------------------------ step logic


def test_non_finite_se_gradient_skips_the_step_like_stock():
    """A NaN in G_SE must not be remedied into a finite update: the step is skipped,
    grad_norm is not reported (stock behaviour), and an epoch in which every step
    was skipped reports all_steps_are_invalid=True (run() then stops training)."""

    class NanSE(ToyTwoTaskModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out["task_losses"]["se"] = out["task_losses"]["se"] * math.nan
            return out

    model = NanSE()
    before = flat_params(model)
    data = batches(make_data(8), 4)
    reporter, invalid = train(model, data, make_options(accum_grad=2))
    assert invalid is True
    torch.testing.assert_close(flat_params(model), before, rtol=0, atol=0)
    assert not reporter.has("train", "grad_norm") or math.isnan(
        reporter.get_value("train", "grad_norm")
    )
    assert not any(p.grad is not None for p in model.parameters())


def test_grad_scaler_gives_the_unscaled_update_and_backs_off_on_overflow():
    """AMP: both task losses are scaled, the rule combines scaled gradients (it is
    positively homogeneous), then unscale_/clip/step run as in stock ESPnet, so the
    update equals the unscaled run; a NaN step is skipped and the scale halves."""
    data = batches(make_data(24), 2)
    plain, scaled = ToyTwoTaskModel(se_scale=20.0), ToyTwoTaskModel(se_scale=20.0)
    options = make_options(accum_grad=4, grad_rule="gr", gr_K=2.0)
    train(plain, data, options)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    reporter, _ = train(scaled, data, options, scaler=scaler)
    assert_close_rel(flat_params(scaled), flat_params(plain), 1e-5)
    assert reporter.get_value("train", "loss_scale") == 2.0**12

    class NanSE(ToyTwoTaskModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out["task_losses"]["se"] = out["task_losses"]["se"] * math.nan
            return out

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _, invalid = train(NanSE(), batches(make_data(8), 8), make_options(), scaler=scaler)
    assert invalid is True
    assert scaler.get_scale() == 2.0**11  # stock: scaler.update() after a skip


def test_batch_step_scheduler_steps_once_per_optimizer_step():
    """warmuplr (a batch-step scheduler) advances once per optimizer step, not per
    micro-batch, and the reported optim0_lr0 is the rate the last step used."""
    model = ToyTwoTaskModel()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = WarmupLR(opt, warmup_steps=10)
    data = batches(make_data(24), 2)
    reporter, _ = train(
        model, data, make_options(accum_grad=4), optimizer=opt, scheduler=scheduler
    )
    assert scheduler.last_epoch == 3  # 12 micro-batches, accum_grad 4

    def warmup_lr(step_num: int) -> float:  # WarmupLR's formula, base lr 1.0
        return 10**0.5 * min(step_num**-0.5, step_num * 10**-1.5)

    # As in stock ESPnet the rate is registered after the scheduler stepped, i.e.
    # steps 1..3 report the rates of step numbers 2..4.
    expected = sum(warmup_lr(n) for n in (2, 3, 4)) / 3
    assert math.isclose(reporter.get_value("train", "optim0_lr0"), expected)


def test_unused_parameters_keep_grad_none_so_adam_leaves_them_alone():
    """A parameter no loss reaches has .grad None at the optimizer step, as with the
    stock trainer: Adam keeps no state for it and does not move it (a zero gradient
    would still decay it under AdamW)."""
    model = ToyTwoTaskModel()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5)
    before = model.unused.weight.detach().clone()
    train(model, batches(make_data(8), 4), make_options(accum_grad=2), optimizer=opt)
    torch.testing.assert_close(model.unused.weight.detach(), before, rtol=0, atol=0)
    assert model.unused.weight not in opt.state
    assert model.enh_model[0].weight in opt.state


def test_gr_stats_are_reported_per_step_and_match_the_gradients():
    """gr_cos is the whole-vector cosine of G_SE and G_ASR before the rule; the rates
    are fractions of blocks; theta is arctan(|G_SE|/|G_ASR|) on projected blocks."""
    model = ToyTwoTaskModel(se_scale=50.0)
    data = batches(make_data(8), 8)
    # The expected values, from an independent computation of the two gradients.
    ref = ToyTwoTaskModel(se_scale=50.0)
    out = ref(**data[0][1], utt_id=data[0][0])
    shared = [p for _, p in ref.shared_parameters()]
    losses = out["task_losses"]
    g_asr = torch.autograd.grad(losses["asr"], shared, retain_graph=True)
    g_se = torch.autograd.grad(losses["se"], shared)
    g_asr, g_se = (torch.cat([g.reshape(-1) for g in gs]) for gs in (g_asr, g_se))
    reporter, _ = train(model, data, make_options(grad_rule="gr", gr_K=2.0))
    cos = float(g_asr @ g_se / (g_asr.norm() * g_se.norm()))
    assert math.isclose(reporter.get_value("train", "gr_cos"), cos, rel_tol=1e-5)
    ratio = float(g_se.norm() / g_asr.norm())
    reported_ratio = reporter.get_value("train", "gr_norm_ratio")
    assert math.isclose(reported_ratio, ratio, rel_tol=1e-5)
    sizes = [p.numel() for p in shared]
    dots = torch.stack([a @ s for a, s in zip(g_asr.split(sizes), g_se.split(sizes))])
    conflict = float((dots < 0).float().mean())
    assert math.isclose(reporter.get_value("train", "gr_conflict_rate"), conflict)
    for name in GR_STAT_NAMES:
        assert reporter.has("train", name), name
    # With |G_SE| >> |G_ASR| and K=2, GR's rescale acts on at least one block.
    assert reporter.get_value("train", "gr_rescale_rate") > 0
    assert 0 < reporter.get_value("train", "gr_projection_rate") <= 1
    assert 0 < reporter.get_value("train", "gr_theta") < 90


def test_model_without_task_losses_is_rejected_with_a_clear_error():
    class StockLike(ToyTwoTaskModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            return out["loss"], out["stats"], out["weight"]

    with pytest.raises(RuntimeError, match="task_losses"):
        train(StockLike(), batches(make_data(4), 4), make_options())


def test_shared_parameters_by_name_prefix_option():
    """--gr_shared_params selects the shared set by prefix (a model without
    shared_parameters()); a prefix that selects nothing is an error."""
    data = batches(make_data(8), 8)
    by_method, by_prefix = ToyTwoTaskModel(), ToyTwoTaskModel()
    train(by_method, data, make_options())
    train(by_prefix, data, make_options(gr_shared_params=["enh_model."]))
    torch.testing.assert_close(flat_params(by_prefix), flat_params(by_method))
    with pytest.raises(RuntimeError, match="no trainable shared parameters"):
        train(ToyTwoTaskModel(), data, make_options(gr_shared_params=["nothing."]))


# ------------------------------------------------------------ DDP (2 processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Job = Tuple[List[dict], dict]  # (trainer option overrides, data config)


def _ddp_worker(rank: int, world: int, port: int, jobs: List[Job], out: str):
    """One rank: for each job (trainer configs, data config) and each config, train a
    fresh model on this rank's share of each global batch and record its parameters
    and buffers after every step."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    results = []
    for confs, data_conf in jobs:
        data = batches(
            make_data(data_conf["n_utt"], real_every=data_conf.get("real_every", 0)),
            data_conf["batch_size"], rank, world,
        )
        for conf in confs:
            model = ToyTwoTaskModel(batchnorm=data_conf.get("batchnorm", False))
            snapshots = []

            class Recording(GradientRemedyTrainer):
                @classmethod
                def _report_step(cls, *args, **kwargs):
                    super()._report_step(*args, **kwargs)
                    buffers = [b.reshape(-1).float() for b in model.buffers()]
                    snapshots.append(torch.cat([flat_params(model)] + buffers))

            ddp = torch.nn.parallel.DistributedDataParallel(model)
            train(ddp, data, make_options(**conf), trainer=Recording, distributed=True)
            results.append(snapshots)
    torch.save(results, f"{out}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def _ddp_entry(rank: int, world: int, port: int, jobs: List[Job], out: str):
    """Run one rank and leave with ``os._exit``: a normal interpreter exit runs C++
    static destructors while gloo's threads may still be joinable, which aborts
    with "terminate called without an active exception" (exit -6) after all the
    work is done. The exit code then says only whether ``_ddp_worker`` finished."""
    try:
        _ddp_worker(rank, world, port, jobs, out)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _launch(out: str, jobs: List[Job], world: int) -> List[Optional[int]]:
    """One launch of ``world`` ranks on a free port; their exit codes."""
    port = _free_port()
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_ddp_entry, args=(r, world, port, jobs, out))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail("DDP training did not finish within 240 s (deadlock?)")
    return [p.exitcode for p in procs]


def run_ddp(out: str, jobs: List[Job], world: int = 2):
    """Train on ``world`` gloo ranks; returns ``[rank][job config][step] -> state``.

    A failed launch is retried once on a new port: the port is free when picked
    but released before rank 0 binds it, so another process can take it. A real
    failure fails both launches (each rank's traceback is on stderr)."""
    codes = _launch(out, jobs, world)
    if codes != [0] * world:
        codes = [codes, _launch(out, jobs, world)]
        assert codes[1] == [0] * world, f"rank exit codes of two launches: {codes}"
    return [torch.load(f"{out}.{r}") for r in range(world)]


INVARIANCE_JOB = (
    [dict(accum_grad=2, **c) for c in RULE_CONFIGS],
    dict(n_utt=24, batch_size=4),
)
# Global batches of 4 split [rank::2]: rank 0 gets u000, u002 (REAL), rank 1
# gets u001, u003 (SIMU).
MIXED_JOB = (
    [dict(grad_rule="gr", gr_apply=a) for a in APPLY_MODES],
    dict(n_utt=8, batch_size=4, real_every=2, batchnorm=True),
)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """One 2-rank launch (process start-up dominates) for both DDP tests."""
    out = str(tmp_path_factory.mktemp("ddp") / "state")
    per_rank = run_ddp(out, [INVARIANCE_JOB, MIXED_JOB])
    n = len(INVARIANCE_JOB[0])
    return [r[:n] for r in per_rank], [r[n:] for r in per_rank]


@pytest.mark.slow
def test_two_ranks_accum_2_equal_one_rank_accum_4_and_stay_in_sync(ddp_results):
    """(2 ranks over gloo, accum 2) == (1 process, accum 4) for sum and GR (per tensor,
    whole vector): the per-task gradients are all-reduced before the rule, so both
    see the same effective batch of 8; both ranks hold identical parameters after
    every step."""
    per_rank, _ = ddp_results
    for conf, rank0, rank1 in zip(RULE_CONFIGS, *per_rank):
        assert len(rank0) == 3
        for step0, step1 in zip(rank0, rank1):
            torch.testing.assert_close(step0, step1, rtol=0, atol=0)
        single = ToyTwoTaskModel()
        train(single, batches(make_data(24), 2), make_options(accum_grad=4, **conf))
        n = flat_params(single).numel()
        assert_close_rel(rank0[-1][:n], flat_params(single), 1e-5)


@pytest.mark.slow
def test_ranks_with_mixed_real_and_simu_batches_finish_in_sync(ddp_results):
    """Rank 0 sees only REAL utterances (no SE loss: loss_enh None, SE gradient zero)
    while rank 1 sees SIMU ones: the stats collectives must not deadlock, and
    parameters and BatchNorm buffers (whose batch statistics differ per rank before
    the broadcast) must agree after every step, for both rule application modes."""
    _, per_rank = ddp_results
    for rank0, rank1 in zip(*per_rank):
        assert len(rank0) == 2
        for step0, step1 in zip(rank0, rank1):
            torch.testing.assert_close(step0, step1, rtol=0, atol=0)
