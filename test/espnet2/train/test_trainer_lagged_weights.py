"""GradientRemedyTrainer with lagged rule weights (``--gr_weights_every N``).

A whole-vector rule writes ``w_asr G_ASR + w_se G_SE`` on the shared parameters
and ``G_ASR`` elsewhere. Every N-th step computes the weights exactly (two
backwards); the steps in between reuse them in one backward of
``l_asr + w_se l_se`` with the ASR gradient into the front-end scaled by
``w_asr``. The expected values here come from an independent computation of
the two task gradients with ``torch.autograd.grad`` (float64), combined with
the weights that the rule gives on their Gram matrix. Uses the toy two-task
model of test_trainer_gradient_remedy.py (the DDP invariance of a lagged run is
tested there, with the other rules).
"""

import copy
import math
from typing import List

import pytest
import torch
from test_trainer_gradient_remedy import (
    ToyTwoTaskModel,
    batches,
    flat_params,
    make_data,
    make_options,
    train,
)

from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.gradient_rules import get_rule
from espnet2.train.reporter import Reporter
from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer as T
from espnet2.train.trainer_gradient_remedy import TaskLosses

EXACTNESS_RULES = ["gr", "pcgrad", "mgda", "sum"]


def float64_batches(n_utt: int, batch_size: int):
    return [
        (ids, {k: v.double() for k, v in b.items()})
        for ids, b in batches(make_data(n_utt), batch_size)
    ]


def dominant_model() -> ToyTwoTaskModel:
    """SE gradient ~20x the ASR one on conflicting data: GR projects and rescales."""
    return ToyTwoTaskModel(se_scale=20.0).double()


def task_gradients(model, micro_batches, accum: int):
    """Independent reference: flat (G_ASR shared, G_SE shared, G_ASR rest) of the
    accumulated step (each micro-batch's losses divided by ``accum``)."""
    shared = [p for _, p in model.shared_parameters()]
    rest = [p for n, p in model.named_parameters() if not n.startswith("enh_model.")]
    totals = None
    for ids, b in micro_batches:
        losses = model(**{**b, "utt_id": ids})["task_losses"]
        parts = (
            torch.autograd.grad(losses["asr"] / accum, shared, retain_graph=True),
            torch.autograd.grad(losses["se"] / accum, shared, retain_graph=True),
            torch.autograd.grad(losses["asr"] / accum, rest, allow_unused=True),
        )
        flat = [
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                       for g, p in zip(gs, ps)])
            for gs, ps in zip(parts, (shared, shared, rest))
        ]
        totals = flat if totals is None else [t + f for t, f in zip(totals, flat)]
    return totals


def rule_weights(rule: str, g_asr: torch.Tensor, g_se: torch.Tensor) -> torch.Tensor:
    w = get_rule(rule).weights(g_asr @ g_asr, g_se @ g_se, g_asr @ g_se)
    return torch.stack([w.w_asr, w.w_se])


def recording_trainer(grads: List[torch.Tensor], params: List[torch.Tensor], calls: dict):
    """A trainer that records every step's final gradient (before clip and step)
    and counts exact (two-backward) and lagged (one-backward) micro-batches."""

    class Recording(T):
        @classmethod
        def _clip_and_step(cls, model, *args, **kwargs):
            grads.append(torch.cat([
                (torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                for p in model.parameters()
            ]))
            params.append(flat_params(model))
            return super()._clip_and_step(model, *args, **kwargs)

        @classmethod
        def _task_gradients(cls, *args, **kwargs):
            calls["exact"] += 1
            return super()._task_gradients(*args, **kwargs)

        @classmethod
        def _weighted_backward(cls, *args, **kwargs):
            calls["lagged"] += 1
            return super()._weighted_backward(*args, **kwargs)

    return Recording


def options(rule: str = "gr", every: int = 2, **kw):
    return make_options(
        grad_rule=rule, gr_granularity="vector", gr_weights_every=every, gr_K=2.0, **kw
    )


@pytest.mark.parametrize("rule", EXACTNESS_RULES)
def test_lagged_step_is_the_exact_combination_with_the_last_exact_weights(rule):
    """N = 2, accum 2, float64. Step 1 is exact: its gradient is the rule's
    combination of step 1's G_ASR/G_SE. Step 2 is one backward per micro-batch:
    its gradient must be step 2's G_ASR/G_SE combined with step 1's weights,
    to rounding (the one-backward path equals the exact whole-vector gradient
    for the same weights). For the rules whose weights move (gr, pcgrad, mgda)
    step 2's own exact weights would give a different gradient, so the test
    would see a lag that was not applied."""
    model = dominant_model()
    start = copy.deepcopy(model)
    data = float64_batches(8, 2)  # 4 micro-batches = 2 steps of accum 2
    # Step 1 on u004-u007, whose two gradients conflict as a whole vector (cos
    # -0.72, |G_SE|/|G_ASR| 27), so every rule but sum has weights != (1, 1).
    data = data[2:] + data[:2]
    grads, params, calls = [], [], {"exact": 0, "lagged": 0}
    trainer = recording_trainer(grads, params, calls)
    train(model, data, options(rule, accum_grad=2), trainer=trainer)
    assert calls == {"exact": 2, "lagged": 2}
    n_shared = sum(p.numel() for _, p in start.shared_parameters())

    # Step 1 from the initial parameters.
    a1, s1, rest1 = task_gradients(start, data[:2], accum=2)
    w1 = rule_weights(rule, a1, s1)
    torch.testing.assert_close(grads[0][:n_shared], w1[0] * a1 + w1[1] * s1, rtol=1e-12, atol=1e-14)
    assert (rule == "sum") == bool(torch.all(w1 == 1.0)), w1
    # Step 2 from the parameters the optimizer gave after step 1.
    after_1 = copy.deepcopy(start)
    torch.nn.utils.vector_to_parameters(params[1], after_1.parameters())
    a2, s2, rest2 = task_gradients(after_1, data[2:], accum=2)
    expected = w1[0] * a2 + w1[1] * s2
    torch.testing.assert_close(grads[1][:n_shared], expected, rtol=1e-12, atol=1e-14)
    rest = grads[1][n_shared : n_shared + rest2.numel()]
    torch.testing.assert_close(rest, rest2, rtol=1e-12, atol=1e-14)  # ASR head: G_ASR
    if rule != "sum":
        w2 = rule_weights(rule, a2, s2)
        own = w2[0] * a2 + w2[1] * s2
        assert (own - expected).norm() > 1e-6 * expected.norm(), (w1, w2)


def test_weights_every_n_steps_and_drift_and_weights_are_reported():
    """N = 3 over 7 steps: exact at steps 1, 4, 7 (3 x accum 1 two-backward
    micro-batches), lagged at the other 4. gr_w_asr/gr_w_se are reported on every
    step, gr_w_drift (change of the weights between exact steps) exists, and the
    Gram stats (gr_cos) come from exact steps only."""
    grads, params, calls = [], [], {"exact": 0, "lagged": 0}
    trainer = recording_trainer(grads, params, calls)
    reporter, _ = train(dominant_model(), float64_batches(28, 4), options("gr", 3), trainer=trainer)
    assert calls == {"exact": 3, "lagged": 4}
    for name in ("gr_w_asr", "gr_w_se", "gr_w_drift", "gr_cos", "gr_norm_ratio"):
        assert reporter.has("train", name), name
    assert reporter.get_value("train", "gr_w_drift") > 0

    # With N larger than the epoch only step 1 is exact: gr_cos is its cosine.
    model = dominant_model()
    a1, s1, _ = task_gradients(copy.deepcopy(model), float64_batches(8, 4)[:1], accum=1)
    reporter, _ = train(model, float64_batches(8, 4), options("gr", 100))
    cos = float(a1 @ s1 / (a1.norm() * s1.norm()))
    assert math.isclose(reporter.get_value("train", "gr_cos"), cos, rel_tol=1e-9)
    assert not reporter.has("train", "gr_w_drift")  # one exact step: nothing to compare


@pytest.mark.parametrize("first_batch", ["nan_se", "real_only"])
def test_an_exact_step_without_a_decision_keeps_no_weights(first_batch):
    """Step 1's weights are the rule's fallback, not a decision: with a NaN SE loss
    (utterance u000) the step is non-finite and skipped; with REAL utterances only
    G_SE is zero and the rule returns the plain sum. Either way the fallback (1, 1)
    must not be reused: step 2 is exact again, steps 3 and 4 lagged (N = 4), and no
    gr_w_drift is registered for the unkept weights (one kept exact step only)."""

    class FirstBatchSpecial(ToyTwoTaskModel):
        def forward(self, speech, speech_ref1, target, utt_id=None):
            if first_batch == "real_only" and "u000_SIMU" in utt_id:
                utt_id = [u.replace("SIMU", "REAL") for u in utt_id]
            out = super().forward(speech, speech_ref1, target, utt_id)
            if first_batch == "nan_se" and "u000_SIMU" in utt_id:
                out["task_losses"]["se"] = out["task_losses"]["se"] * math.nan
            return out

    grads, params, calls = [], [], {"exact": 0, "lagged": 0}
    trainer = recording_trainer(grads, params, calls)
    model = FirstBatchSpecial(se_scale=20.0).double()
    before = flat_params(model)
    reporter, _ = train(model, float64_batches(16, 4), options("gr", 4), trainer=trainer)
    assert calls == {"exact": 2, "lagged": 2}
    assert not reporter.has("train", "gr_w_drift")
    if first_batch == "nan_se":
        assert torch.equal(params[1], before)  # step 1 did not move the model


def train_epoch(model, data, opts, epoch):
    """One epoch as ESPnet's run() drives it (fresh SGD: no optimizer state)."""
    reporter = Reporter()
    reporter.set_epoch(epoch)
    with reporter.observe("train") as sub:
        T.train_one_epoch(
            model=model, iterator=data,
            optimizers=[torch.optim.SGD(model.parameters(), lr=0.1)],
            schedulers=[None], scaler=None, reporter=sub, summary_writer=None,
            options=opts, distributed_option=DistributedOption(distributed=False),
        )


def test_lagged_weights_continue_across_epochs_and_resume_exactly(tmp_path):
    """N = 3, 4 steps per epoch: epoch 1 is exact, lag, lag, exact; epoch 2 goes
    on with the weights of step 4 (age 1): lag, lag, exact, lag. Run A trains
    both epochs in one output dir; run B resumes epoch 2 from A's model after
    epoch 1 and A's grad_rule_state/1epoch.pth alone: same parameters bit for
    bit. Run C resumes without the state file (it starts with an exact step)
    and ends elsewhere, so the saved weights really carry the run."""
    data = float64_batches(16, 4)
    model_a = dominant_model()
    opts = lambda d: options("gr", 3, output_dir=str(tmp_path / d))  # noqa: E731
    train_epoch(model_a, data, opts("a"), 1)
    after_1 = copy.deepcopy(model_a)
    state_1 = torch.load(tmp_path / "a/grad_rule_state/1epoch.pth")
    assert set(state_1) == {"lagged_weights", "lagged_age"}
    assert state_1["lagged_weights"].shape == (2,) and int(state_1["lagged_age"]) == 1
    train_epoch(model_a, data, opts("a"), 2)

    (tmp_path / "b/grad_rule_state").mkdir(parents=True)
    torch.save(state_1, tmp_path / "b/grad_rule_state/1epoch.pth")
    model_b = copy.deepcopy(after_1)
    train_epoch(model_b, data, opts("b"), 2)
    assert torch.equal(flat_params(model_b), flat_params(model_a))
    state_a, state_b = (torch.load(tmp_path / f"{d}/grad_rule_state/2epoch.pth") for d in "ab")
    assert torch.equal(state_a["lagged_weights"], state_b["lagged_weights"])

    model_c = copy.deepcopy(after_1)
    train_epoch(model_c, data, opts("c"), 2)
    assert not torch.equal(flat_params(model_c.enh_model), flat_params(model_a.enh_model))


def test_gradvac_state_and_lagged_weights_share_the_state_file(tmp_path):
    """A stateful rule with lagged weights: both are saved, and the rule gets
    back only its own keys."""
    data = float64_batches(8, 4)
    opts = options("gradvac", 2, output_dir=str(tmp_path))
    train_epoch(dominant_model(), data, opts, 1)
    state = torch.load(tmp_path / "grad_rule_state/1epoch.pth")
    assert set(state) == {"target_cos", "lagged_weights", "lagged_age"}
    train_epoch(dominant_model(), data, opts, 2)  # loads it without complaint


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(gr_granularity="tensor"), "needs --gr_granularity vector"),
        (dict(gr_apply="microbatch"), "needs --gr_apply step"),
        (dict(gr_shared_params=["enh_model."]), "drop --gr_shared_params"),
        (dict(gr_weights_every=0), "must be >= 1"),
    ],
)
def test_unsupported_combinations_are_refused_with_the_reason(overrides, match):
    conf = dict(grad_rule="gr", gr_granularity="vector", gr_weights_every=4)
    conf.update(overrides)
    with pytest.raises(ValueError, match=match):
        train(ToyTwoTaskModel(), batches(make_data(4), 4), make_options(**conf))


def test_a_model_without_the_scaling_hook_is_refused():
    class NoHook(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = ToyTwoTaskModel()
            self.enh_model, self.s2t_model = self.inner.enh_model, self.inner.s2t_model

        def shared_parameters(self):
            return self.inner.shared_parameters()

        def forward(self, **kw):
            return self.inner(**kw)

    with pytest.raises(RuntimeError, match="scale_asr_input_gradient"):
        train(NoHook(), batches(make_data(4), 4), options("gr", 4))


def test_weights_every_1_is_the_exact_trainer_bit_for_bit():
    """The default keeps today's behaviour: N = 1 never takes the one-backward path."""
    data = batches(make_data(16), 4)
    a, b = ToyTwoTaskModel(se_scale=20.0), ToyTwoTaskModel(se_scale=20.0)
    grads, params, calls = [], [], {"exact": 0, "lagged": 0}
    train(a, data, options("gr", 1), trainer=recording_trainer(grads, params, calls))
    train(b, data, make_options(grad_rule="gr", gr_granularity="vector", gr_K=2.0))
    assert calls == {"exact": 4, "lagged": 0}
    assert torch.equal(flat_params(a), flat_params(b))


def test_the_lagged_path_reads_no_tensor_value_on_the_host():
    """What a lagged step adds to a multi-task step (the gradient-scale layer's
    backward, the weighted backward, the drift of the weights) runs with every
    host read of a tensor forbidden: no device synchronisation is added. The
    model's own forward (the toy reads a flag on the host) runs outside."""
    from test_gradient_rules import host_reads_forbidden

    model = dominant_model()
    ids, b = float64_batches(4, 4)[0]
    weights = torch.tensor([0.3, 1.5], dtype=torch.float64)
    with model.scale_asr_input_gradient(weights[0]):
        out = model(**b, utt_id=ids)
    losses = TaskLosses(asr=out["task_losses"]["asr"], se=out["task_losses"]["se"])
    with host_reads_forbidden():
        T._weighted_backward(losses, weights[1], None)
        drift = T._weights_drift(weights, weights * 1.1)
    assert model.enh_model[0].weight.grad is not None
    assert math.isclose(float(drift), 0.1, rel_tol=1e-12)
