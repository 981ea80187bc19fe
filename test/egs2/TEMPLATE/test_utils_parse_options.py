"""utils/parse_options.sh: Kaldi-style option parsing sourced by every recipe script."""

import subprocess
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"

SCRIPT = """\
set -euo pipefail
nj=4
use_lm=true
inference_tag=
cmd=run.pl
help_message="Usage: demo.sh [--nj N] <dir>"
. "{utils}/parse_options.sh"
echo "nj=$nj use_lm=$use_lm tag=$inference_tag cmd=$cmd"
echo "rest=$*"
declare -p | grep -c '__po_' || true
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "demo.sh"
    script.write_text(SCRIPT.format(utils=TEMPLATE / "utils"))
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=tmp_path)


def test_options_set_variables_with_dashes_mapped_to_underscores(tmp_path):
    # --inference-tag names the variable inference_tag, as in Kaldi; positionals stay in "$@".
    p = run(tmp_path, "--nj", "8", "--use-lm", "false", "--inference-tag", "x y", "data", "exp")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "nj=8 use_lm=false tag=x y cmd=run.pl"
    assert lines[1] == "rest=data exp"
    assert lines[2] == "0", "internal __po_* variables must not leak into the caller"


def test_equals_form_is_accepted(tmp_path):
    # Documented choice: --opt=value means the same as --opt value.
    p = run(tmp_path, "--nj=3", "d")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("nj=3 ")


def test_parsing_stops_at_first_positional(tmp_path):
    p = run(tmp_path, "data", "--nj", "9")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == ["nj=4 use_lm=true tag= cmd=run.pl", "rest=data --nj 9"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--foo", "1", "d"], "invalid option --foo"),
        (["--use_lm", "yes", "d"], "expected 'true' or 'false', got 'yes'"),
        (["--config", "missing.conf", "d"], "config file 'missing.conf'"),
        (["--nj"], "option --nj needs a value"),
        (["--cmd", "", "d"], "--cmd must not be empty"),
    ],
)
def test_bad_options_fail_naming_the_problem(tmp_path, args, message):
    p = run(tmp_path, *args)
    assert p.returncode == 1
    assert message in p.stderr
    assert "rest=" not in p.stdout, "the script must stop"


def test_config_file_is_sourced_and_command_line_wins(tmp_path):
    (tmp_path / "c.conf").write_text("nj=2\nuse_lm=false\n")
    p = run(tmp_path, "--config", "c.conf", "d")
    assert p.stdout.startswith("nj=2 use_lm=false ")
    # The explicit option wins even when it comes before --config (configs are read first).
    p = run(tmp_path, "--nj", "5", "--config", "c.conf", "d")
    assert p.stdout.startswith("nj=5 use_lm=false ")


def test_help_prints_help_message_and_exits_zero(tmp_path):
    for flag in ("--help", "-h"):
        p = run(tmp_path, flag)
        assert p.returncode == 0
        assert p.stdout.strip() == "Usage: demo.sh [--nj N] <dir>"
