"""Tests of egs2/chime4/asr_with_enhancement/local/prepare_chime4.py on fake CHiME-4 trees."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from chime4_testlib import TR05_REAL, assert_kaldi_data_dir, make_fake_chime4, read_table, write_text, write_wav

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "egs2/chime4/asr_with_enhancement/local"))
import prepare_chime4 as prep  # noqa: E402

TEST_DIRS = [f"{s}_{c}_isolated_1ch_track" for s in ("dt05", "et05") for c in ("real", "simu")]
ALL_DIRS = sorted(["tr05_multi_noisy", "dt05_multi_isolated_1ch_track"] + TEST_DIRS)


@pytest.fixture
def tree(tmp_path):
    return make_fake_chime4(tmp_path)


def run(tree, out, **kw):
    kw.setdefault("extra_annotations", tree["extra_annotations"])
    return prep.prepare_chime4(tree["corpus"], out, **kw)


@pytest.mark.parametrize(
    "word, expected",
    [
        # Expected values are the rules of ESPnet's normalize_transcript.pl, applied by hand.
        ("hello", "HELLO"),  # upper-cased
        ("o\\'clock", "O'CLOCK"),  # backslash quoting removed
        ("[<door_slam]", None),  # noise in the preceding word: deleted
        ("[door_slam>]", None),  # noise in the next word: deleted
        ("[phone_ring/]", None),  # start of a noise: deleted
        ("[/phone_ring]", None),  # end of a noise: deleted
        ("~", None),  # truncation mark
        (".", None),  # pause mark
        ("[loud_breath]", "<NOISE>"),  # other noises map to the noise symbol
        ("<and>", "AND"),  # verbal deletion, still pronounced
        ("<it's>", "IT'S"),
        ("<wow!>", "<WOW!>"),  # not a plain word inside <>: kept (becomes an nlsym)
        ("--dash", "-DASH"),
        ("%percent", "PERCENT"),
        (".point", "POINT"),
        (".period", ".PERIOD"),  # verbal punctuation stays
        (",comma", ",COMMA"),
    ],
)
def test_normalize_word_follows_espnet_chime4_rules(word, expected):
    assert prep.normalize_word(word) == expected


def test_normalize_transcript_joins_kept_words_with_single_spaces():
    assert prep.normalize_transcript("  the [<x]  [y] <z>\t~ end ") == "THE <NOISE> Z END"


def test_dev_1ch_track_dirs_hold_exactly_the_listed_utterances(tree, tmp_path):
    """Every file of the dt05 dirs, spelled out: ids from the 1ch list + _REAL/_SIMU, the 1ch
    track wav as input, CH0 (real) or the booth recording (simu, no isolated_ext) as reference,
    normalised text, speaker = id prefix, category from the suffix."""
    out = tmp_path / "data"
    run(tree, out)
    c = tree["corpus"] / "data/audio/16kHz"
    real = out / "dt05_real_isolated_1ch_track"
    assert (real / "wav.scp").read_text() == (
        f"F01_050C0101_BUS_REAL {c}/isolated_1ch_track/dt05_bus_real/F01_050C0101_BUS.wav\n"
        f"M03_050C0102_CAF_REAL {c}/isolated_1ch_track/dt05_caf_real/M03_050C0102_CAF.wav\n"
    )
    assert (real / "spk1.scp").read_text() == (
        f"F01_050C0101_BUS_REAL {c}/isolated/dt05_bus_real/F01_050C0101_BUS.CH0.wav\n"
        f"M03_050C0102_CAF_REAL {c}/isolated/dt05_caf_real/M03_050C0102_CAF.CH0.wav\n"
    )
    assert (real / "text").read_text() == "F01_050C0101_BUS_REAL HELLO <NOISE> WORLD\nM03_050C0102_CAF_REAL GOOD BYE\n"
    assert (real / "utt2spk").read_text() == "F01_050C0101_BUS_REAL F01\nM03_050C0102_CAF_REAL M03\n"
    assert (real / "spk2utt").read_text() == "F01 F01_050C0101_BUS_REAL\nM03 M03_050C0102_CAF_REAL\n"
    assert (real / "utt2category").read_text() == "F01_050C0101_BUS_REAL REAL\nM03_050C0102_CAF_REAL REAL\n"

    simu = out / "dt05_simu_isolated_1ch_track"
    assert (simu / "wav.scp").read_text() == (
        f"F01_050C0103_BUS_SIMU {c}/isolated_1ch_track/dt05_bus_simu/F01_050C0103_BUS.wav\n"
        f"M03_050C0104_PED_SIMU {c}/isolated_1ch_track/dt05_ped_simu/M03_050C0104_PED.wav\n"
    )
    assert (simu / "spk1.scp").read_text() == (
        f"F01_050C0103_BUS_SIMU {c}/isolated/dt05_bth/F01_050C0103_BTH.CH0.wav\n"
        f"M03_050C0104_PED_SIMU {c}/isolated/dt05_bth/M03_050C0104_BTH.CH0.wav\n"
    )
    assert (simu / "text").read_text() == "F01_050C0103_BUS_SIMU SIMULATED ONE\nM03_050C0104_PED_SIMU SIMULATED TWO\n"
    assert (simu / "utt2category").read_text() == "F01_050C0103_BUS_SIMU SIMU\nM03_050C0104_PED_SIMU SIMU\n"

    # Validation = dt05 real + simu; every line of the multi dir comes from one of them.
    multi = out / "dt05_multi_isolated_1ch_track"
    for name in ("wav.scp", "spk1.scp", "text", "utt2category", "utt2spk"):
        assert read_table(multi / name) == {**read_table(real / name), **read_table(simu / name)}
    assert (multi / "spk2utt").read_text() == (
        "F01 F01_050C0101_BUS_REAL F01_050C0103_BUS_SIMU\nM03 M03_050C0102_CAF_REAL M03_050C0104_PED_SIMU\n"
    )
    for d in ALL_DIRS:
        assert_kaldi_data_dir(out / d)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_DIRS + ["nlsyms.txt"])


def test_training_dir_mixes_real_and_simu_with_org_references_when_no_isolated_ext(tree, tmp_path):
    """Real: CH1-6 (never CH0), reference = the noisy input itself (a dummy: _REAL skips the
    SE loss). Simu: CH1-6, WSJ0 dot text, reference = the unaligned WSJ0 original."""
    out = tmp_path / "data"
    run(tree, out)
    d = out / "tr05_multi_noisy"
    ids = assert_kaldi_data_dir(d)
    expected_ids = [f"{s}.CH{ch}_REAL" for s in TR05_REAL for ch in range(1, 7)]
    expected_ids += [f"{s}.CH{ch}_SIMU" for s in ("011_011C0201_PED", "40A_40AC0202_STR") for ch in range(1, 7)]
    assert ids == sorted(expected_ids, key=str.encode)
    wav, ref, text, cat = (read_table(d / f) for f in ("wav.scp", "spk1.scp", "text", "utt2category"))
    iso = tree["corpus"] / "data/audio/16kHz/isolated"
    assert wav["F02_22GC010A_BUS.CH3_REAL"] == str(iso / "tr05_bus_real/F02_22GC010A_BUS.CH3.wav")
    assert ref["F02_22GC010A_BUS.CH3_REAL"] == wav["F02_22GC010A_BUS.CH3_REAL"]
    assert text["F02_22GC010A_BUS.CH3_REAL"] == "THE PRICE 'S UP <NOISE> -DASH TEN"
    assert text["F02_22GC010B_BUS.CH1_REAL"] == "PERCENT ROSE POINT FIVE"
    assert text["M02_22HC010C_CAF.CH6_REAL"] == "BUY STOCKS NOW"
    assert wav["011_011C0201_PED.CH5_SIMU"] == str(iso / "tr05_ped_simu/011_011C0201_PED.CH5.wav")
    assert ref["011_011C0201_PED.CH5_SIMU"] == str(iso / "tr05_org/011_011C0201_ORG.wav")
    assert text["011_011C0201_PED.CH2_SIMU"] == "STOCKS FELL .PERIOD"
    assert text["40A_40AC0202_STR.CH1_SIMU"] == "<WOW!> ,COMMA SAID <NOISE> SHE"
    assert {k: v for k, v in cat.items()} == {k: k.rsplit("_", 1)[1] for k in ids}
    # nlsyms: every token with "<" in any transcript, C-sorted.
    assert (out / "nlsyms.txt").read_text() == "<NOISE>\n<WOW!>\n"


def test_isolated_ext_gives_channel_matched_clean_references(tree, tmp_path):
    """With the re-simulated isolated_ext, simu references are the aligned Clean image of the
    same channel: the utterance's own channel for training, the track's channel (from the
    .list) for the 1ch sets. Real references do not change."""
    out = tmp_path / "data"
    run(tree, out, isolated_ext=tree["isolated_ext"], train_channels=[5])
    ext = tree["isolated_ext"]
    train = read_table(out / "tr05_multi_noisy" / "spk1.scp")
    assert sorted(train) == sorted(
        ["F02_22GC010A_BUS.CH5_REAL", "F02_22GC010B_BUS.CH5_REAL", "M02_22HC010C_CAF.CH5_REAL",
         "011_011C0201_PED.CH5_SIMU", "40A_40AC0202_STR.CH5_SIMU"]
    )
    assert train["011_011C0201_PED.CH5_SIMU"] == str(ext / "tr05_ped_simu/011_011C0201_PED.CH5.Clean.wav")
    # The whole training transcript file (C order puts digits before letters).
    assert (out / "tr05_multi_noisy" / "text").read_text() == (
        "011_011C0201_PED.CH5_SIMU STOCKS FELL .PERIOD\n"
        "40A_40AC0202_STR.CH5_SIMU <WOW!> ,COMMA SAID <NOISE> SHE\n"
        "F02_22GC010A_BUS.CH5_REAL THE PRICE 'S UP <NOISE> -DASH TEN\n"
        "F02_22GC010B_BUS.CH5_REAL PERCENT ROSE POINT FIVE\n"
        "M02_22HC010C_CAF.CH5_REAL BUY STOCKS NOW\n"
    )
    assert (out / "tr05_multi_noisy" / "spk2utt").read_text() == (
        "011 011_011C0201_PED.CH5_SIMU\n40A 40A_40AC0202_STR.CH5_SIMU\n"
        "F02 F02_22GC010A_BUS.CH5_REAL F02_22GC010B_BUS.CH5_REAL\nM02 M02_22HC010C_CAF.CH5_REAL\n"
    )
    dt = read_table(out / "dt05_simu_isolated_1ch_track" / "spk1.scp")
    assert dt == {
        "F01_050C0103_BUS_SIMU": str(ext / "dt05_bus_simu/F01_050C0103_BUS.CH1.Clean.wav"),
        "M03_050C0104_PED_SIMU": str(ext / "dt05_ped_simu/M03_050C0104_PED.CH4.Clean.wav"),
    }
    et = read_table(out / "et05_simu_isolated_1ch_track" / "spk1.scp")
    assert et == {"M05_440C0202_CAF_SIMU": str(ext / "et05_caf_simu/M05_440C0202_CAF.CH5.Clean.wav")}
    real = read_table(out / "et05_real_isolated_1ch_track" / "spk1.scp")
    assert real["F05_440C0201_STR_REAL"].endswith("isolated/et05_str_real/F05_440C0201_STR.CH0.wav")


def test_missing_et05_lists_name_the_file_and_the_chime4_diff_package(tree, tmp_path):
    with pytest.raises(prep.PrepError, match=r"et05_real_1ch_track\.list.*CHiME4_diff.*--extra_annotations"):
        prep.prepare_chime4(tree["corpus"], tmp_path / "data")
    # Given, but without the file: the error names the path that was looked at.
    empty = tmp_path / "empty_annotations"
    empty.mkdir()
    with pytest.raises(prep.PrepError, match=f"missing {empty}/et05_real_1ch_track.list"):
        prep.prepare_chime4(tree["corpus"], tmp_path / "data", extra_annotations=empty)
    # The lists copied into the corpus's own annotations work without the option.
    for f in tree["extra_annotations"].iterdir():
        shutil.copy(f, tree["corpus"] / "data/annotations" / f.name)
    prep.prepare_chime4(tree["corpus"], tmp_path / "data")
    assert_kaldi_data_dir(tmp_path / "data" / "et05_real_isolated_1ch_track")


def _damage(tree, kind):
    """Break the tree one way; return a regex the error message must match (naming the file)."""
    iso = tree["corpus"] / "data/audio/16kHz/isolated"
    track = tree["corpus"] / "data/audio/16kHz/isolated_1ch_track"
    trans = tree["corpus"] / "data/transcriptions"
    if kind == "missing_dir":
        shutil.rmtree(iso / "tr05_caf_simu")
        return f"missing directory {iso}/tr05_caf_simu"
    if kind == "missing_transcript_file":
        (trans / "dt05_simu.dot_all").unlink()
        return f"missing transcript file {trans}/dt05_simu.dot_all"
    if kind == "transcript_without_audio":
        with open(trans / "et05_real.dot_all", "a") as f:
            f.write("no such audio (F06_440C0299_PED)\n")
        return f"{trans}/et05_real.dot_all: 1 transcript\\(s\\) without audio.*F06_440C0299_PED"
    if kind == "real_train_audio_without_transcript":
        for ch in range(7):
            write_wav(iso / "tr05_ped_real" / f"M02_22HC010D_PED.CH{ch}.wav")
        return f"{iso}/tr05_ped_real/M02_22HC010D_PED.CH1.wav: audio without transcript.*tr05_real.dot_all"
    if kind == "simu_train_audio_without_transcript":
        write_wav(iso / "tr05_ped_simu" / "011_011C0298_PED.CH1.wav")
        return "011_011C0298_PED.CH1.wav: no transcript: prompt 011c0298 is not in .*011c0200.dot"
    if kind == "simu_train_without_dot_file":
        write_wav(iso / "tr05_ped_simu" / "022_022C0201_PED.CH1.wav")
        return "022_022C0201_PED.CH1.wav: no transcript: WSJ0 file 022c0200.dot not found"
    if kind == "unlisted_1ch_audio":
        write_wav(track / "dt05_str_real" / "F04_050C0105_STR.wav")
        return f"{track}/dt05_str_real/F04_050C0105_STR.wav: audio not listed in .*dt05_real_1ch_track.list"
    if kind == "listed_1ch_audio_missing":
        (track / "dt05_bus_real" / "F01_050C0101_BUS.wav").unlink()
        return f"missing 1ch track audio .*dt05_real_1ch_track.list.*{track}/dt05_bus_real/F01_050C0101_BUS.wav"
    if kind == "listed_1ch_audio_without_transcript":
        lst = tree["corpus"] / "data/annotations/dt05_simu_1ch_track.list"
        lst.write_text(lst.read_text() + "dt05_str_simu/F04_050C0106_STR.CH5.wav\n")
        write_wav(track / "dt05_str_simu" / "F04_050C0106_STR.wav")
        return "F04_050C0106_STR.wav: audio without transcript: no line '\\(F04_050C0106_STR\\)' in .*dt05_simu.dot_all"
    if kind == "malformed_dot_line":
        with open(trans / "tr05_real.dot_all", "a") as f:
            f.write("a line without an id\n")
        return f"{trans}/tr05_real.dot_all:4: expected 'WORDS ... \\(ID\\)'"
    if kind == "duplicate_transcript":
        with open(trans / "dt05_real.dot_all", "a") as f:
            f.write("again (F01_050C0101_BUS)\n")
        return f"{trans}/dt05_real.dot_all:3: transcript id F01_050C0101_BUS appears twice"
    if kind == "non_utf8_transcript":
        with open(trans / "et05_simu.dot_all", "ab") as f:
            f.write(b"caf\xe9 (M05_440C0203_CAF)\n")
        return f"{trans}/et05_simu.dot_all: not UTF-8/ASCII text"
    if kind == "malformed_list_line":
        lst = tree["corpus"] / "data/annotations/dt05_real_1ch_track.list"
        lst.write_text(lst.read_text() + "dt05_bus_simu/F01_050C0101_BUS.CH5.wav\n")
        return "dt05_real_1ch_track.list:3: expected one path <dt05_ENV_real>/<stem>.CH<n>.wav"
    if kind == "missing_close_talk":
        (iso / "dt05_caf_real" / "M03_050C0102_CAF.CH0.wav").unlink()
        return f"missing close-talk reference of .*M03_050C0102_CAF.wav: {iso}/dt05_caf_real/M03_050C0102_CAF.CH0.wav"
    if kind == "missing_org":
        (iso / "tr05_org" / "40A_40AC0202_ORG.wav").unlink()
        return "missing clean reference \\(WSJ0 original\\) of .*40A_40AC0202_STR.CH1.wav: .*tr05_org/40A_40AC0202_ORG.wav"
    if kind == "bad_wav_name":
        write_wav(iso / "tr05_bus_real" / "F02_22GC010A_BUS.wav")
        return f"{iso}/tr05_bus_real/F02_22GC010A_BUS.wav: expected a name <SPK>_<WSJID>_<ENV>.CH<0-6>.wav"
    if kind == "wrong_environment":
        write_wav(iso / "tr05_bus_real" / "F02_22GC010Z_CAF.CH1.wav")
        return "F02_22GC010Z_CAF.CH1.wav: environment differs from its directory's \\(BUS\\)"
    raise AssertionError(kind)


DAMAGES = [
    "missing_dir", "missing_transcript_file", "transcript_without_audio", "real_train_audio_without_transcript",
    "simu_train_audio_without_transcript", "simu_train_without_dot_file", "unlisted_1ch_audio",
    "listed_1ch_audio_missing", "listed_1ch_audio_without_transcript", "malformed_dot_line", "duplicate_transcript",
    "non_utf8_transcript", "malformed_list_line",
    "missing_close_talk", "missing_org", "bad_wav_name", "wrong_environment",
]


@pytest.mark.parametrize("kind", DAMAGES)
def test_bad_layout_gives_an_error_naming_the_file_and_writes_nothing(tree, tmp_path, kind):
    """A broken tree must stop the preparation with a message that names the offending file
    (so the user can fix it), before any data dir is written (so no later stage trusts a
    partial set)."""
    pattern = _damage(tree, kind)
    out = tmp_path / "data"
    with pytest.raises(prep.PrepError, match=pattern):
        run(tree, out)
    assert not out.exists() or not any(out.iterdir())


def test_missing_isolated_ext_reference_is_named(tree, tmp_path):
    clean = tree["isolated_ext"] / "dt05_ped_simu" / "M03_050C0104_PED.CH4.Clean.wav"
    clean.unlink()
    with pytest.raises(prep.PrepError, match=f"missing re-simulated clean reference {clean}"):
        run(tree, tmp_path / "data", isolated_ext=tree["isolated_ext"])


def test_rerun_leaves_up_to_date_dirs_alone_and_rewrites_stale_ones(tree, tmp_path):
    """Resumability: a second run with the same inputs rewrites nothing (same inodes), and a
    file a later step added to an up-to-date dir stays; a dir whose content no longer matches
    (an edited or deleted file) is replaced as a whole, extra files included; no temporary
    dirs are left behind."""
    out = tmp_path / "data"
    run(tree, out)
    inodes = {d: (out / d / "wav.scp").stat().st_ino for d in ALL_DIRS}
    write_text(out / "dt05_real_isolated_1ch_track" / "utt2condition", "added later\n")
    run(tree, out)
    assert {d: (out / d / "wav.scp").stat().st_ino for d in ALL_DIRS} == inodes
    assert (out / "dt05_real_isolated_1ch_track" / "utt2condition").exists()

    good = (out / "et05_simu_isolated_1ch_track" / "text").read_text()
    (out / "et05_simu_isolated_1ch_track" / "text").write_text("truncated")
    write_text(out / "et05_simu_isolated_1ch_track" / "feats.scp", "stale\n")
    (out / "dt05_real_isolated_1ch_track" / "spk2utt").unlink()
    run(tree, out)
    assert (out / "et05_simu_isolated_1ch_track" / "text").read_text() == good
    assert not (out / "et05_simu_isolated_1ch_track" / "feats.scp").exists()
    assert_kaldi_data_dir(out / "dt05_real_isolated_1ch_track")
    assert (out / "tr05_multi_noisy" / "wav.scp").stat().st_ino == inodes["tr05_multi_noisy"]
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_DIRS + ["nlsyms.txt"])


def test_train_channels_outside_1_to_6_are_rejected(tree, tmp_path):
    with pytest.raises(prep.PrepError, match="train_channels must be among 1..6"):
        run(tree, tmp_path / "data", train_channels=[0, 5])


def test_cli_reports_errors_without_a_traceback(tree, tmp_path, caplog):
    shutil.rmtree(tree["corpus"] / "data/audio/16kHz/isolated_1ch_track/et05_ped_real")
    rc = prep.main(["--corpus_dir", str(tree["corpus"]), "--output_dir", str(tmp_path / "d"),
                    "--extra-annotations", str(tree["extra_annotations"])])
    assert rc == 1
    assert "missing directory" in caplog.text and "isolated_1ch_track/et05_ped_real" in caplog.text

