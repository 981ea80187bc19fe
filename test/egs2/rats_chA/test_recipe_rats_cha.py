"""egs2/rats_chA/asr_with_enhancement: run.sh stages 1-5 and local/data.sh on fabricated trees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import soundfile as sf

from fake_rats_tree import PAIRS, make_ldc_tree, make_pairs_tree
from recipe_sandbox import make_sandbox, read_map, run_recipe

PREFIX = "rats_Ach_waveform_8k_joint_enh_asr"


def test_run_sh_stages_1_to_5_prepare_dumps_and_the_bpe_token_list(tmp_path):
    """The recipe's defaults carry the pairs through to what training reads.

    Expected: data dirs as prepared; dump/raw/<train> without the 0.06 s utterance (the
    release's 0.1 s minimum), 8 kHz wavs (--fs 8k); a BPE token list with ESPnet's
    <blank>/<unk> first and <sos/eos> last. --nbpe is lowered from 1000 because the fake
    transcripts hold far fewer than 1000 pieces (sentencepiece refuses that).
    """
    recipe = make_sandbox(tmp_path, "rats_chA/asr_with_enhancement")
    corpus = make_pairs_tree(tmp_path / "pairs")
    r = run_recipe(recipe, ["--stage", "1", "--stop_stage", "5", "--nj", "2", "--nbpe", "30",
                            "--local_data_opts", f"--corpus_dir {corpus}"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for split, utts in PAIRS.items():
        assert sorted(read_map(recipe / "data" / f"{PREFIX}_{split}" / "wav.scp")) == sorted(u[0] for u in utts)
    train = recipe / "dump/raw" / f"{PREFIX}_train"
    kept = sorted(read_map(train / "wav.scp"))
    assert kept == sorted(u[0] for u in PAIRS["train"] if u[1] / 8000 > 0.1)
    assert sorted(read_map(train / "spk1.scp")) == kept == sorted(read_map(train / "text_spk1"))
    for path in list(read_map(train / "wav.scp").values()) + list(read_map(train / "spk1.scp").values()):
        assert sf.info(str(recipe / path)).samplerate == 8000  # paths relative to the recipe
    tokens = (recipe / "data/en_token_list/bpe_bpe30/tokens.txt").read_text().split()
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert len(tokens) == len(set(tokens)) and "\u2581" in "".join(tokens)  # unique BPE pieces
    assert (recipe / "data/en_token_list/bpe_bpe30/bpe.model").is_file()


def data_sh(recipe: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    import os
    import sys

    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                "RATS_CHA_PAIRS": "", "RATS_LDC": "", "FISHER_TRANS": "", **(env or {})}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=recipe, env=full_env,
                          capture_output=True, text=True)


def test_data_sh_ldc_mode_takes_the_corpora_from_db_sh_variables(tmp_path):
    """--mode ldc reads $RATS_LDC and $FISHER_TRANS (db.sh) and writes the cut wavs under data/."""
    recipe = make_sandbox(tmp_path, "rats_chA/asr_with_enhancement")
    ldc, fisher = make_ldc_tree(tmp_path)
    r = data_sh(recipe, "--mode", "ldc", env={"RATS_LDC": str(ldc), "FISHER_TRANS": str(fisher)})
    assert r.returncode == 0, r.stdout + r.stderr
    wav = read_map(recipe / "data" / f"{PREFIX}_test" / "wav.scp")
    assert len(wav) == 2 and all(v.startswith(str(recipe / "data/rats_cha_8k/test/noisy")) for v in wav.values())


def test_data_sh_fails_clearly_without_a_corpus_or_with_a_bad_mode(tmp_path):
    recipe = make_sandbox(tmp_path, "rats_chA/asr_with_enhancement")
    r = data_sh(recipe)
    assert r.returncode == 2 and "set RATS_CHA_PAIRS in db.sh (or pass --corpus_dir)" in r.stdout
    r = data_sh(recipe, "--mode", "ldc", "--corpus_dir", str(tmp_path))
    assert r.returncode == 2 and "set FISHER_TRANS in db.sh" in r.stdout
    r = data_sh(recipe, "--mode", "flac")
    assert r.returncode == 2 and "--mode must be pairs or ldc" in r.stdout
    r = data_sh(recipe, "--bogus", "1")
    assert r.returncode == 1 and "invalid option --bogus" in r.stderr
    r = data_sh(recipe, "--corpus_dir", str(tmp_path / "missing"))
    assert r.returncode == 1 and "missing: corpus directory not found" in r.stderr
