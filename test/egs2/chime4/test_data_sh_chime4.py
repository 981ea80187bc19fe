"""egs2/chime4/asr_with_enhancement/local/data.sh: option parsing and the call of prepare_chime4."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chime4_testlib import assert_kaldi_data_dir, make_fake_chime4

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2/chime4/asr_with_enhancement"
EXPECTED_DIRS = sorted(
    ["tr05_multi_noisy", "dt05_multi_isolated_1ch_track"]
    + [f"{s}_{c}_isolated_1ch_track" for s in ("dt05", "et05") for c in ("real", "simu")]
)


def data_sh(*args: str, env_extra=None) -> subprocess.CompletedProcess:
    # The recipe runs with the project's python first on PATH (path.sh); do the same here.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "CHIME4": ""}
    env.update(env_extra or {})
    return subprocess.run(["bash", "local/data.sh", *args], cwd=RECIPE, env=env, capture_output=True, text=True)


def test_data_sh_prepares_all_dirs_with_dashed_or_underscored_options(tmp_path):
    tree = make_fake_chime4(tmp_path)
    out = tmp_path / "data"
    r = data_sh("--corpus_dir", str(tree["corpus"]), "--extra-annotations", str(tree["extra_annotations"]),
                "--isolated_ext", str(tree["isolated_ext"]), "--train_channels", "1 5", "--output_dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED_DIRS + ["nlsyms.txt"])
    for d in EXPECTED_DIRS:
        assert_kaldi_data_dir(out / d)
    # --train_channels "1 5" reached the preparation: 5 training stems x 2 channels.
    assert len((out / "tr05_multi_noisy" / "wav.scp").read_text().splitlines()) == 10
    # --isolated_ext reached it: simulated references are Clean images.
    assert ".CH5.Clean.wav" in (out / "tr05_multi_noisy" / "spk1.scp").read_text()


def test_data_sh_takes_the_corpus_from_db_sh_variables(tmp_path):
    tree = make_fake_chime4(tmp_path)
    out = tmp_path / "data"
    r = data_sh("--output_dir", str(out),
                env_extra={"CHIME4": str(tree["corpus"]), "CHIME4_EXTRA_ANNOTATIONS": str(tree["extra_annotations"])})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "et05_real_isolated_1ch_track" / "wav.scp").is_file()


def test_data_sh_fails_clearly_without_corpus_or_with_unknown_option(tmp_path):
    r = data_sh("--output_dir", str(tmp_path / "data"))
    assert r.returncode == 2 and "set CHIME4 in db.sh" in r.stdout
    r = data_sh("--corpus_dir", str(tmp_path), "--no_such_option", "1")
    assert r.returncode == 2 and "unknown option '--no_such_option'" in r.stdout
    r = data_sh("--corpus_dir")
    assert r.returncode == 2 and "needs a value" in r.stdout


def test_data_sh_passes_on_the_preparation_error(tmp_path):
    """A missing et05 list (no CHiME4_diff) stops stage 1 with the file named."""
    tree = make_fake_chime4(tmp_path)
    r = data_sh("--corpus_dir", str(tree["corpus"]), "--output_dir", str(tmp_path / "data"))
    assert r.returncode == 1
    assert "et05_real_1ch_track.list" in r.stderr and "CHiME4_diff" in r.stderr
