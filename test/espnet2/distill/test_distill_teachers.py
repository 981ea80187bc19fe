"""Teacher checkpoints: the tiny kind round-trips, the Hugging Face kind is lazy."""

import importlib.util

import pytest
import torch

from distill_testlib import TEACHER_CONF, tiny_teacher_file, waves
from espnet2.distill.teachers import TinyTeacher, load_teacher, save_tiny_teacher

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def test_tiny_teacher_checkpoint_round_trip_gives_identical_hidden_states(tmp_path):
    path = tiny_teacher_file(tmp_path)
    torch.manual_seed(0)  # the same weights that tiny_teacher_file saved
    original = TinyTeacher(**TEACHER_CONF).eval()
    loaded = load_teacher("tiny", str(path))
    x, lengths = waves()
    with torch.no_grad():
        want, frames_want = original(x, lengths)
        got, frames = loaded(x, lengths)
    # num_layers + 1 states (HF convention), at a 320-sample frame shift
    assert len(got) == TEACHER_CONF["num_layers"] + 1 and loaded.frame_shift == 320
    assert torch.equal(frames, frames_want)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_loaded_teacher_is_frozen_and_in_eval_mode(tmp_path):
    teacher = load_teacher("tiny", str(tiny_teacher_file(tmp_path)))
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_bad_teacher_files_are_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_teacher("tiny", str(tmp_path / "missing.pth"))
    torch.save({"weights": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: not a tiny-teacher checkpoint"):
        load_teacher("tiny", str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable"):
        load_teacher("tiny", str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="teacher kind must be one of"):
        load_teacher("fairseq", str(tmp_path))


def test_save_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError):
        save_tiny_teacher(str(tmp_path / "t.pth"), TinyTeacher(**TEACHER_CONF))
    assert list(tmp_path.iterdir()) == []


def test_hf_teacher_directory_needs_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher("hf", str(tmp_path))


@pytest.mark.skipif(HAS_TRANSFORMERS, reason="checks the message shown without transformers")
def test_hf_teacher_without_transformers_says_what_to_install(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "wavlm"}')
    with pytest.raises(ImportError, match="optional package 'transformers'"):
        load_teacher("hf", str(tmp_path))


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is an optional dependency")
@pytest.mark.parametrize("model_type", ["wavlm", "hubert"])
def test_hf_teacher_from_a_saved_tiny_random_checkpoint(tmp_path, model_type):
    import transformers

    conf_cls = {"wavlm": transformers.WavLMConfig, "hubert": transformers.HubertConfig}[model_type]
    model_cls = {"wavlm": transformers.WavLMModel, "hubert": transformers.HubertModel}[model_type]
    config = conf_cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=64, conv_dim=(16,) * 7,
                      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    model_cls(config).save_pretrained(tmp_path)
    teacher = load_teacher("hf", str(tmp_path))
    x, lengths = waves(batch=2)
    with torch.no_grad():
        hidden, frames = teacher(x, lengths)
    assert teacher.num_layers == 3 and teacher.hidden_size == 32 and teacher.frame_shift == 320
    assert len(hidden) == 4 and hidden[0].shape == (2, 24, 32)
    # wav2vec2's conv stack (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2), out = (in - k) // s + 1:
    # 8000 samples -> 1599, 799, 399, 199, 99, 49, 24 frames; 7000 -> 1399, 699, 349, 174, 86, 43, 21.
    assert frames.tolist() == [24, 21]


ASR_ARGS = [
    "--frontend", "default", "--frontend_conf", "n_fft=512", "--frontend_conf", "hop_length=160",
    "--frontend_conf", "n_mels=20", "--normalize", "utterance_mvn",
    "--encoder", "conformer", "--encoder_conf", "output_size=32", "--encoder_conf", "num_blocks=2",
    "--encoder_conf", "attention_heads=2", "--encoder_conf", "linear_units=32",
    "--decoder", "transformer", "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=32",
    "--decoder_conf", "attention_heads=2",
]


def save_espnet(args, model, directory):
    """What ESPnet's trainer leaves: config.yaml (the args) and a model file beside it."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), directory / "valid.acc.best.pth")
    return directory / "valid.acc.best.pth"


def test_espnet_asr_encoder_teacher_returns_every_layer_of_the_saved_model(tmp_path):
    from espnet2.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args(ASR_ARGS + ["--token_list", "a,b,c"])
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    torch.manual_seed(0)
    model = ASRTask.build_model(args).eval()
    path = save_espnet(args, model, tmp_path / "asr")
    teacher = load_teacher("espnet_asr", str(path))
    x, lengths = waves(batch=2)
    with torch.no_grad():
        hidden, frames = teacher(x, lengths)
        enc_out, enc_lens = model.encode(x, lengths)
    # embedding + 2 Conformer layers; the last layer through the final norm is encode()'s output
    assert teacher.num_layers == 2 and teacher.hidden_size == 32 and len(hidden) == 3
    assert torch.equal(frames, enc_lens)
    assert torch.allclose(model.encoder.after_norm(hidden[-1]), enc_out, atol=1e-6)
    assert hidden[0].shape == enc_out.shape


def test_joint_model_asr_branch_is_a_teacher_and_drives_distillation(tmp_path):
    # The joint SE + ASR model's ASR encoder (its s2t_model) as the teacher; its 40 ms
    # frames are interpolated onto the student's 20 ms frames.
    from pathlib import Path as _Path

    from espnet2.distill.model import RobustDistillModel
    from espnet2.tasks.enh_s2t_gr import EnhS2TGRTask

    small = _Path(__file__).resolve().parents[3] / (
        "egs2/TEMPLATE/asr_with_enhancement/conf/tuning/train_enh_asr_small_cpu.yaml")
    args = EnhS2TGRTask.get_parser().parse_args(["--config", str(small)])
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    torch.manual_seed(0)
    joint = EnhS2TGRTask.build_model(args)  # as the project's joint recipe trains it
    path = save_espnet(args, joint, tmp_path / "joint")
    teacher = load_teacher("espnet_enh_s2t", str(path))
    assert teacher.num_layers == len(joint.s2t_model.encoder.encoders)
    student = dict(conv_layers=[[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2, dim=16,
                   ffn_dim=32, num_heads=2, num_layers=2, pos_conv_kernel=8, pos_conv_groups=2)
    model = RobustDistillModel(teacher=teacher, pred_layers=[1, teacher.num_layers],
                               student_conf=student, init_from_teacher=False,
                               denoising_conf=dict(hidden=8, layers=1))
    x, lengths = waves(batch=2)
    out = model(x, lengths)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.student.heads.weight.grad is not None


def test_espnet_teacher_needs_its_config_beside_the_model(tmp_path):
    torch.save({}, tmp_path / "model.pth")
    with pytest.raises(FileNotFoundError, match="config.yaml does not exist"):
        load_teacher("espnet_asr", str(tmp_path / "model.pth"))
