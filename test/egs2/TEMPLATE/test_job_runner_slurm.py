"""utils/slurm.pl against fake sbatch/squeue/scancel/srun executables.

The fakes emulate what slurm.pl relies on (documented in pyscripts/utils/slurm_backend.py):
``sbatch --parsable --array=a-b --output=... script`` starts one process per array index with
SLURM_ARRAY_TASK_ID set and prints the job id; ``squeue -h -r -j ID -o %i`` lists the tasks
whose process is alive; ``scancel ID`` sends SIGTERM to them. With FAKE_SLURM_NO_GPU=1, sbatch
rejects ``--gres=gpu`` the way a cluster without GPUs does (rc 1 and Slurm's message). Every
call is recorded in calls.jsonl. Real Slurm is tested separately (see the slurm CI issue).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
sys.path.insert(0, str(TEMPLATE))

from pyscripts.utils.job_runner import parse_command_line  # noqa: E402
from pyscripts.utils.slurm_backend import (  # noqa: E402
    DEFAULT_CONFIG,
    parse_config,
    sbatch_command,
)

SLURM_PL = str(TEMPLATE / "utils" / "slurm.pl")

FAKES = {
    "sbatch": r'''
import json, os, re, subprocess, sys
state = os.environ["FAKE_SLURM_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(["sbatch"] + args) + "\n")
if os.environ.get("FAKE_SLURM_NO_GPU") and any(a.startswith("--gres=gpu") for a in args):
    sys.exit("sbatch: error: Invalid generic resource (gres) specification")
counter = os.path.join(state, "counter")
job = int(open(counter).read()) + 1 if os.path.exists(counter) else 100
open(counter, "w").write(str(job))
array = next((a.split("=", 1)[1] for a in args if a.startswith("--array=")), None)
output = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
indices = [None]
if array:
    first, last = re.match(r"(\d+)-(\d+)", array).groups()
    indices = range(int(first), int(last) + 1)
for i in indices:
    env = dict(os.environ, SLURM_JOB_ID=str(job))
    if i is not None:
        env["SLURM_ARRAY_TASK_ID"] = str(i)
    out = open(output.replace("%a", str(i)).replace("%A", str(job)), "w")
    p = subprocess.Popen(["bash", args[-1]], env=env, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    task = f"{job}_{i}" if i is not None else str(job)
    open(os.path.join(state, f"task.{task}.pid"), "w").write(str(p.pid))
print(job)
''',
    "squeue": r'''
import glob, json, os, sys
state = os.environ["FAKE_SLURM_STATE"]
job = sys.argv[sys.argv.index("-j") + 1]
for path in glob.glob(os.path.join(state, f"task.{job}*.pid")):
    pid = int(open(path).read())
    try:
        status = open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]
    except FileNotFoundError:
        continue
    if status != "Z":
        print(os.path.basename(path)[len("task."):-len(".pid")])
''',
    "scancel": r'''
import glob, json, os, signal, sys
state = os.environ["FAKE_SLURM_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(["scancel"] + sys.argv[1:]) + "\n")
for path in glob.glob(os.path.join(state, f"task.{sys.argv[1]}*.pid")):
    try:
        os.killpg(int(open(path).read()), signal.SIGTERM)
    except ProcessLookupError:
        pass
''',
    "srun": r'''
import os, sys
args = [a for a in sys.argv[1:] if not a.startswith("--export")]
os.execvp(args[0], args)
''',
}


@pytest.fixture
def slurm_env(tmp_path):
    """Environment with the fakes first on PATH; returns (env, state_dir)."""
    bin_dir = tmp_path / "fakebin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}",
        FAKE_SLURM_STATE=str(state),
        SLURM_PL_POLL="0.1",
        SLURM_PL_LOST_GRACE="0.5",
        OMP_NUM_THREADS="1",
    )
    env.pop("SLURM_PARTITION", None)
    return env, state


def calls(state: Path, name: str) -> list[list[str]]:
    lines = (state / "calls.jsonl").read_text().splitlines()
    return [c[1:] for c in map(json.loads, lines) if c[0] == name]


def run(tmp_path, env, *args, **kw):
    return subprocess.run([SLURM_PL, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, **kw)


def test_array_job_writes_run_pl_logs_and_maps_options(tmp_path, slurm_env):
    env, state = slurm_env
    env["SLURM_PARTITION"] = "debug"
    p = run(
        tmp_path, env, "--gpu", "2", "--mem", "4G", "--num_threads", "3", "--time", "1:00:00",
        "--num_nodes", "2", "--max-jobs-run", "2", "JOB=1:3", "exp/log/t.JOB.log", "echo", "task", "JOB",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    for i in (1, 2, 3):
        log = (tmp_path / f"exp/log/t.{i}.log").read_text().splitlines()
        assert log[0] == f"# echo task {i}"
        assert log[2] == f"task {i}"
        assert log[3].startswith("# Accounting: time=") and log[3].endswith(" threads=3")
        assert log[4].startswith("# Ended (code 0) at ")
    (sbatch,) = calls(state, "sbatch")
    # One array job; each cluster option becomes its sbatch counterpart.
    for expected in ("--gres=gpu:2", "--cpus-per-task", "--nodes", "--partition=debug",
                     "--array=1-3%2", "--job-name=t", "--export=ALL", "--parsable"):  # fmt: skip
        assert expected in sbatch, (expected, sbatch)
    assert sbatch[sbatch.index("--mem") + 1] == "4G"
    assert sbatch[sbatch.index("--time") + 1] == "1:00:00"
    assert not list((tmp_path / "exp/log/q").iterdir()), "batch files are removed on success"


def test_failed_task_is_reported_like_run_pl(tmp_path, slurm_env):
    env, state = slurm_env
    p = run(tmp_path, env, "JOB=1:3", "log/f.JOB.log", "test", "JOB", "-ne", "2")
    assert p.returncode == 1
    assert "slurm.pl: 1 / 3 failed, log is in log/f.2.log" in p.stderr
    assert "# Ended (code 1)" in (tmp_path / "log/f.2.log").read_text()
    assert list((tmp_path / "log/q").iterdir()), "batch files are kept for debugging a failure"


def test_gpu_request_rejected_by_sbatch_fails_fast_with_its_message(tmp_path, slurm_env):
    env, state = slurm_env
    env["FAKE_SLURM_NO_GPU"] = "1"
    start = time.time()
    p = run(tmp_path, env, "--gpu", "1", "train.log", "python", "train.py")
    assert p.returncode == 1
    assert time.time() - start < 10
    assert "Invalid generic resource (gres) specification" in p.stderr
    assert "Invalid generic resource" in (tmp_path / "train.log").read_text()


def test_config_file_in_kaldi_format_replaces_the_mapping(tmp_path, slurm_env):
    env, state = slurm_env
    (tmp_path / "slurm.conf").write_text(
        "command sbatch --export=PATH\n"
        "option name=* --job-name $0\n"
        "default gpu=0\n"
        "option gpu=0 -p cpu\n"
        "option gpu=* -p gpu --gres=gpu:$0\n"
    )
    p = run(tmp_path, env, "--config", "slurm.conf", "x.log", "true")
    assert p.returncode == 0, p.stderr
    (sbatch,) = calls(state, "sbatch")
    assert sbatch[:3] == ["--export=PATH", "-p", "cpu"]
    # An option the config does not handle is an error naming it.
    p = run(tmp_path, env, "--config", "slurm.conf", "--mem", "2G", "x.log", "true")
    assert p.returncode == 1
    assert "option --mem is not handled by the config (slurm.conf)" in p.stderr


def test_sigterm_cancels_the_slurm_job(tmp_path, slurm_env):
    env, state = slurm_env
    proc = subprocess.Popen([SLURM_PL, "JOB=1:2", "s.JOB.log", "sleep", "60"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 20
    while not all((tmp_path / f"s.{i}.log").exists() for i in (1, 2)) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert calls(state, "scancel") == [["100"]]
    # The tasks got SIGTERM from scancel and wrote their footer.
    deadline = time.time() + 10
    while "# Ended" not in (tmp_path / "s.2.log").read_text() and time.time() < deadline:
        time.sleep(0.05)
    assert f"# Ended (code {128 + signal.SIGTERM})" in (tmp_path / "s.2.log").read_text()


def test_task_that_vanishes_without_finishing_counts_as_failed(tmp_path, slurm_env):
    env, state = slurm_env
    # The job kills its own runner with SIGKILL: no done file, and it leaves the queue.
    p = run(tmp_path, env, "k.log", "kill", "-9", "$PPID")
    assert p.returncode == 1
    assert "1 / 1 failed, log is in k.log" in p.stderr
    assert "left the queue without finishing" in (tmp_path / "k.log").read_text()


def test_launch_py_multi_node_call_runs_through_srun(tmp_path, slurm_env):
    # espnet2.bin.launch with --num_nodes 2 calls: slurm.pl --gpu 0 --num_threads 1 --num_nodes 2
    # LOG srun --export=ALL <cmd> ... (see launch.py); utils/ is linked as in a recipe directory.
    env, state = slurm_env
    (tmp_path / "utils").symlink_to(TEMPLATE / "utils")
    cmd = [sys.executable, "-m", "espnet2.bin.launch", "--cmd", "utils/slurm.pl", "--log", "exp/train.log",
           "--ngpu", "0", "--num_nodes", "2", "--master_port", "1234", "--",
           "python", "-c", "import sys; print('ARGS', sys.argv[1:])"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    log = (tmp_path / "exp/train.log").read_text()
    assert "ARGS ['--ngpu', '0', '--multiprocessing_distributed', 'true', '--dist_launcher', 'slurm'" in log
    (sbatch,) = calls(state, "sbatch")
    assert sbatch[sbatch.index("--nodes") + 1] == "2"
    assert "--gres=gpu:0" not in " ".join(sbatch)


def test_default_config_maps_every_launch_option():
    config = parse_config(DEFAULT_CONFIG, "built-in")
    req = parse_command_line(["--gpu", "0", "--num_threads", "1", "--num_nodes", "1", "--name", "x", "l.log", "t"])
    assert sbatch_command(req, config) == [
        "sbatch", "--export=ALL", "--cpus-per-task", "1", "--nodes", "1", "--job-name", "x",
    ]  # fmt: skip
