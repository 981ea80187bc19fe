"""ESPnetASRSpeakerModel: MT vs AL gradient signs, stages, progress, stock decoding.

The branch's effect on the encoder is isolated as (gradient of the total loss)
minus (gradient of ESPnet's own ASR loss), both on the same weights and batch:
the forward passes are deterministic (dropout 0, no SpecAugment).
"""

import copy
import math

import pytest
import torch
import yaml
from speaker_testlib import NUM_SPEAKERS, build, make_batch, tiny_args

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.speaker_adversarial import ESPnetASRSpeakerModel
from espnet2.layers.gradient_reversal import dann_lambda

FORK = 2  # of 4 encoder layers ("mid")


def conf(**kw):
    return dict(num_speakers=NUM_SPEAKERS, fork="mid", **kw)


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.sum().backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


def asr_only_grads(model, batch):
    loss, _, _ = ESPnetASRModel.forward(model, **copy.deepcopy(batch))
    return grads(model, loss)


def branch_effect(model, batch):
    """Per-parameter gradient that the speaker term adds (total - ASR only)."""
    model.train()
    g_asr = asr_only_grads(model, batch)
    loss, stats, _ = model(**copy.deepcopy(batch))
    g_total = grads(model, loss)
    effect = {
        n: g_total[n] - g_asr[n]
        for n in g_total
        if not n.startswith("speaker_adversary.") and g_asr[n] is not None
    }
    return effect, stats


def below_fork(name):
    # encoder.embed and encoder.encoders.0 .. FORK-1 feed the fork layer's output
    return name.startswith("encoder.embed.") or any(
        name.startswith(f"encoder.encoders.{i}.") for i in range(FORK)
    )


def flat(effect, select):
    return torch.cat([g.flatten() for n, g in sorted(effect.items()) if select(n)])


def test_empty_conf_builds_the_stock_model():
    # Baselines use the same task; without a branch nothing may differ.
    model = build(None)
    assert type(model) is ESPnetASRModel


def test_mt_and_al_send_opposite_encoder_gradients():
    # MT adds +lambda_mt * dL_spk/dr to the encoder, AL -lambda_p * dL_spk/dr.
    # With identical weights, AL's effect must be -(lambda_p / lambda_mt) times
    # MT's on every parameter below the fork, and zero above it.
    batch = make_batch()
    mt = build(conf(mode="mt", lambda_mt=0.5))
    al = build(conf(mode="al", lambda_max=0.2, total_steps=4))
    for (n1, p1), (n2, p2) in zip(mt.state_dict().items(), al.state_dict().items()):
        if p1.is_floating_point():
            assert n1 == n2 and torch.equal(p1, p2), n1
    al.speaker_adversary.step.fill_(4)  # progress 1: lambda_p = dann(1)
    lam_al = dann_lambda(1.0, 0.2, 10.0)
    eff_mt, stats_mt = branch_effect(mt, batch)
    eff_al, stats_al = branch_effect(al, batch)
    assert float(stats_mt["lambda_spk"]) == pytest.approx(0.5)
    assert float(stats_al["lambda_spk"]) == pytest.approx(-lam_al)
    d_mt, d_al = flat(eff_mt, below_fork), flat(eff_al, below_fork)
    assert d_mt.norm() > 1e-4  # the branch does reach the encoder
    expected = -(lam_al / 0.5) * d_mt
    # relative error budget: float32 cancellation in (total - ASR-only) gradients
    assert float((d_al - expected).norm() / expected.norm()) < 1e-3
    cos = torch.nn.functional.cosine_similarity(d_mt, d_al, dim=0)
    assert float(cos) < -0.999
    above = lambda n: not below_fork(n)  # noqa: E731
    assert float(flat(eff_mt, above).norm() / d_mt.norm()) < 1e-3
    assert float(flat(eff_al, above).norm() / d_mt.norm()) < 1e-3


def test_stage_asr_keeps_branch_gradient_out_of_the_encoder():
    # Stage 1 of the paper: lambda = 0, the branch still learns.
    model = build(conf(mode="al", total_steps=10, branch_only_from=0.5, joint_from=0.5))
    effect, stats = branch_effect(model, make_batch())
    assert float(stats["lambda_spk"]) == 0.0
    assert max(float(g.abs().max()) for g in effect.values()) < 1e-5
    loss, _, _ = model(**make_batch())
    g = grads(model, loss)
    assert g["speaker_adversary.branch.linear.weight"].abs().sum() > 0


def test_stage_branch_trains_the_branch_alone():
    # Stage 2: the returned loss is the speaker term only, so every ASR parameter
    # gets no gradient (None: stock optimizers then leave it untouched).
    model = build(conf(mode="mt", total_steps=10, branch_only_from=0.0, joint_from=0.5)).train()
    loss, stats, _ = model(**make_batch())
    assert loss.item() == pytest.approx(0.5 * float(stats["loss_spk"]), rel=1e-6)
    g = grads(model, loss)
    assert all(v is None for n, v in g.items() if not n.startswith("speaker_adversary."))
    assert all(v is not None for n, v in g.items() if n.startswith("speaker_adversary."))


def test_al_lambda_follows_the_schedule_during_training():
    # total_steps 4, joint from p = 0.5: steps 0,1 stage asr (0), then the ramp
    # over q = (p - 0.5) / 0.5 = 0, 0.5 at steps 2, 3, then q = 1.
    model = build(conf(mode="al", total_steps=4, joint_from=0.5, branch_only_from=0.5)).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    seen = []
    for _ in range(5):
        loss, stats, _ = model(**make_batch())
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        assert math.isfinite(loss.item())
        seen.append(float(stats["lambda_spk"]))
    expected = [0.0, 0.0, -dann_lambda(0.0), -dann_lambda(0.5), -dann_lambda(1.0)]
    assert seen == pytest.approx(expected, abs=1e-7)
    assert int(model.speaker_adversary.step) == 5


def test_progress_survives_checkpoint_and_ignores_validation():
    # Resume must continue the schedule: the counter is in the state dict, and
    # validation forwards do not advance it.
    model = build(conf(mode="al", total_steps=8)).train()
    for _ in range(3):
        model(**make_batch())
    model.eval()
    with torch.no_grad():
        model(**make_batch())
    assert int(model.speaker_adversary.step) == 3
    resumed = build(conf(mode="al", total_steps=8), seed=1)
    resumed.load_state_dict(model.state_dict())
    assert resumed.speaker_adversary.progress() == pytest.approx(3 / 8)


def test_validation_reports_speaker_stats_without_changing_the_loss():
    model = build(conf(mode="mt")).eval()
    batch = make_batch()
    with torch.no_grad():
        loss, stats, _ = model(**copy.deepcopy(batch))
        stock_loss, _, _ = ESPnetASRModel.forward(model, **copy.deepcopy(batch))
    assert torch.equal(loss, stock_loss)
    assert 0.0 <= float(stats["acc_spk"]) <= 1.0 and "lambda_spk" not in stats


def test_training_without_speaker_labels_fails_clearly():
    model = build(conf(mode="mt")).train()
    batch = make_batch()
    del batch["spk_labels"], batch["spk_labels_lengths"]
    with pytest.raises(ValueError, match="utt2spkid,spk_labels,text_int"):
        model(**batch)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(mode="al"), "total_steps"),
        (dict(mode="adv", total_steps=3), "mode must be one of"),
        (dict(mode="mt", joint_from=0.2, branch_only_from=0.5), "branch_only_from <= joint_from"),
    ],
)
def test_bad_configuration_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        build(conf(**bad))


def test_stock_speech2text_loads_and_decodes_the_checkpoint(tmp_path):
    # Train one step, save like ESPnet (config.yaml = vars(args), state dict),
    # then ESPnet's stock inference must rebuild the plain model, load every ASR
    # weight (not silently keep random ones) and decode.
    from espnet2.bin.asr_inference import Speech2Text

    args = tiny_args(conf(mode="al", total_steps=2))
    torch.manual_seed(0)
    from espnet2.tasks.asr_speaker import ASRSpeakerTask

    model = ASRSpeakerTask.build_model(args).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss, _, _ = model(**make_batch())
    loss.sum().backward()
    opt.step()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")

    s2t = Speech2Text(
        asr_train_config=str(tmp_path / "config.yaml"),
        asr_model_file=str(tmp_path / "model.pth"),
        device="cpu",
        beam_size=2,
        ctc_weight=0.3,
        maxlenratio=0.0,
        nbest=1,
    )
    assert type(s2t.asr_model) is ESPnetASRModel
    loaded = s2t.asr_model.state_dict()
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith("speaker_adversary.")}
    assert set(loaded) == set(trained)
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    text, tokens, token_int, hyp = s2t(make_batch()["speech"][0])[0]
    assert isinstance(text, str) and all(t in args.token_list for t in tokens)
