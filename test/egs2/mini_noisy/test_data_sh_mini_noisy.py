"""egs2/mini_noisy/asr_with_enhancement/local/data.sh end to end (smoke size): synthesis, the
CHiME-4 preparation on the synthesised tree, and the per-condition test sets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2/mini_noisy/asr_with_enhancement"
sys.path.insert(0, str(REPO / "test/egs2/chime4"))
sys.path.insert(0, str(RECIPE / "local"))
from chime4_testlib import assert_kaldi_data_dir, read_table  # noqa: E402
from make_condition_sets import make_condition_sets  # noqa: E402
from prepare_chime4 import DATA_DIR_FILES, PrepError  # noqa: E402

BASE_TEST_DIRS = [f"{s}_{c}_isolated_1ch_track" for s in ("dt05", "et05") for c in ("real", "simu")]
SNR_DIRS = [f"{d}_{snr}" for d in BASE_TEST_DIRS for snr in ("0dB", "5dB")]
EXPECTED = sorted(["tr05_multi_noisy", "dt05_multi_isolated_1ch_track", "nlsyms.txt"] + BASE_TEST_DIRS + SNR_DIRS)


def data_sh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "local/data.sh", *args], cwd=RECIPE, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini_data_sh")
    r = data_sh("--size", "smoke", "--corpus_dir", str(root / "corpus"), "--output_dir", str(root / "data"))
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "corpus", root / "data"


def conditions(corpus: Path) -> dict:
    rows = (line.split() for line in (corpus / "data/annotations/mini_noisy_conditions.txt").read_text().splitlines())
    return {stem: (s, cat, env, snr) for stem, s, cat, env, snr in rows}


@pytest.mark.slow
def test_data_sh_writes_the_chime4_dirs_plus_per_snr_test_sets(prepared):
    """The mini recipe gets the same data-dir names as CHiME-4 (so the stage script and configs
    are shared) plus one dir per test SNR, all consistent Kaldi dirs."""
    corpus, data = prepared
    assert sorted(p.name for p in data.iterdir()) == EXPECTED
    assert_kaldi_data_dir(data / "tr05_multi_noisy")
    assert_kaldi_data_dir(data / "dt05_multi_isolated_1ch_track")
    for d in BASE_TEST_DIRS + SNR_DIRS:
        assert_kaldi_data_dir(data / d, DATA_DIR_FILES + ("utt2condition",))
    # The smoke sizes: 40 train (8 real), 16 dev, 32 test, half real.
    assert len(read_table(data / "tr05_multi_noisy" / "wav.scp")) == 40
    assert len(read_table(data / "dt05_multi_isolated_1ch_track" / "wav.scp")) == 16
    assert len(read_table(data / "et05_real_isolated_1ch_track" / "wav.scp")) == 16
    assert (data / "nlsyms.txt").read_text() == ""  # the grammar has no noise tokens


@pytest.mark.slow
def test_training_references_follow_the_category(prepared):
    """SIMU utterances train the SE front-end against the exact clean signal (isolated_ext
    Clean); REAL ones carry the noisy input as a dummy reference and the _REAL suffix."""
    _, data = prepared
    d = data / "tr05_multi_noisy"
    wav, ref, cat = (read_table(d / f) for f in ("wav.scp", "spk1.scp", "utt2category"))
    assert sorted(set(cat.values())) == ["REAL", "SIMU"] and list(cat.values()).count("REAL") == 8
    for utt, c in cat.items():
        assert utt.endswith(f".CH5_{c}")
        if c == "SIMU":
            assert ref[utt].endswith(".CH5.Clean.wav") and "/isolated_ext/tr05_" in ref[utt]
        else:
            assert ref[utt] == wav[utt]
    dev_ref = read_table(data / "dt05_real_isolated_1ch_track" / "spk1.scp")
    assert all(p.endswith(".CH0.wav") for p in dev_ref.values())


@pytest.mark.slow
def test_utt2condition_and_snr_dirs_match_the_synthesis(prepared):
    """utt2condition says <ENV>_<snr>dB exactly as recorded at synthesis time, and the per-SNR
    dirs partition each test dir by that SNR, with every file restricted to their utterances."""
    corpus, data = prepared
    cond = conditions(corpus)
    for base in BASE_TEST_DIRS:
        u2c = read_table(data / base / "utt2condition")
        wav = read_table(data / base / "wav.scp")
        assert sorted(u2c) == sorted(wav)
        for utt, value in u2c.items():
            _set, _cat, env, snr = cond[utt.rsplit("_", 1)[0]]
            assert value == f"{env}_{snr}dB"
        parts = {snr: read_table(data / f"{base}_{snr}dB" / "wav.scp") for snr in ("0", "5")}
        assert not set(parts["0"]) & set(parts["5"])
        assert {**parts["0"], **parts["5"]} == wav
        for snr, part in parts.items():
            assert all(u2c[u].endswith(f"_{snr}dB") for u in part)
            text = read_table(data / f"{base}_{snr}dB" / "text")
            assert text == {u: t for u, t in read_table(data / base / "text").items() if u in part}


@pytest.mark.slow
def test_rerun_keeps_everything_up_to_date(prepared):
    """A second stage-1 run finds the corpus and every data dir up to date and rewrites
    nothing (same inodes)."""
    corpus, data = prepared
    inodes = {p: p.stat().st_ino for p in data.rglob("*") if p.is_file()}
    r = data_sh("--size", "smoke", "--corpus_dir", str(corpus), "--output_dir", str(data))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is up to date (same configuration and versions): kept" in r.stderr
    assert "INFO: wrote" not in r.stderr
    assert {p: p.stat().st_ino for p in data.rglob("*") if p.is_file()} == inodes


def test_data_sh_rejects_unknown_options():
    r = data_sh("--sizes", "smoke")
    assert r.returncode == 2 and "unknown option '--sizes'" in r.stdout


def test_make_condition_sets_names_an_utterance_without_condition(tmp_path):
    data = tmp_path / "data"
    for base in BASE_TEST_DIRS:
        (data / base).mkdir(parents=True)
        (data / base / "wav.scp").write_text(f"F11_F11C0000_BUS_SIMU /x/{base}.wav\n")
    cond = tmp_path / "conditions.txt"
    cond.write_text("F11_F11C0001_BUS et05 simu BUS 0\n")
    with pytest.raises(PrepError, match=f"{data}/dt05_real_isolated_1ch_track/wav.scp: utterance F11_F11C0000_BUS_SIMU has no line in {cond}"):
        make_condition_sets(data, cond)
