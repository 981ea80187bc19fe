"""RobustDistillModel: who sees what, the initialisation, the task split, the loss."""

import pytest
import torch

from distill_testlib import STUDENT_CONF, tiny_model, waves
from espnet2.distill.model import align_frames


def test_teacher_sees_clean_audio_and_student_the_corrupted_copy(tmp_path):
    model = tiny_model(tmp_path)
    seen = {}
    model.teacher.register_forward_pre_hook(lambda m, a: seen.__setitem__("teacher", a[0].clone()))
    model.student.register_forward_pre_hook(lambda m, a: seen.__setitem__("student", a[0].clone()))
    model.corruptor.operations = ["noise"]  # every utterance corrupted
    x, lengths = waves()
    model(x, lengths)
    assert torch.equal(seen["teacher"], x)
    assert not torch.equal(seen["student"], x)
    for b in range(3):  # same speech underneath: the noise is at 0-20 dB SNR
        assert torch.corrcoef(torch.stack([seen["student"][b], x[b]]))[0, 1] > 0.09


def test_teacher_gets_no_gradient_and_is_not_in_the_checkpoint(tmp_path):
    model = tiny_model(tmp_path)
    x, lengths = waves()
    model(x, lengths)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    assert not any(k.startswith("teacher") for k in model.state_dict())
    model.train()
    assert not model.teacher.training


def test_student_initialised_from_teacher_reproduces_its_first_layers(tmp_path):
    # The student copies the teacher's extractor, projection, positional conv and first
    # 2 layers, so on the same clean input (eval mode) its hidden states equal the
    # teacher's hidden states 0..2 exactly.
    model = tiny_model(tmp_path).eval()
    x, lengths = waves()
    with torch.no_grad():
        want, _ = model.teacher(x, lengths)
        got, _ = model.student.features(x, lengths)
    assert len(got) == 3
    assert all(torch.equal(a, b) for a, b in zip(got, want[:3]))


def test_init_from_teacher_rejects_a_student_that_matches_nothing(tmp_path):
    conf = dict(STUDENT_CONF, conv_layers=[[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2, dim=24,
                ffn_dim=48, pos_conv_groups=4, num_heads=4)
    with pytest.raises(ValueError, match="no teacher weight matches"):
        tiny_model(tmp_path, student_conf=conf)


def test_pred_layers_beyond_the_teacher_depth_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"the teacher has layers 0\.\.3"):
        tiny_model(tmp_path, pred_layers=[4, 8, 12])


def test_total_loss_is_distillation_plus_twice_denoising_and_tasks_are_split(tmp_path):
    model = tiny_model(tmp_path).eval()
    x, lengths = waves()
    out = model(x, lengths)
    stats, tasks = out["stats"], out["task_losses"]
    assert stats["loss_distill"] == pytest.approx(stats["loss_l1"] + stats["loss_cos"])
    assert tasks["asr"].item() == pytest.approx(stats["loss_distill"].item())
    assert tasks["se"].item() == pytest.approx(2 * stats["loss_denoise"].item())
    assert out["loss"].item() == pytest.approx(tasks["asr"].item() + tasks["se"].item())
    assert out["weight"].item() == 3
    # eval mode draws a fixed corruption: validation losses are comparable across epochs
    assert model(x, lengths)["loss"].item() == pytest.approx(out["loss"].item())


def test_shared_private_and_main_task_parameters_follow_the_graph(tmp_path):
    # shared = conv extractor: both losses reach it; the denoising head only from "se";
    # the transformer and prediction heads only from "asr".
    model = tiny_model(tmp_path)
    x, lengths = waves()
    tasks = model(x, lengths)["task_losses"]
    shared = dict(model.shared_parameters())
    private = dict(model.se_private_parameters())
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [dict(model.named_parameters())[n] for n in names]
    g_asr = torch.autograd.grad(tasks["asr"], params, retain_graph=True, allow_unused=True)
    g_se = torch.autograd.grad(tasks["se"], params, allow_unused=True)
    g_asr, g_se = dict(zip(names, g_asr)), dict(zip(names, g_se))
    for n in names:
        reached = (g_asr[n] is not None, g_se[n] is not None)
        if n in shared:
            assert reached == (True, True), n
        elif n in private:
            assert reached == (False, True), n
        else:
            assert reached == (True, False), n
    assert set(shared) == {n for n in names if n.startswith("student.feature_extractor.")}
    assert set(private) == {n for n in names if n.startswith("denoising_head.")}


def test_denoising_mask_lies_in_unit_interval_and_matches_stft_frames(tmp_path):
    model = tiny_model(tmp_path)
    x, lengths = waves()
    out = model.student(x, lengths)
    mag, frames = model.stft(x, lengths)
    mask = model.denoising_head(out["conv_feats"], mag.size(1))
    assert mask.shape == mag.shape == (3, 1 + x.size(1) // 160, 257)
    assert mask.min() >= 0 and mask.max() <= 1
    # 2 x 20 ms conv frames cover the 10 ms STFT frames up to edge effects (< 4 frames)
    assert torch.all((frames - 2 * out["frames"]).abs() <= 4)


def test_align_frames_crops_same_rate_and_interpolates_other_rates():
    targets = torch.arange(8.0).view(1, 1, 8, 1)
    cropped, frames = align_frames(targets, torch.tensor([8]), 6, same_rate=True)
    assert cropped.flatten().tolist() == [0, 1, 2, 3, 4, 5] and frames.tolist() == [6]
    padded, _ = align_frames(targets, torch.tensor([8]), 9, same_rate=True)
    assert padded.flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7]
    # a teacher at 40 ms (4 frames) onto a 20 ms student (8 frames): linear interpolation
    coarse = torch.tensor([0.0, 2.0, 4.0, 6.0]).view(1, 1, 4, 1)
    fine, frames = align_frames(coarse, torch.tensor([3]), 8, same_rate=False)
    assert fine.flatten().tolist() == pytest.approx([0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6])
    assert frames.tolist() == [6]


def test_overfitting_one_batch_lowers_both_losses(tmp_path):
    torch.manual_seed(0)
    model = tiny_model(tmp_path)
    model.corruptor.operations = ["noise"]
    x, lengths = waves(batch=2)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(30):
        g = torch.Generator().manual_seed(0)  # the same corruption every step
        model.corrupt = lambda s, l, g=g: model.corruptor(s, l, generator=g)[0]
        out = model(x, lengths)
        if first is None:
            first = {k: v.item() for k, v in out["stats"].items()}
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
    last = out["stats"]
    assert last["loss_distill"] < 0.7 * first["loss_distill"]
    assert last["loss_denoise"] < 0.9 * first["loss_denoise"]
