"""Speaker branch on the joint SE + ASR model: the speaker term is part of the ASR task.

What a gradient rule relies on: task_losses["asr"] carries the speaker term, so
G_ASR on the shared SE parameters contains the multi-task (+) or reversed (-)
speaker gradient; task_losses["se"] is untouched.
"""

import copy

import pytest
import torch
import yaml
from speaker_testlib import NUM_SPEAKERS, build_enh_s2t, make_enh_s2t_batch, tiny_enh_s2t_args

from espnet2.asr.speaker_adversarial_enh_s2t import TwoTaskEnhS2TSpeakerModel
from espnet2.enh.espnet_enh_s2t_two_task_model import TwoTaskEnhS2TModel
from espnet2.layers.gradient_reversal import dann_lambda


def conf(**kw):
    return dict(num_speakers=NUM_SPEAKERS, fork="mid", **kw)


def se_grad(model, loss):
    params = [p for n, p in model.named_parameters() if n.startswith("enh_model.")]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([torch.zeros(p.numel()) if g is None else g.flatten() for p, g in zip(params, grads)])


def test_empty_conf_builds_the_two_task_model():
    assert type(build_enh_s2t(None)) is TwoTaskEnhS2TModel


def test_speaker_term_is_added_to_the_asr_task_only():
    batch = make_enh_s2t_batch()
    plain = build_enh_s2t(None).train()
    model = build_enh_s2t(conf(mode="mt", lambda_mt=0.5)).train()
    assert isinstance(model, TwoTaskEnhS2TSpeakerModel)
    assert set(model.state_dict()) - set(plain.state_dict()) == {
        k for k in model.state_dict() if k.startswith("speaker_adversary.")
    }
    ref = plain(**copy.deepcopy(batch))
    out = model(**copy.deepcopy(batch))
    spk = 0.5 * out["stats"]["loss_spk"][0]
    assert torch.allclose(out["task_losses"]["asr"], ref["task_losses"]["asr"] + spk, atol=1e-5)
    assert torch.allclose(out["task_losses"]["se"], ref["task_losses"]["se"], atol=1e-6)
    assert torch.allclose(out["loss"][0], out["task_losses"]["asr"] + out["task_losses"]["se"])
    assert torch.allclose(out["stats"]["loss_asr"], out["task_losses"]["asr"].detach().reshape(1))


def test_asr_task_gradient_on_se_parameters_carries_the_speaker_gradient_with_mode_sign():
    # G_ASR(with branch) - G_ASR(plain) on the SE front-end is the speaker
    # gradient that reached it through the ASR encoder: +0.5 dL_spk (MT),
    # -lambda_p dL_spk (AL), i.e. AL = -(lambda_p / 0.5) MT.
    batch = make_enh_s2t_batch()
    plain = build_enh_s2t(None).train()
    g_plain = se_grad(plain, plain(**copy.deepcopy(batch))["task_losses"]["asr"])
    effects = {}
    for mode in ("mt", "al"):
        model = build_enh_s2t(conf(mode=mode, lambda_mt=0.5, lambda_max=0.2, total_steps=2)).train()
        model.speaker_adversary.step.fill_(2)  # progress 1
        out = model(**copy.deepcopy(batch))
        effects[mode] = se_grad(model, out["task_losses"]["asr"]) - g_plain
        # the SE task's own gradient is unchanged by the branch
        g_se = se_grad(model, out["task_losses"]["se"])
        assert torch.allclose(g_se, se_grad(plain, plain(**copy.deepcopy(batch))["task_losses"]["se"]), atol=1e-6)
    assert effects["mt"].norm() > 0
    expected = -(dann_lambda(1.0, 0.2, 10.0) / 0.5) * effects["mt"]
    assert float((effects["al"] - expected).norm() / expected.norm()) < 1e-2


def test_stage_branch_leaves_se_and_asr_without_gradient():
    model = build_enh_s2t(conf(mode="al", total_steps=10, joint_from=0.5)).train()
    out = model(**make_enh_s2t_batch())
    named = list(model.named_parameters())
    g_asr = torch.autograd.grad(out["task_losses"]["asr"], [p for _, p in named], retain_graph=True, allow_unused=True)
    g_se = torch.autograd.grad(out["task_losses"]["se"], [p for _, p in named], allow_unused=True)
    assert all(g is None for g in g_se)
    assert all((g is None) != n.startswith("speaker_adversary.") for (n, _), g in zip(named, g_asr))


def test_stock_enh_s2t_inference_loads_the_checkpoint(tmp_path):
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.enh.espnet_enh_s2t_model import ESPnetEnhS2TModel

    args = tiny_enh_s2t_args(conf(mode="mt"))
    model = build_enh_s2t(conf(mode="mt"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    s2t = Speech2Text(
        asr_train_config=str(tmp_path / "config.yaml"),
        asr_model_file=str(tmp_path / "model.pth"),
        enh_s2t_task=True, device="cpu", beam_size=2, ctc_weight=0.3, nbest=1,
    )
    assert type(s2t.asr_model) is ESPnetEnhS2TModel
    loaded = s2t.asr_model.state_dict()
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith("speaker_adversary.")}
    # (stock inference adds aliases ctc.*, decoder.* of s2t_model's modules)
    assert set(trained) <= set(loaded) and all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert not any(k.startswith("speaker_adversary.") for k in loaded)
    # joint-model decoding returns, per enhanced speaker, the n-best list
    text = s2t(make_enh_s2t_batch()["speech"][0])[0][0][0]
    assert isinstance(text, str)
