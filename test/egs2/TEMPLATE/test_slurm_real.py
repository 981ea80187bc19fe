"""utils/slurm.pl against a real single-node Slurm cluster (ci/slurm/, docs/slurm.md).

The fake-Slurm tests (test_job_runner_slurm.py) pin down what slurm.pl sends to sbatch; these
check that real Slurm 22.05 (Debian 12's packages) does with it what a recipe relies on: array
tasks run as Slurm array tasks and write run.pl's logs, failures and rejections come back as
non-zero exit statuses with the right log named, srun steps run inside the job's allocation, and
Ctrl-C leaves nothing in the queue. The cluster advertises 4 CPUs (slurm_fixture.py) and has no
GPUs. Skipped, with the reason, where Slurm cannot be installed or run (see slurm_fixture.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_fixture import SlurmCluster, slurm_cluster  # noqa: F401  (the fixture)

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
SLURM_PL = str(TEMPLATE / "utils" / "slurm.pl")
DATE = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}"
LOG_RE = re.compile(
    rf"^# (?P<cmd>.*)\n# Started at {DATE}\n(?P<body>(?:.*\n)*?)"
    rf"# Accounting: time=\d+ threads=(?P<threads>\d+)\n# Ended \(code (?P<code>\d+)\) at {DATE}\n$"
)


def slurm_pl(cluster: SlurmCluster, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SLURM_PL, *args], capture_output=True, text=True, cwd=cwd, env=cluster.env, timeout=120
    )


def parse_log(path: Path) -> re.Match:
    match = LOG_RE.match(path.read_text())
    assert match, f"{path} does not have run.pl's header and footer:\n{path.read_text()}"
    return match


def jobcomp_records(cluster: SlurmCluster, job_id: str, tasks: int) -> dict[str, str]:
    """ArrayTaskId -> 'STATE exit' from Slurm's own completion log (JobCompType=jobcomp/filetxt).

    An array job's tasks are logged under their own JobId with the array job id in ArrayJobId.
    slurm.pl returns when its tasks have written their done files, which can be a moment before
    slurmctld logs their completion: wait (up to 15 s) for ``tasks`` records.
    """
    records: dict[str, str] = {}

    def read() -> bool:
        records.clear()
        for line in (cluster.root / "log" / "jobcomp.txt").read_text().splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if job_id in (fields.get("JobId"), fields.get("ArrayJobId")):
                records[fields.get("ArrayTaskId", "")] = f"{fields['JobState']} {fields['ExitCode']}"
        return len(records) >= tasks

    wait_until(read)
    return records


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def listening_sockets(pid: int) -> list[str]:
    """``ip:port`` of every TCP socket process ``pid`` listens on (IPv6 ones as ``[hex]:port``)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = fd.readlink().as_posix() if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr, port = local.split(":")
            port = str(int(port, 16))
            if v6:
                found.append(f"[{addr}]:{port}")
            else:  # little-endian hex
                found.append(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)) + ":" + port)
    return found


def test_daemons_listen_on_127_0_0_1_only(slurm_cluster):
    # The CI cluster must never be reachable from outside: slurmctld and slurmd each listen on
    # their configured port, on 127.0.0.1 and nowhere else (no 0.0.0.0, no IPv6 socket).
    conf = (slurm_cluster.root / "etc" / "slurm.conf").read_text()
    ports = {name: re.search(rf"^{name}Port=(\d+)$", conf, re.M).group(1) for name in ("Slurmctld", "Slurmd")}
    for daemon, name in (("slurmctld", "Slurmctld"), ("slurmd", "Slurmd")):
        pid = int((slurm_cluster.root / "run" / f"{daemon}.pid").read_text())
        assert Path(f"/proc/{pid}/comm").read_text().strip() == daemon
        assert listening_sockets(pid) == [f"127.0.0.1:{ports[name]}"], daemon


def test_array_job_writes_one_run_pl_log_per_task_from_slurm_array_tasks(slurm_cluster, tmp_path):
    # JOB=1:3 is one sbatch array job; task i runs the command with JOB=i and writes run.pl's
    # log exp/log/echo.i.log: "# <command>", "# Started at", the output, the accounting line and
    # "# Ended (code 0)". Slurm's own variables prove the task ran as array element i.
    # (JOB is replaced even inside words, as in Kaldi, so the variables are found by prefix.)
    p = slurm_pl(slurm_cluster, tmp_path, "JOB=1:3", "exp/log/echo.JOB.log",
                 "echo", "index", "JOB", "&&", "env", "|", "grep", "^SLURM_ARRAY_", "|", "sort")  # fmt: skip
    assert p.returncode == 0, p.stderr
    job_ids = set()
    for i in (1, 2, 3):
        log = parse_log(tmp_path / f"exp/log/echo.{i}.log")
        assert log["cmd"] == f"echo index {i} && env | grep ^SLURM_ARRAY_ | sort"
        job, task = re.fullmatch(
            rf"index {i}\nSLURM_ARRAY_JOB_ID=(\d+)\nSLURM_ARRAY_TASK_COUNT=3\nSLURM_ARRAY_TASK_ID=(\d+)\n"
            r"SLURM_ARRAY_TASK_MAX=3\nSLURM_ARRAY_TASK_MIN=1\nSLURM_ARRAY_TASK_STEP=1\n",
            log["body"],
        ).groups()
        assert task == str(i)
        assert log["code"] == "0" and log["threads"] == "1"
        job_ids.add(job)
    assert len(job_ids) == 1, "the three tasks belong to one array job"
    # Slurm agrees that every task completed with exit code 0.
    (job,) = job_ids
    assert jobcomp_records(slurm_cluster, job, 3) == {str(i): "COMPLETED 0:0" for i in (1, 2, 3)}
    assert not list((tmp_path / "exp/log/q").iterdir()), "batch files are removed after success"


def test_failing_array_task_makes_the_runner_fail_and_name_its_log(slurm_cluster, tmp_path):
    # Task 2 exits 1 (`test 2 -ne 2`); the others succeed. Like run.pl, slurm.pl exits 1 and
    # names the first failed task's log; Slurm itself records task 2 as FAILED with exit 1.
    p = slurm_pl(slurm_cluster, tmp_path, "JOB=1:3", "exp/log/f.JOB.log",
                 "env", "|", "grep", "^SLURM_ARRAY_J", "&&", "test", "JOB", "-ne", "2")  # fmt: skip
    assert p.returncode == 1
    assert "slurm.pl: 1 / 3 failed, log is in exp/log/f.2.log" in p.stderr
    codes = {i: parse_log(tmp_path / f"exp/log/f.{i}.log")["code"] for i in (1, 2, 3)}
    assert codes == {1: "0", 2: "1", 3: "0"}
    job = parse_log(tmp_path / "exp/log/f.1.log")["body"].strip().split("=")[1]
    assert jobcomp_records(slurm_cluster, job, 3) == {"1": "COMPLETED 0:0", "2": "FAILED 1:0", "3": "COMPLETED 0:0"}
    assert list((tmp_path / "exp/log/q").iterdir()), "batch files are kept to debug the failure"


def test_srun_runs_every_rank_inside_the_job_and_any_failing_rank_fails_it(slurm_cluster, tmp_path):
    # --num_threads 2 allocates 2 CPUs (--cpus-per-task 2); `srun -n 2` inside the job starts one
    # step with 2 ranks on them, as a distributed training job would. srun returns the highest
    # rank exit code, so a failing rank fails the job and the runner.
    ranks = ["srun", "-n", "2", "-l", "bash", "-c",
             "echo rank $SLURM_PROCID of $SLURM_NTASKS step $SLURM_STEP_ID; exit $((SLURM_PROCID * EXIT))"]  # fmt: skip
    ok = slurm_pl(slurm_cluster, tmp_path, "--num_threads", "2", "log/ok.log", *[a.replace("EXIT", "0") for a in ranks])
    assert ok.returncode == 0, ok.stderr
    log = parse_log(tmp_path / "log/ok.log")
    assert sorted(log["body"].splitlines()) == ["0: rank 0 of 2 step 0", "1: rank 1 of 2 step 0"]
    assert log["threads"] == "2"

    bad = slurm_pl(slurm_cluster, tmp_path, "--num_threads", "2", "log/bad.log", *[a.replace("EXIT", "3") for a in ranks])
    assert bad.returncode == 1
    assert "1 / 1 failed, log is in log/bad.log" in bad.stderr
    log = parse_log(tmp_path / "log/bad.log")
    assert log["code"] == "3"
    assert "1: rank 1 of 2 step 0" in log["body"]


@pytest.mark.parametrize(
    "options, slurm_message",
    [
        (["--gpu", "1"], "Invalid generic resource (gres) specification"),
        (["--num_nodes", "2"], "Node count specification invalid"),
        (["--mem", "100T"], "Memory specification can not be satisfied"),
    ],
    ids=["gpu_on_a_cpu_node", "two_nodes_on_one", "more_memory_than_the_node"],
)
def test_request_the_node_cannot_satisfy_fails_at_submission(slurm_cluster, tmp_path, options, slurm_message):
    # The node has no GPU, is the only node and has far less than 100 TB. sbatch rejects such a
    # job at once (EnforcePartLimits=ALL), so slurm.pl must fail within seconds, print Slurm's
    # reason and put it in the log, and leave nothing queued, instead of waiting forever.
    start = time.monotonic()
    p = slurm_pl(slurm_cluster, tmp_path, *options, "exp/train.log", "echo", "never runs")
    assert p.returncode == 1
    assert time.monotonic() - start < 15
    assert "slurm.pl: sbatch rejected the job (exit 1)" in p.stderr and slurm_message in p.stderr
    log = (tmp_path / "exp/train.log").read_text()
    assert slurm_message in log and log.rstrip().splitlines()[-1].startswith("# Ended (code 1)")
    assert slurm_cluster.active_jobs() == []


def test_espnet_multi_node_launch_fails_fast_on_a_single_node_cluster(slurm_cluster, tmp_path):
    # espnet2.bin.launch --num_nodes 2 submits `slurm.pl --num_nodes 2 LOG srun ...`. With only
    # one node Slurm rejects it at submission; the launcher must fail (not hang) and the log must
    # say why.
    (tmp_path / "utils").symlink_to(TEMPLATE / "utils")
    cmd = [sys.executable, "-m", "espnet2.bin.launch", "--cmd", "utils/slurm.pl", "--log", "exp/train.log",
           "--ngpu", "0", "--num_nodes", "2", "--master_port", "29511", "--", "python", "-c", "print(1)"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=slurm_cluster.env, timeout=120)
    assert p.returncode != 0
    assert "Node count specification invalid" in (tmp_path / "exp/train.log").read_text()
    assert slurm_cluster.active_jobs() == []


def test_cluster_options_reach_slurm_as_documented(slurm_cluster, tmp_path):
    # docs/slurm.md's table: --name -> --job-name, --time -> --time (minutes), --mem -> --mem,
    # --num_threads -> --cpus-per-task, --partition -> --partition. Slurm's record of the job is
    # the ground truth (finished jobs stay in slurmctld for MinJobAge=300 s).
    p = slurm_pl(slurm_cluster, tmp_path, "--name", "opts_check", "--time", "7", "--mem", "100M",
                 "--num_threads", "2", "--partition", "debug", "o.log", "echo", "$SLURM_JOB_ID")  # fmt: skip
    assert p.returncode == 0, p.stderr
    job = parse_log(tmp_path / "o.log")["body"].strip()
    fields: dict[str, str] = {}

    def completed() -> bool:  # slurm.pl may return while Slurm still says COMPLETING
        show = slurm_cluster.run("scontrol", "show", "job", "-o", job)
        fields.update(f.split("=", 1) for f in show.stdout.split() if "=" in f)
        return fields.get("JobState") == "COMPLETED"

    assert wait_until(completed), fields
    assert (fields["JobName"], fields["TimeLimit"], fields["MinMemoryNode"], fields["NumCPUs"],
            fields["Partition"], fields["JobState"]) == ("opts_check", "00:07:00", "100M", "2", "debug", "COMPLETED")  # fmt: skip


def test_sigint_cancels_the_submitted_jobs(slurm_cluster, tmp_path):
    # Ctrl-C on a recipe sends SIGINT to slurm.pl while its tasks run. slurm.pl must scancel its
    # job and exit 130 (128 + SIGINT); the tasks get SIGTERM from Slurm, so their logs end with
    # code 143, their processes are gone and the queue holds none of our jobs afterwards.
    proc = subprocess.Popen(
        [SLURM_PL, "JOB=1:2", "exp/log/c.JOB.log", "sh", "-c", "echo $$ > pid.JOB; exec sleep 300"],
        cwd=tmp_path, env=slurm_cluster.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: all((tmp_path / f"pid.{i}").exists() for i in (1, 2))), "tasks never started"
        ours = slurm_cluster.active_jobs()
        assert len(ours) == 2 and all(re.fullmatch(r"\d+_[12]", j) for j in ours), ours
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        proc.kill()
    job = ours[0].split("_")[0]
    assert f"slurm.pl: signal {int(signal.SIGINT)}: cancelling job {job}" in proc.stderr.read()
    assert wait_until(lambda: not set(ours) & set(slurm_cluster.active_jobs())), slurm_cluster.active_jobs()
    for i in (1, 2):
        pid = int((tmp_path / f"pid.{i}").read_text())
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists()), f"task {i}'s process {pid} survived"
        assert parse_log(tmp_path / f"exp/log/c.{i}.log")["code"] == str(128 + signal.SIGTERM)
    records = jobcomp_records(slurm_cluster, job, 2)
    assert len(records) == 2 and all(r.startswith("CANCELLED") for r in records.values()), records
