"""egs2/chime4/asr_with_enhancement/run.sh on a fabricated CHiME-4 tree.

The tree comes from the CHiME-4 preparation tests' generator (``chime4_testlib``, exact
layout); its 10-sample wavs are rewritten with 1 s of seeded noise so that the recipe's
duration filter (0.1-20 s) keeps them and a model can run on them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from chime4_testlib import TR05_REAL, TR05_SIMU, TRACK_1CH, make_fake_chime4

# The recipe sandbox helper lives with the RATS recipe tests (the other real-corpus recipe).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rats_chA"))
from recipe_sandbox import REPO, make_sandbox, read_map, run_recipe  # noqa: E402

TRAIN, VALID = "tr05_multi_noisy", "dt05_multi_isolated_1ch_track"
TESTS = [f"{s}_{c}_isolated_1ch_track" for s in ("dt05", "et05") for c in ("real", "simu")]


def fake_chime4_with_audio(root: Path, seconds: float = 1.0):
    """The prep tests' fake tree, every wav replaced by ``seconds`` of 16 kHz noise."""
    tree = make_fake_chime4(root)
    rng = np.random.default_rng(0)
    for wav in sorted(root.rglob("*.wav")):
        sf.write(str(wav), 0.1 * rng.standard_normal(int(seconds * 16000)), 16000, subtype="PCM_16")
    return tree


def local_data_opts(tree) -> str:
    return (f"--corpus_dir {tree['corpus']} --extra_annotations {tree['extra_annotations']} "
            f"--isolated_ext {tree['isolated_ext']}")


def test_run_sh_stages_1_to_5_prepare_dumps_and_the_char_token_list(tmp_path):
    """The recipe's sets, dumped at 16 kHz, and ESPnet's char token list with nlsyms.

    Expected sizes follow from the fake tree: tr05 = (real + simu stems) x 6 channels, valid
    = every dt05 1ch-track utterance. The transcripts contain <NOISE>-style symbols listed in
    data/nlsyms.txt; with --nlsyms_txt they must be single tokens, not split into characters.
    """
    recipe = make_sandbox(tmp_path, "chime4/asr_with_enhancement")
    tree = fake_chime4_with_audio(tmp_path / "corpus")
    r = run_recipe(recipe, ["--stage", "1", "--stop_stage", "5", "--nj", "2",
                            "--local_data_opts", local_data_opts(tree)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    dump = recipe / "dump/raw"
    assert len(read_map(dump / TRAIN / "wav.scp")) == 6 * (len(TR05_REAL) + len(TR05_SIMU))
    assert len(read_map(dump / VALID / "wav.scp")) == sum(len(u) for (s, _), u in TRACK_1CH.items() if s == "dt05")
    for t in TESTS:
        assert (dump / t / "wav.scp").is_file() and (dump / t / "spk1.scp").is_file()
    categories = set(read_map(dump / TRAIN / "utt2category").values())
    assert categories == {"SIMU", "REAL"}  # both kinds reach training (REAL: no SE loss)
    for path in list(read_map(dump / TRAIN / "wav.scp").values())[:3]:
        assert sf.info(str(recipe / path)).samplerate == 16000  # paths relative to the recipe
    tokens = (recipe / "data/en_token_list/char/tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    nlsyms = (recipe / "data/nlsyms.txt").read_text().split()
    assert nlsyms and set(nlsyms) <= set(tokens)


def smoke_configs(tmp_path: Path):
    """A tiny joint model (TEMPLATE's CPU config, shrunk), a tiny LSTM LM, greedy decoding."""
    conf = yaml.safe_load((REPO / "egs2/TEMPLATE/asr_with_enhancement/conf/tuning/train_enh_asr_small_cpu.yaml").read_text())
    conf["enh_separator_conf"].update(layer=2, stack=1, bottleneck_dim=16, hidden_dim=32)
    conf["asr_encoder_conf"].update(output_size=32, attention_heads=2, linear_units=64, num_blocks=1)
    conf["asr_decoder_conf"].update(attention_heads=2, linear_units=64, num_blocks=1)
    conf["frontend_conf"]["n_mels"] = 40
    conf["specaug"] = None
    conf.pop("specaug_conf", None)
    conf.update(max_epoch=1, batch_size=8, keep_nbest_models=1, grad_rule="gr")
    train = tmp_path / "train_smoke.yaml"
    train.write_text(yaml.safe_dump(conf))
    decode = tmp_path / "decode_smoke.yaml"
    decode.write_text(yaml.safe_dump(dict(beam_size=1, ctc_weight=0.3, lm_weight=0.3, penalty=0.0,
                                          maxlenratio=0.3, minlenratio=0.0)))
    lm = yaml.safe_load((REPO / "egs2/chime4/asr_with_enhancement/conf/tuning/train_lm_lstm.yaml").read_text())
    lm["lm_conf"].update(unit=16, nlayers=1)
    lm.update(max_epoch=1, batch_size=8)
    lm_path = tmp_path / "lm_smoke.yaml"
    lm_path.write_text(yaml.safe_dump(lm))
    return train, decode, lm_path


@pytest.mark.slow
def test_run_sh_trains_decodes_and_scores_a_smoke_model_on_the_fake_tree(tmp_path):
    """Every stage of the recipe runs, LM included, and stage 16 writes a WER row per test set.

    The numbers themselves mean nothing (random audio, one epoch); the test protects the
    wiring: the recipe's set names, options and configs reach LM training, joint training,
    decoding with the LM checkpoint run.sh names (valid.loss.best.pth) and scoring.
    """
    recipe = make_sandbox(tmp_path, "chime4/asr_with_enhancement")
    tree = fake_chime4_with_audio(tmp_path / "corpus")
    train, decode, lm = smoke_configs(tmp_path)
    # Two of the four test sets (a real and a simulated one) and one job per stage keep the
    # number of Python processes, each importing ESPnet, and so the runtime, small.
    tests = ["dt05_real_isolated_1ch_track", "et05_simu_isolated_1ch_track"]
    r = run_recipe(recipe, ["--nj", "1", "--inference_nj", "1", "--ngpu", "0", "--lm_config", str(lm),
                            "--enh_asr_config", str(train), "--inference_config", str(decode),
                            "--test_sets", " ".join(tests),
                            "--local_data_opts", local_data_opts(tree)], timeout=1500)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    exps = list((recipe / "exp").glob(f"enh_asr_{train.stem}_*"))
    assert len(exps) == 1, sorted((recipe / "exp").iterdir())
    config = yaml.safe_load((exps[0] / "config.yaml").read_text())
    assert config["grad_rule"] == "gr" and config["max_epoch"] == 1
    lm_exps = list((recipe / "exp").glob(f"lm_{lm.stem}_*"))
    assert len(lm_exps) == 1 and (lm_exps[0] / "valid.loss.best.pth").is_file()
    decode_dirs = [p.name for p in exps[0].glob("decode_*")]
    assert decode_dirs and all(f"_lm_{lm_exps[0].name}_valid.loss.best_" in d for d in decode_dirs)
    results = (exps[0] / "RESULTS.md").read_text()
    for t in tests:
        assert f"/{t}|" in results, f"no WER row for {t}"
        hyp = read_map(next(exps[0].glob(f"*/{t}/text*")))
        assert sorted(hyp) == sorted(read_map(recipe / "dump/raw" / t / "text_spk1"))  # every utterance decoded
