"""RobustDistillTrainer: the gradient rule on the conv extractor, the denoising head
trained by its own loss, and the published (sum) update reproduced."""

import copy

import pytest
import torch

from distill_testlib import MODEL_CONF, STUDENT_CONF, tiny_model, waves
from espnet2.distill.trainer import RobustDistillTrainer
from espnet2.train import gradient_rules
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainerOptions


def options(**overrides) -> GradientRemedyTrainerOptions:
    """ESPnet's CLI defaults for the stock trainer fields plus the gr_* options."""
    values = dict(
        ngpu=0, resume=False, use_amp=False, train_dtype="float32", grad_noise=False,
        accum_grad=1, grad_clip=1e6, grad_clip_type=2.0, log_interval=None,
        no_forward_run=False, use_matplotlib=False, use_tensorboard=False,
        use_wandb=False, adapter="lora", use_adapter=False, save_strategy="all",
        output_dir="unused", max_epoch=1, seed=0, sharded_ddp=False, patience=None,
        keep_nbest_models=1, nbest_averaging_interval=0, early_stopping_criterion=(),
        best_model_criterion=(), val_scheduler_criterion=(), unused_parameters=False,
        wandb_model_log_interval=-1, create_graph_in_tensorboard=False,
        gradient_as_bucket_view=True, ddp_comm_hook=None,
        grad_rule="sum", gr_K=5.0, gr_granularity="tensor", gr_apply="step",
        gr_shared_params=None,
    )
    values.update(overrides)
    return GradientRemedyTrainerOptions(**values)


def deterministic_model(tmp_path):
    """No dropout and a fixed corruption, so two updates can be compared exactly."""
    model = tiny_model(
        tmp_path,
        student_conf=dict(STUDENT_CONF, dropout=0.0),
        denoising_conf=dict(MODEL_CONF["denoising_conf"], dropout=0.0),
    )
    model.corrupt = lambda s, l: model.corruptor(s, l, generator=torch.Generator().manual_seed(5))[0]
    return model


def one_step(model, opts):
    x, lengths = waves()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        RobustDistillTrainer.train_one_epoch(
            model=model, iterator=[(["a", "b", "c"], {"speech": x, "speech_lengths": lengths})],
            optimizers=[optimizer], schedulers=[None], scaler=None, reporter=sub,
            summary_writer=None, options=opts, distributed_option=DistributedOption(distributed=False),
        )
    return reporter


def test_sum_rule_gives_the_published_update_of_the_total_loss(tmp_path):
    # Published RobustDistiller: one backward of L_distill + 2 L_denoise.
    model = deterministic_model(tmp_path)
    reference = copy.deepcopy(model)
    reference.__dict__["teacher"] = model.teacher
    one_step(model, options(grad_rule="sum"))
    x, lengths = waves()
    reference(x, lengths)["loss"].backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= 0.5 * p.grad
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("rule,conf", [("gr", {"K": 0.05}), ("pcgrad_sym", {})])
def test_rule_combines_the_task_gradients_on_the_extractor_as_combine_blocks_does(tmp_path, rule, conf):
    # Reference step by hand: the conv extractor (whole-vector granularity) gets
    # combine_blocks(rule, G_distill, G_denoise); every other parameter its own task's
    # gradient (the denoising head: the denoising gradient, which the parent trainer
    # alone would never give it). K = 0.05 makes GR's rescale step active.
    model = deterministic_model(tmp_path)
    ref = copy.deepcopy(model)
    ref.__dict__["teacher"] = model.teacher
    head_before = {n: p.detach().clone() for n, p in model.se_private_parameters()}
    one_step(model, options(grad_rule=rule, gr_granularity="vector", gr_K=conf.get("K", 5.0)))

    shared = [p for _, p in ref.shared_parameters()]
    x, lengths = waves()
    tasks = ref(x, lengths)["task_losses"]
    g_se = torch.autograd.grad(tasks["se"], shared, retain_graph=True)
    tasks["se"].backward(inputs=[p for _, p in ref.se_private_parameters()], retain_graph=True)
    tasks["asr"].backward()
    flat_asr = torch.cat([p.grad.reshape(-1) for p in shared])
    flat_se = torch.cat([g.reshape(-1) for g in g_se])
    combined, _, _ = gradient_rules.combine_blocks(
        gradient_rules.get_rule(rule, **conf), flat_asr, flat_se, [flat_asr.numel()]
    )
    assert not torch.allclose(combined, flat_asr + flat_se)  # the rule did act
    offset = 0
    with torch.no_grad():
        for p in shared:
            p.grad = combined[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        for p in ref.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    for (name, a), b in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    assert all(not torch.equal(head_before[n], p) for n, p in model.se_private_parameters())
