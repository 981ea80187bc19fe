"""The RobustDistiller student as an ESPnet front-end: loading, freezing, registration,
and a training step of the joint SE + ASR model with it."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "test/espnet2/distill"))
from distill_testlib import MODEL_CONF, STUDENT_CONF, tiny_model, waves  # noqa: E402

from espnet2.asr.frontend.robust_distiller import (  # noqa: E402
    RobustDistillerFrontend,
    load_student,
    register,
)

SMALL = REPO / "egs2/TEMPLATE/asr_with_enhancement/conf/tuning/train_enh_asr_small_cpu.yaml"


@pytest.fixture
def distill_run(tmp_path):
    """What a distillation run leaves: config.yaml and a model checkpoint."""
    torch.manual_seed(0)
    model = tiny_model(tmp_path)
    with torch.no_grad():  # make the checkpoint differ from any fresh initialisation
        for p in model.student.parameters():
            p.add_(0.01)
    ckpt = tmp_path / "valid.loss.best.pth"
    torch.save(model.state_dict(), ckpt)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model_conf": dict(MODEL_CONF, teacher_path="t.pth")}))
    return model, config, ckpt


def test_frontend_outputs_the_trained_students_hidden_states(distill_run):
    model, config, ckpt = distill_run
    x, lengths = waves()
    model.eval()
    with torch.no_grad():
        want, want_frames = model.student.features(x, lengths)
    last = RobustDistillerFrontend(distill_config=str(config), distill_checkpoint=str(ckpt), layer=-1).eval()
    feats, frames = last(x, lengths)
    assert torch.equal(feats, want[-1]) and torch.equal(frames, want_frames)
    assert last.output_size() == STUDENT_CONF["dim"]
    # layer: null = softmax-weighted sum; zero-initialised weights give the plain mean
    mixed = RobustDistillerFrontend(distill_config=str(config), distill_checkpoint=str(ckpt)).eval()
    feats, _ = mixed(x, lengths)
    assert torch.allclose(feats, sum(want) / len(want), atol=1e-6)


def test_frozen_frontend_trains_only_the_layer_weights(distill_run):
    _, config, ckpt = distill_run
    front = RobustDistillerFrontend(distill_config=str(config), distill_checkpoint=str(ckpt)).train()
    assert not front.student.training  # no dropout in a frozen student
    x, lengths = waves()
    feats, _ = front(x, lengths)
    feats.sum().backward()
    trainable = [n for n, p in front.named_parameters() if p.requires_grad]
    assert trainable == ["layer_weights"] and front.layer_weights.grad is not None
    tuned = RobustDistillerFrontend(distill_config=str(config), distill_checkpoint=str(ckpt), freeze=False)
    assert all(p.requires_grad for p in tuned.student.parameters())


def test_bad_distillation_files_are_named(tmp_path, distill_run):
    _, config, ckpt = distill_run
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_student(str(config), str(tmp_path / "nope.pth"))
    torch.save({"encoder.w": torch.zeros(1)}, tmp_path / "asr.pth")
    with pytest.raises(ValueError, match="asr.pth: no 'student"):
        load_student(str(config), str(tmp_path / "asr.pth"))
    (tmp_path / "plain.yaml").write_text("optim: adam\n")
    with pytest.raises(ValueError, match="plain.yaml: no model_conf"):
        load_student(str(tmp_path / "plain.yaml"), str(ckpt))
    other = dict(STUDENT_CONF, num_layers=1)
    with pytest.raises(ValueError, match="does not match the student architecture"):
        load_student(student_conf=other, distill_checkpoint=str(ckpt))


def test_registration_makes_the_frontend_selectable_in_asr_and_joint_tasks():
    register()
    from espnet2.tasks.asr import ASRTask
    from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask

    for task in (ASRTask, EnhS2TGRTask):
        args = task.get_parser().parse_args(["--frontend", "robust_distiller"])
        assert args.frontend == "robust_distiller"


def test_joint_se_asr_model_with_the_student_frontend_trains_one_step(distill_run):
    # The student replaces the joint model's fbank front-end of the ASR branch: the SE
    # front-end's output goes through the (frozen) student into the Conformer. One
    # training step runs and every trainable parameter gets a gradient.
    register()
    from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask

    _, config, ckpt = distill_run
    args = EnhS2TGRTask.get_parser().parse_args(
        ["--config", str(SMALL), "--frontend", "robust_distiller"]
    )
    # the small config's frontend_conf holds fbank options: replace them
    args.frontend_conf = {"distill_config": str(config), "distill_checkpoint": str(ckpt)}
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(28)] + ["<sos/eos>"]
    torch.manual_seed(0)
    model = EnhS2TGRTask.build_model(args).train()
    assert isinstance(model.s2t_model.frontend, RobustDistillerFrontend)
    speech, lengths = waves(batch=2, seconds=1.0)
    out = model(speech=speech, speech_lengths=lengths, speech_ref1=speech * 0.5,
                text_spk1=torch.randint(2, 30, (2, 6)), text_spk1_lengths=torch.tensor([6, 5]),
                utt_id=["a_SIMU", "b_SIMU"])
    assert torch.isfinite(out["loss"]).all()
    out["loss"].sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not any(p.requires_grad for p in model.s2t_model.frontend.student.parameters())
