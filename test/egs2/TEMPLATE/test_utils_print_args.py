"""pyscripts/utils/print_args.py and the cmd.sh template."""

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"


def test_printed_command_round_trips_through_bash():
    # run.sh files written from this output must re-create exactly the same argv.
    argv = ["./run.sh", "--stage", "3", "--args", "a b  c", "", "it's", "$HOME", "*", "x;y", "naïve"]
    out = subprocess.run([sys.executable, str(TEMPLATE / "pyscripts/utils/print_args.py"), *argv],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.startswith("./run.sh --stage 3 --args 'a b  c' ''")
    back = subprocess.run(["bash", "-c", f"printf '%s\\n' {out}"], capture_output=True, text=True, check=True)
    assert back.stdout.split("\n")[:-1] == argv


def source_cmd_sh(tmp_path, backend, with_conf=False):
    if with_conf:
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf/slurm.conf").write_text("command sbatch\n")
    script = f'cmd_backend={backend}; . "{TEMPLATE}/cmd.sh" && echo "$train_cmd|$cuda_cmd|$decode_cmd"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ))


def test_cmd_sh_selects_the_backend(tmp_path):
    assert source_cmd_sh(tmp_path, "local").stdout == "utils/run.pl|utils/run.pl|utils/run.pl\n"
    assert source_cmd_sh(tmp_path, "slurm").stdout == "utils/slurm.pl|utils/slurm.pl|utils/slurm.pl\n"
    with_conf = source_cmd_sh(tmp_path, "slurm", with_conf=True).stdout
    assert with_conf == "|".join(["utils/slurm.pl --config conf/slurm.conf"] * 3) + "\n"
    p = source_cmd_sh(tmp_path, "sge")
    assert p.returncode == 1 and "unknown cmd_backend 'sge'" in p.stderr
