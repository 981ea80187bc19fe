"""The mini recipe's run.sh: its own options (--smoke, --grad_rules) and the pass-through to enh_asr.sh.

Every call here stops in the option handling: nothing is synthesised, trained or written.
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "egs2" / "mini_noisy" / "asr_with_enhancement"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    before = sorted(p.name for p in RECIPE.iterdir())
    p = subprocess.run(["./run.sh", *args], cwd=RECIPE, capture_output=True, text=True, env=env, timeout=120)
    assert sorted(p.name for p in RECIPE.iterdir()) == before  # nothing written
    return p


def test_help_documents_run_sh_options_then_enh_asr_sh_options():
    p = run("--help")
    assert p.returncode == 0, p.stderr
    assert "--smoke true|false" in p.stdout and "--grad_rules" in p.stdout
    assert "11: joint SE+ASR training" in p.stdout  # enh_asr.sh's help follows


def test_smoke_must_be_boolean():
    p = run("--smoke", "yes")
    assert p.returncode == 2
    assert "--smoke must be true or false, got 'yes'" in p.stdout


def test_an_option_without_value_is_an_error():
    # Kaldi-style options all take a value; a trailing option would otherwise be dropped silently.
    p = run("--stage")
    assert p.returncode == 2
    assert "option '--stage' has no value" in p.stdout


def test_unknown_options_reach_enh_asr_sh_and_fail_there():
    # Everything but --smoke/--grad_rules is passed on; enh_asr.sh's parser rejects what it does not know.
    p = run("--grad_rules", "sum", "--no_such_option", "1")
    assert p.returncode != 0
    assert "no_such_option" in p.stderr
