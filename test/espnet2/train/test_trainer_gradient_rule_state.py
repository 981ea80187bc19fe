"""GradientRemedyTrainer with configured and stateful gradient rules.

``--grad_rule_conf`` must reach the rule, and a stateful rule (gradvac: an EMA
target cosine per block) must continue across epochs and across a resume
exactly: its state after epoch ``e`` is kept in
``<output_dir>/grad_rule_state/<e>epoch.pth``, written before ESPnet's
checkpoint of that epoch. Uses the toy two-task model of
test_trainer_gradient_remedy.py.
"""

import copy

import pytest
import torch
from test_trainer_gradient_remedy import (
    ToyTwoTaskModel,
    batches,
    flat_params,
    make_data,
    make_options,
)

from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer_gradient_remedy import GradientRemedyTrainer


def train_epoch(model, data, options, epoch):
    """One epoch as ESPnet's run() drives it (fresh SGD: no optimizer state)."""
    reporter = Reporter()
    reporter.set_epoch(epoch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with reporter.observe("train") as sub:
        GradientRemedyTrainer.train_one_epoch(
            model=model,
            iterator=data,
            optimizers=[optimizer],
            schedulers=[None],
            scaler=None,
            reporter=sub,
            summary_writer=None,
            options=options,
            distributed_option=DistributedOption(distributed=False),
        )


def test_grad_rule_conf_reaches_the_rule():
    """Options other than K come from --grad_rule_conf; K stays --gr_K's."""
    build = GradientRemedyTrainer._build_rule
    assert repr(build(make_options(grad_rule="cagrad", grad_rule_conf={"c": 0.7}))) == "CAGrad(c=0.7)"
    assert repr(build(make_options(grad_rule="gr", gr_K=3.0))) == "GradientRemedy(K=3.0)"
    assert repr(build(make_options(grad_rule="gradvac"))) == "GradVac(beta=0.01)"
    with pytest.raises(ValueError, match="give K with --gr_K"):
        build(make_options(grad_rule="gr", grad_rule_conf={"K": 2.0}))
    with pytest.raises(ValueError, match=r"'mgda' does not take option\(s\) \['c'\]"):
        build(make_options(grad_rule="mgda", grad_rule_conf={"c": 0.4}))


def test_fixed_rule_weight_changes_only_the_shared_update():
    """fixed with w_se = 1 is exactly the sum rule; w_se = 0.5 changes the shared
    front-end's update but not the ASR-only head's (which gets G_ASR either way)."""
    data = batches(make_data(8), 4)
    models = {}
    for key, conf in (("sum", {}), ("fixed1", {"w_se": 1.0}), ("fixed05", {"w_se": 0.5})):
        rule = "sum" if key == "sum" else "fixed"
        models[key] = ToyTwoTaskModel()
        train_epoch(models[key], data[:1], make_options(grad_rule=rule, grad_rule_conf=conf), 1)
    assert torch.equal(flat_params(models["sum"]), flat_params(models["fixed1"]))
    assert torch.equal(flat_params(models["sum"].s2t_model), flat_params(models["fixed05"].s2t_model))
    assert not torch.equal(flat_params(models["sum"].enh_model), flat_params(models["fixed05"].enh_model))


def test_gradvac_state_continues_across_epochs_and_resumes_exactly(tmp_path):
    """Run A trains epochs 1 and 2 in one output dir. Run B starts from A's model
    after epoch 1 in a new dir holding only A's grad_rule_state/1epoch.pth (what a
    resumed run finds): its epoch 2 gives A's parameters and state bit for bit.
    Run C does the same without the state file: it restarts the EMA from 0 and
    ends elsewhere, so the state really matters."""
    data = batches(make_data(16), 4)
    options = dict(grad_rule="gradvac", grad_rule_conf={"beta": 0.5})
    model_a = ToyTwoTaskModel()
    train_epoch(model_a, data, make_options(output_dir=str(tmp_path / "a"), **options), 1)
    after_1 = copy.deepcopy(model_a)
    state_1 = torch.load(tmp_path / "a/grad_rule_state/1epoch.pth")
    assert state_1["target_cos"].shape == (4,)  # one target per enh_model tensor
    train_epoch(model_a, data, make_options(output_dir=str(tmp_path / "a"), **options), 2)

    (tmp_path / "b/grad_rule_state").mkdir(parents=True)
    torch.save(state_1, tmp_path / "b/grad_rule_state/1epoch.pth")
    model_b = copy.deepcopy(after_1)
    train_epoch(model_b, data, make_options(output_dir=str(tmp_path / "b"), **options), 2)
    assert torch.equal(flat_params(model_b), flat_params(model_a))
    state_a = torch.load(tmp_path / "a/grad_rule_state/2epoch.pth")
    assert torch.equal(torch.load(tmp_path / "b/grad_rule_state/2epoch.pth")["target_cos"], state_a["target_cos"])
    assert not torch.equal(state_a["target_cos"], state_1["target_cos"])

    model_c = copy.deepcopy(after_1)
    train_epoch(model_c, data, make_options(output_dir=str(tmp_path / "c"), **options), 2)
    assert not torch.equal(flat_params(model_c.enh_model), flat_params(model_a.enh_model))


def test_stateless_rules_write_no_state_file(tmp_path):
    train_epoch(ToyTwoTaskModel(), batches(make_data(8), 4), make_options(output_dir=str(tmp_path)), 1)
    assert not (tmp_path / "grad_rule_state").exists()
