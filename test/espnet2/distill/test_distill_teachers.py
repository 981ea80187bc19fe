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
    assert frames.tolist() == [24, 19]
