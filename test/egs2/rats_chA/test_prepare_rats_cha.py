"""RATS channel A preparation: both input modes on fabricated trees, and its error paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fake_rats_tree import (
    DELAY,
    NT_GAP,
    PAIRS,
    RECIPE,
    SOURCES,
    load_prep_module,
    make_ldc_tree,
    make_pairs_tree,
)

prep = load_prep_module()
PREFIX = "rats_Ach_waveform_8k_joint_enh_asr"


def read_map(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_pairs_mode_writes_the_authors_data_dirs_sorted_and_consistent(tmp_path):
    """Every split gets the GR data-dir contract, keys sorted and identical across files."""
    corpus = make_pairs_tree(tmp_path / "pairs")
    dirs = prep.prepare_rats_cha(corpus, tmp_path / "data")
    assert sorted(dirs) == ["test", "train", "valid"]
    for split, utts in PAIRS.items():
        d = tmp_path / "data" / f"{PREFIX}_{split}"
        assert dirs[split] == d
        expected_ids = sorted(u[0] for u in utts)
        for name in ("wav.scp", "spk1.scp", "text_spk1", "text", "utt2spk", "utt2category"):
            keys = [line.split(" ", 1)[0] for line in (d / name).read_text().splitlines()]
            assert keys == expected_ids, name  # C-sorted and complete
        wav, ref = read_map(d / "wav.scp"), read_map(d / "spk1.scp")
        for uttid, _, words in utts:
            assert wav[uttid] == str((corpus / split / "noisy" / f"{uttid}.wav").resolve())
            assert ref[uttid] == str((corpus / split / "clean" / f"{uttid}.wav").resolve())
            assert read_map(d / "text_spk1")[uttid] == words
        # Every pair has a clean reference, so every utterance is SIMU (SE loss applies).
        assert set(read_map(d / "utt2category").values()) == {"SIMU"}


def test_speaker_is_the_fisher_call_side_and_spk2utt_inverts_utt2spk(tmp_path):
    """Speaker = id up to the side letter (a prefix of the id, as Kaldi sorting needs)."""
    prep.prepare_rats_cha(make_pairs_tree(tmp_path / "p"), tmp_path / "data")
    d = tmp_path / "data" / f"{PREFIX}_train"
    utt2spk = read_map(d / "utt2spk")
    assert utt2spk["fe_03_49740-04165-B-006411-006611-A"] == "fe_03_49740-04165-B"
    spk2utt = {k: v.split() for k, v in read_map(d / "spk2utt").items()}
    assert spk2utt == {
        "fe_03_49740-04165-B": sorted(u for u, s in utt2spk.items() if s == "fe_03_49740-04165-B"),
        "fe_03_50001-04200-A": sorted(u for u, s in utt2spk.items() if s == "fe_03_50001-04200-A"),
    }
    assert prep.speaker_of("my_own_id_7") == "my_own_id_7"  # other id forms: own speaker


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: (c / "train/clean/fe_03_49740-04165-B-006700-006760-A.wav").unlink(),
         "in noisy/ but not in clean/: fe_03_49740-04165-B-006700-006760-A"),
        (lambda c: (c / "valid/noisy/fe_03_55681-02161-B-040300-040350-A.wav").unlink(),
         "in clean/ but not in noisy/: fe_03_55681-02161-B-040300-040350-A"),
        (lambda c: (c / "test/text").write_text("fe_03_1781-02235-B-024485-024688-A i do not know\n"),
         "in noisy/ but not in text: fe_03_1781-02235-B-024700-024800-A"),
        (lambda c: sf.write(str(c / "train/clean/fe_03_49740-04165-B-006700-006760-A.wav"),
                            np.zeros(479), 8000),
         "480 samples) does not match"),
        (lambda c: (c / "valid/text").write_text("fe_03_55681-02161-B-040160-040260-A\n"),
         "valid/text:1: utterance 'fe_03_55681-02161-B-040160-040260-A' has no transcript"),
        (lambda c: shutil.rmtree(c / "test/clean"), "test/clean: directory not found"),
    ],
)
def test_pairs_mode_names_the_file_and_problem(tmp_path, damage, message):
    """Missing/extra/mismatched files stop the prep with the path and what is wrong."""
    corpus = make_pairs_tree(tmp_path / "pairs")
    damage(corpus)
    with pytest.raises(prep.PrepError, match=None) as err:
        prep.prepare_rats_cha(corpus, tmp_path / "data")
    assert message in str(err.value)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_ids_ending_in_real_or_clean_are_rejected(tmp_path):
    """The joint model skips the SE loss for ids ending in REAL/CLEAN; RATS pairs need it."""
    corpus = make_pairs_tree(tmp_path / "pairs")
    for kind in ("noisy", "clean"):
        shutil.copy(corpus / f"test/{kind}/fe_03_1781-02235-B-024700-024800-A.wav",
                    corpus / f"test/{kind}/utt1_REAL.wav")
    with (corpus / "test/text").open("a") as f:
        f.write("utt1_REAL hello\n")
    with pytest.raises(prep.PrepError, match="utt1_REAL.*ends in REAL/CLEAN"):
        prep.prepare_rats_cha(corpus, tmp_path / "data")


def test_failed_rerun_keeps_the_previous_data_dirs(tmp_path):
    """Atomic output: a run that fails leaves the last good dirs untouched and no temp dirs."""
    corpus = make_pairs_tree(tmp_path / "pairs")
    prep.prepare_rats_cha(corpus, tmp_path / "data")
    before = (tmp_path / "data" / f"{PREFIX}_train" / "wav.scp").read_text()
    (corpus / "test/text").write_text("")
    with pytest.raises(prep.PrepError, match="test/text: no transcripts"):
        prep.prepare_rats_cha(corpus, tmp_path / "data")
    assert (tmp_path / "data" / f"{PREFIX}_train" / "wav.scp").read_text() == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        f"{PREFIX}_{s}" for s in ("test", "train", "valid")
    ]


def test_ldc_mode_cuts_aligned_8k_pairs_and_drops_untransmitted_segments(tmp_path):
    """Segments: id in the authors' form, 8 kHz, noisy aligned with clean, NT overlaps gone.

    The fake channel A is the source delayed by DELAY s; after the prep shifts by the delay
    estimated from the SAD tables, the noisy/clean cross-correlation must peak at lag 0.
    Fisher segment 3 is all noise tags (empty after normalisation) and segment 4 overlaps
    the NT gap of channel A, so 2 segments per source remain.
    """
    ldc, fisher = make_ldc_tree(tmp_path)
    dirs = prep.prepare_rats_cha(ldc, tmp_path / "data", mode="ldc", fisher_dir=fisher)
    src, _, call, side = SOURCES["train"]
    text = read_map(dirs["train"] / "text_spk1")
    assert text == {
        f"fe_03_{src}-{call[6:]}-{side}-000050-000150-A": "hello there",
        f"fe_03_{src}-{call[6:]}-{side}-000200-000300-A": "i guess so",
    }
    assert NT_GAP[0] < 4.0 + DELAY + 1.0  # the dropped segment really overlaps the gap
    wav, ref = read_map(dirs["train"] / "wav.scp"), read_map(dirs["train"] / "spk1.scp")
    for uttid in text:
        noisy, fs_n = sf.read(wav[uttid])
        clean, fs_c = sf.read(ref[uttid])
        assert fs_n == fs_c == 8000 and len(noisy) == len(clean) == 8000
        xcorr = np.correlate(noisy, clean, mode="full")
        assert int(np.argmax(xcorr)) - (len(clean) - 1) == 0
    assert read_map(dirs["valid"] / "utt2spk") == {
        u: f"fe_03_{SOURCES['dev-1'][0]}-02161-A" for u in read_map(dirs["valid"] / "text")
    }


def test_ldc_mode_reports_missing_fisher_transcript(tmp_path):
    ldc, fisher = make_ldc_tree(tmp_path)
    (fisher / "trans" / "fe_03_02235.txt").unlink()
    with pytest.raises(prep.PrepError, match="10003_20003_eng_A.flac: Fisher transcript fe_03_02235.txt"):
        prep.prepare_rats_cha(ldc, tmp_path / "data", mode="ldc", fisher_dir=fisher)


def test_delay_estimate_is_the_median_speech_onset_shift():
    """Two of three S onsets shifted by 0.03 s and an outlier: the median ignores the outlier."""
    S = prep.SadRegion
    src = [S(1.0, 2.0, "S"), S(3.0, 4.0, "S"), S(5.0, 6.0, "S"), S(2.0, 3.0, "NS")]
    chan = [S(1.03, 2.03, "S"), S(3.03, 4.03, "S"), S(5.5, 6.0, "S"), S(4.0, 4.2, "RX")]
    assert prep.estimate_delay(src, chan, "x") == pytest.approx(0.03)
    with pytest.raises(prep.PrepError, match="cannot pair speech regions"):
        prep.estimate_delay(src, chan[:2], "x")


def test_cli_exit_status_and_message_on_bad_corpus(tmp_path):
    """The script run by local/data.sh exits non-zero and logs the offending path."""
    r = subprocess.run(
        [sys.executable, str(RECIPE / "local" / "prepare_rats_cha.py"),
         "--corpus_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "data")],
        capture_output=True, text=True,
    )
    assert r.returncode == 1
    assert f"{tmp_path / 'nowhere'}: corpus directory not found" in r.stderr


def test_prepared_ids_get_the_se_loss_under_the_joint_models_id_convention(tmp_path):
    """utt2category says SIMU, and the joint model, which decides from the id suffix, agrees.

    TwoTaskEnhS2TModel skips the SE loss for ids ending in REAL/CLEAN; the authors' RATS ids
    end in the channel letter (``-A``), so every prepared pair trains the SE front-end.
    """
    from espnet2.enh.espnet_enh_s2t_two_task_model import utterance_category

    dirs = prep.prepare_rats_cha(make_pairs_tree(tmp_path / "pairs"), tmp_path / "data")
    for d in dirs.values():
        for uttid, category in read_map(d / "utt2category").items():
            assert category == "SIMU" == utterance_category(uttid), uttid
