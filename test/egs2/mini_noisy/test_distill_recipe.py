"""The distill1 recipe's Python steps on fabricated inputs: data dirs, the noise-invariance
measure and the results table."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO / "egs2/mini_noisy/distill1/local"
sys.path.insert(0, str(REPO / "test/espnet2/distill"))
from distill_testlib import tiny_model  # noqa: E402


def load(name: str):
    """A recipe script as a module under a unique name (the names are generic)."""
    spec = importlib.util.spec_from_file_location(f"distill1_{name}", LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_dirs = load("prepare_dirs")
noise_invariance = load("noise_invariance")
write_results = load("write_results")


def fake_dir(root: Path) -> Path:
    """A mini-corpus-like dir: two SIMU utterances with references, one REAL with a dummy."""
    src = root / "src"
    src.mkdir()
    rows = {"a_SIMU": 1600, "b_SIMU": 3200, "c_REAL": 800}
    for utt, n in rows.items():
        soundfile.write(root / f"{utt}.wav", np.zeros(n), 16000)
        soundfile.write(root / f"{utt}.clean.wav", np.zeros(n), 16000)
    (src / "wav.scp").write_text("".join(f"{u} {root}/{u}.wav\n" for u in rows))
    (src / "spk1.scp").write_text("".join(f"{u} {root}/{u}.clean.wav\n" for u in rows))
    (src / "utt2category").write_text("a_SIMU SIMU\nb_SIMU SIMU\nc_REAL REAL\n")
    (src / "text_spk1").write_text("a_SIMU CALL HOME\nb_SIMU STOP\nc_REAL OPEN IT\n")
    return src


def test_clean_dir_keeps_only_utterances_with_an_exact_reference(tmp_path):
    # REAL utterances have a close-talk or dummy reference: not a clean target.
    src = fake_dir(tmp_path)
    assert prepare_dirs.prepare_clean(src, tmp_path / "clean") == 2
    assert (tmp_path / "clean/wav.scp").read_text() == (
        f"a_SIMU {tmp_path}/a_SIMU.clean.wav\nb_SIMU {tmp_path}/b_SIMU.clean.wav\n"
    )
    assert (tmp_path / "clean/speech_shape").read_text() == "a_SIMU 1600\nb_SIMU 3200\n"


def test_asr_dir_has_noisy_audio_text_and_shapes_and_tokens_cover_the_text(tmp_path):
    src = fake_dir(tmp_path)
    assert prepare_dirs.prepare_asr(src, tmp_path / "asr") == 3
    assert (tmp_path / "asr/text").read_text().splitlines()[0] == "a_SIMU CALL HOME"
    assert (tmp_path / "asr/text_shape.char").read_text().splitlines()[0] == "a_SIMU 9"
    assert (tmp_path / "asr/speech_shape").read_text().splitlines()[2] == "c_REAL 800"
    prepare_dirs.write_tokens(tmp_path / "asr/text", tmp_path / "tokens.txt")
    tokens = (tmp_path / "tokens.txt").read_text().split()
    assert tokens[:3] == ["<blank>", "<unk>", "<space>"] and tokens[-1] == "<sos/eos>"
    assert set("CALLHOMESTOPOPENIT") == set(tokens[3:-1])


def test_bad_inputs_are_named(tmp_path):
    src = fake_dir(tmp_path)
    (src / "utt2category").write_text("a_SIMU SIMU\na_SIMU SIMU\n")
    with pytest.raises(ValueError, match=r"utt2category:2: duplicate key 'a_SIMU'"):
        prepare_dirs.prepare_clean(src, tmp_path / "x")
    (src / "utt2category").write_text("a_SIMU SIMU\nz_SIMU SIMU\n")
    with pytest.raises(ValueError, match="spk1.scp has no reference for z_SIMU"):
        prepare_dirs.prepare_clean(src, tmp_path / "x")
    (src / "wav.scp").write_text(f"a_SIMU {tmp_path}/missing.wav\nb_SIMU x\nc_REAL y\n")
    with pytest.raises(ValueError, match="utterance a_SIMU: cannot read"):
        prepare_dirs.prepare_asr(src, tmp_path / "x")


def test_noise_invariance_is_one_for_identical_versions_and_lower_for_noise(tmp_path):
    model = tiny_model(tmp_path).eval()
    g = torch.Generator().manual_seed(0)
    clean = [torch.randn(4000, generator=g) * 0.1 for _ in range(3)]
    same = [("u", c, c) for c in clean]
    noisy = [("u", c + torch.randn(4000, generator=g) * 0.1, c) for c in clean]
    identical = noise_invariance.layer_similarity(model.student, same)
    corrupted = noise_invariance.layer_similarity(model.student, noisy)
    assert list(identical) == ["0", "1", "2"]
    for layer in identical:
        for prefix in ("", "centred_"):
            assert identical[layer][prefix + "matched"] == pytest.approx(1.0, abs=1e-5)
            assert corrupted[layer][prefix + "matched"] < identical[layer][prefix + "matched"]
            # mismatched pairs are unrelated signals: below the matched similarity
            assert identical[layer][prefix + "mismatched"] < 0.99
        # centring removes the common direction: unrelated frames score lower than raw
        assert identical[layer]["centred_mismatched"] < identical[layer]["mismatched"]


def test_noise_invariance_names_a_missing_reference(tmp_path):
    (tmp_path / "wav.scp").write_text("u1 a.wav\n")
    (tmp_path / "spk1.scp").write_text("u2 b.wav\n")
    with pytest.raises(ValueError, match="no clean reference for u1"):
        noise_invariance.load_pairs(tmp_path, 10)


# The Sum/Avg row as sclite writes it (# Snt, # Wrd | Corr Sub Del Ins Err S.Err), from a smoke run.
SCLITE_SUM = "| Sum/Avg |    16      99  |   2.0    57.6     40.4     1.0    99.0   100.0  |"
SCLITE_SUM_CER = "| Sum/Avg |    16     590  |  51.2    30.1     18.7     5.3    54.1   100.0  |"


def test_results_table_reads_sclite_sum_row_and_invariance(tmp_path):
    exp = tmp_path / "exp"
    for system in ("before", "after"):
        for unit, row in (("wer", SCLITE_SUM), ("cer", SCLITE_SUM_CER)):
            score = exp / f"asr_{system}/decode_t/score_{unit}"
            score.mkdir(parents=True)
            (score / "result.txt").write_text(f"header\n{row}\n")
    scores = {"matched": 0.95, "mismatched": 0.5, "centred_matched": 0.8, "centred_mismatched": 0.01}
    (exp / "noise_invariance.json").write_text(json.dumps(
        {"before": {"0": dict(scores, matched=0.9)}, "after": {"0": scores}}))
    assert write_results.sum_avg(exp / "asr_before/decode_t/score_wer/result.txt") == [
        16, 99, 2.0, 57.6, 40.4, 1.0, 99.0, 100.0]
    sys.argv = ["write_results.py", "--expdir", str(exp), "--systems", "before", "after",
                "--test_sets", "t", "--distill_config", "c.yaml", "--teacher", "tiny:t.pth",
                "--out", str(exp / "RESULTS.md")]
    write_results.main()
    text = (exp / "RESULTS.md").read_text()
    raw, centred = text.split("Mean-centred:")
    assert "| after | 0.950 (0.500) |" in raw and "| before | 0.900 (0.500) |" in raw
    assert "| after | 0.800 (0.010) |" in centred.split("## Downstream")[0]
    assert "| before | 99.0 (57.6/40.4/1.0) / 54.1 (16 utts, 99 words) |" in text
    assert "RANDOM weights" in text


@pytest.mark.parametrize("config", ["train_distill_tiny.yaml", "train_distill_smoke.yaml"])
def test_tiny_configs_fit_the_teacher_the_recipe_writes(tmp_path, config, monkeypatch):
    # The recipe's configs and its teacher script must agree: pred_layers within the 6
    # teacher layers, and every student tensor initialised from the teacher (conv channels
    # and width equal), or "before" would not be the truncated teacher.
    import yaml

    from espnet2.distill.model import RobustDistillModel

    teacher = tmp_path / "teacher.pth"
    monkeypatch.setattr(sys, "argv", ["make_tiny_teacher.py", "--out", str(teacher)])
    load("make_tiny_teacher").main()
    conf = yaml.safe_load((LOCAL.parent / "conf/tuning" / config).read_text())["model_conf"]
    conf["teacher_path"] = str(teacher)
    model = RobustDistillModel(**conf)
    copied = model.init_student_from_teacher()
    student_keys = {k for k in model.student.state_dict() if not k.startswith("heads.")}
    assert set(copied) == student_keys
    assert model.pred_layers == [2, 4, 6]
