"""utils/{validate,fix,copy,combine}_data_dir.sh-style tools and the utt2spk/spk2utt converters."""

import os
import subprocess
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
UTILS = TEMPLATE / "utils"


def tool(name: str, *args, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(UTILS / name), *map(str, args)], capture_output=True, text=True, input=stdin, env=env, cwd=cwd)


def write_dir(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def good_files(prefix: str = "") -> dict[str, str]:
    """A valid dir: speakers A (2 utts) and B (1 utt); ids start with the speaker id."""
    u = [f"{prefix}A_1", f"{prefix}A_2", f"{prefix}B_1"]
    s = [f"{prefix}A", f"{prefix}A", f"{prefix}B"]
    return {
        "utt2spk": "".join(f"{x} {y}\n" for x, y in zip(u, s)),
        "spk2utt": f"{prefix}A {u[0]} {u[1]}\n{prefix}B {u[2]}\n",
        "text": f"{u[0]} hello world\n{u[1]} good morning\n{u[2]}\n",
        "wav.scp": "".join(f"{x} /audio/{x}.wav\n" for x in u),
        "spk1.scp": "".join(f"{x} /clean/{x}.wav\n" for x in u),
        "utt2category": "".join(f"{x} SIMU\n" for x in u),
    }


def test_valid_dir_passes(tmp_path):
    d = write_dir(tmp_path / "d", good_files())
    p = tool("validate_data_dir.sh", "--no-feats", d)
    assert p.returncode == 0, p.stderr
    assert "3 utterances" in p.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        # utt2spk out of C order: line 2 key A_2 < A_3 of line 1.
        ({"utt2spk": "A_3 A\nA_2 A\nB_1 B\n"}, "utt2spk:2: key 'A_2' comes after 'A_3'"),
        ({"text": "A_1 x\nA_1 y\nB_1 z\n"}, "text:2: duplicate key 'A_1' (also on line 1)"),
        ({"spk2utt": "A A_1\nB B_1 A_2\n"}, "spk2utt:2: utterance 'A_2' of speaker 'B': utt2spk says 'A'"),
        ({"text": "A_1 x\nB_1 z\n"}, "text: has no entry for 'A_2' (utt2spk line 2)"),
        ({"spk1.scp": "A_1 a\nA_2 b\nB_1 c\nC_1 d\n"}, "spk1.scp:4: key 'C_1' is not in utt2spk"),
        ({"wav.scp": "A_1 a\nA_2 b\nB_1 c"}, "wav.scp:3: no newline at the end of the file"),
        ({"text": "A_1 x\nA_2 bad\x07bell\nB_1 z\n"}, "text:2: 'A_2' contains the non-printable"),
        ({"utt2spk": "A_1 A\nA_2 A\nB_1 B extra\n"}, "utt2spk:3: expected '<utt> <spk>'"),
        ({"utt2spk": "A_1 B\nA_2 A\nB_1 B\n", "spk2utt": "A A_2\nB A_1 B_1\n"}, "utt ids must start"),
    ],
)
def test_invalid_dirs_are_reported_with_file_line_and_key(tmp_path, change, message):
    files = good_files()
    files.update(change)
    d = write_dir(tmp_path / "d", files)
    p = tool("validate_data_dir.sh", "--no-feats", d)
    assert p.returncode == 1
    assert message.replace("utt ids must start", "utterance ids must start") in p.stderr, p.stderr


def test_options_relax_requirements(tmp_path):
    files = good_files()
    files["text"] = "A_1 x\nA_2 caf\u00e9 \x07\nB_1 z\n"
    d = write_dir(tmp_path / "d", files)
    p = tool("validate_data_dir.sh", d)
    assert p.returncode == 1 and "pass --no-feats" in p.stderr  # feats.scp is required by default
    assert tool("validate_data_dir.sh", "--no-feats", "--non-print", d).returncode == 0
    (d / "wav.scp").unlink()
    assert "pass --no-wav" in tool("validate_data_dir.sh", "--no-feats", "--non-print", d).stderr
    assert tool("validate_data_dir.sh", "--no-feats", "--non-print", "--no-wav", d).returncode == 0
    p = tool("validate_data_dir.sh", "--no-fets", d)
    assert p.returncode == 1 and "unknown option '--no-fets'" in p.stderr


def test_segments_must_point_to_wav_recordings(tmp_path):
    files = good_files()
    files["wav.scp"] = "rec1 /r1.wav\n"
    files["segments"] = "A_1 rec1 0.0 1.5\nA_2 rec1 1.5 3.0\nB_1 rec2 0 1\n"
    d = write_dir(tmp_path / "d", files)
    p = tool("validate_data_dir.sh", "--no-feats", d)
    assert p.returncode == 1
    assert "segments:3: recording 'rec2' of 'B_1' is not in wav.scp" in p.stderr


def test_fix_keeps_utterances_present_in_every_file_and_backs_up(tmp_path):
    files = good_files()
    # Unsorted wav.scp with an extra utterance; spk1.scp lacks A_2; text_spk1 lacks B_1.
    files["wav.scp"] = "B_1 /b1\nA_2 /a2\nZ_9 /z9\nA_1 /a1\n"
    files["spk1.scp"] = "A_1 /c1\nB_1 /c3\n"
    files["text_spk1"] = "A_1 hello world\nA_2 good morning\n"
    d = write_dir(tmp_path / "d", files)
    p = tool("fix_data_dir.sh", d)
    assert p.returncode == 0, p.stderr
    # Only A_1 is in all of utt2spk, text, wav.scp, spk1.scp, text_spk1, utt2category.
    assert "kept 1 utterances out of 3" in p.stderr
    assert (d / "utt2spk").read_text() == "A_1 A\n"
    assert (d / "spk2utt").read_text() == "A A_1\n"
    for name in ("text", "wav.scp", "spk1.scp", "text_spk1", "utt2category"):
        assert [line.split()[0] for line in (d / name).read_text().splitlines()] == ["A_1"], name
    assert (d / ".backup" / "wav.scp").read_text() == files["wav.scp"]
    assert tool("validate_data_dir.sh", "--no-feats", d).returncode == 0


def test_fix_sorts_and_deduplicates_identical_lines(tmp_path):
    files = good_files()
    files["text"] = "B_1\nA_1 hello world\nA_1 hello world\nA_2 good morning\n"
    d = write_dir(tmp_path / "d", files)
    assert tool("fix_data_dir.sh", d).returncode == 0
    assert (d / "text").read_text() == "A_1 hello world\nA_2 good morning\nB_1\n"
    assert tool("validate_data_dir.sh", "--no-feats", d).returncode == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text": "A_1 x\nA_1 y\n"}, "key 'A_1' appears with different values on lines 1 and 2"),
        ({"wav.scp": "Q_1 /q\n"}, "no utterance is present in every file"),
    ],
)
def test_fix_refuses_and_writes_nothing(tmp_path, change, message):
    files = good_files()
    files.update(change)
    d = write_dir(tmp_path / "d", files)
    p = tool("fix_data_dir.sh", d)
    assert p.returncode == 1 and message in p.stderr
    for name, text in files.items():
        assert (d / name).read_text() == text
    assert not (d / ".backup").exists()


def test_fix_uses_utt_extra_files_option(tmp_path):
    files = good_files()
    files["myinfo"] = "A_1 x\nB_1 y\n"  # not a known name: only synced when listed
    d = write_dir(tmp_path / "d", files)
    assert "kept 3 utterances" in tool("fix_data_dir.sh", d).stderr
    assert "kept 2 utterances" in tool("fix_data_dir.sh", "--utt_extra_files", "myinfo text", d).stderr


def test_combine_concatenates_sorts_and_regenerates_spk2utt(tmp_path):
    a = write_dir(tmp_path / "a", good_files("x"))
    b = write_dir(tmp_path / "b", good_files("w"))
    p = tool("combine_data.sh", "--extra_files", "spk1.scp utt2category", tmp_path / "c", a, b)
    assert p.returncode == 0, p.stderr
    c = tmp_path / "c"
    keys = [line.split()[0] for line in (c / "utt2spk").read_text().splitlines()]
    assert keys == ["wA_1", "wA_2", "wB_1", "xA_1", "xA_2", "xB_1"]
    assert (c / "spk2utt").read_text() == "wA wA_1 wA_2\nwB wB_1\nxA xA_1 xA_2\nxB xB_1\n"
    assert len((c / "spk1.scp").read_text().splitlines()) == 6
    assert tool("validate_data_dir.sh", "--no-feats", c).returncode == 0


def test_combine_rejects_duplicate_keys_naming_both_sources(tmp_path):
    a = write_dir(tmp_path / "a", good_files())
    b = write_dir(tmp_path / "b", good_files())
    p = tool("combine_data.sh", tmp_path / "c", a, b)
    assert p.returncode == 1
    # Files are combined in name order; spk1.scp is the first with the clash.
    assert f"duplicate key 'A_1' in spk1.scp: {a}/spk1.scp:1 and {b}/spk1.scp:1" in p.stderr
    assert not (tmp_path / "c").exists()


def test_combine_with_file_missing_in_a_source(tmp_path):
    a = write_dir(tmp_path / "a", good_files("x"))
    b = write_dir(tmp_path / "b", good_files("w"))
    (b / "utt2category").unlink()
    # Not requested: skipped with a warning (a partial file would drop b's utterances).
    p = tool("combine_data.sh", tmp_path / "c", a, b)
    assert p.returncode == 0, p.stderr
    assert f"not combining utt2category: missing in {b}" in p.stderr
    assert not (tmp_path / "c" / "utt2category").exists()
    assert "kept 6 utterances" in p.stderr
    # Requested explicitly: an error.
    p = tool("combine_data.sh", "--extra_files", "utt2category", tmp_path / "d", a, b)
    assert p.returncode == 1 and f"extra file utt2category is missing in {b}" in p.stderr


def test_copy_copies_standard_files_and_validates(tmp_path):
    src = write_dir(tmp_path / "src", good_files())
    p = tool("copy_data_dir.sh", "--validate_opts", "--non-print", src, tmp_path / "dst")
    assert p.returncode == 0, p.stderr
    names = sorted(x.name for x in (tmp_path / "dst").iterdir())
    assert names == ["spk2utt", "text", "utt2spk", "wav.scp"]  # Kaldi's set: not spk1.scp
    (src / "text").write_text("A_1 x\nB_1 z\n")
    p = tool("copy_data_dir.sh", src, tmp_path / "dst2")
    assert p.returncode == 1 and "text: has no entry for 'A_2'" in p.stderr


def test_utt2spk_spk2utt_conversions(tmp_path):
    # Kaldi's converters: speakers in order of first appearance; inverse restores utt2spk.
    utt2spk = "s2_a s2\ns1_b s1\ns2_c s2\n"
    p = tool("utt2spk_to_spk2utt.pl", stdin=utt2spk)
    assert p.stdout == "s2 s2_a s2_c\ns1 s1_b\n"
    (tmp_path / "spk2utt").write_text(p.stdout)
    back = tool("spk2utt_to_utt2spk.pl", tmp_path / "spk2utt").stdout
    assert sorted(back.splitlines()) == sorted(utt2spk.splitlines())
    p = tool("utt2spk_to_spk2utt.pl", stdin="u1 s1 extra\n")
    assert p.returncode == 1 and "<stdin>:1: expected '<utt> <spk>'" in p.stderr


def test_recording_files_without_segments_are_per_utterance(tmp_path):
    # Without segments every utterance is its own recording, so reco2dur is kept in sync too.
    files = good_files()
    files["reco2dur"] = "A_1 1.0\nA_2 2.0\n"
    d = write_dir(tmp_path / "d", files)
    p = tool("validate_data_dir.sh", "--no-feats", d)
    assert p.returncode == 1 and "reco2dur: has no entry for 'B_1'" in p.stderr
    assert "kept 2 utterances out of 3" in tool("fix_data_dir.sh", d).stderr
    assert tool("validate_data_dir.sh", "--no-feats", d).returncode == 0
