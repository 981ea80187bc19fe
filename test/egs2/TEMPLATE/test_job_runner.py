"""utils/run.pl: Kaldi's job-runner call form, logs and failure reports (local backend)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
sys.path.insert(0, str(TEMPLATE))

from pyscripts.utils.job_runner import UsageError, parse_command_line, shell_join  # noqa: E402

RUN_PL = str(TEMPLATE / "utils" / "run.pl")
LOG_RE = re.compile(
    r"^# (?P<cmd>.*)\n# Started at \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}\n"
    r"(?P<body>(?:.*\n)*?)"
    r"# Accounting: time=\d+ threads=(?P<threads>\d+)\n"
    r"# Ended \(code (?P<code>\d+)\) at \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \w+ \d{4}\n$"
)


def run_pl(tmp_path, *args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([RUN_PL, *args], capture_output=True, text=True, cwd=tmp_path, env=env, **kw)


def parse_log(path: Path) -> re.Match:
    match = LOG_RE.match(path.read_text())
    assert match, f"log does not have Kaldi's header/footer:\n{path.read_text()}"
    return match


def test_job_index_is_substituted_in_log_and_arguments(tmp_path):
    # Three jobs; each writes its index into its own log; JOB in the log dir creates it.
    p = run_pl(tmp_path, "JOB=1:3", "exp/log/echo.JOB.log", "echo", "job", "JOB", "of", "out.JOB")
    assert p.returncode == 0, p.stderr
    for i in (1, 2, 3):
        m = parse_log(tmp_path / f"exp/log/echo.{i}.log")
        assert m["cmd"] == f"echo job {i} of out.{i}"
        assert m["body"] == f"job {i} of out.{i}\n"
        assert m["code"] == "0"


def test_single_index_form_and_no_range(tmp_path):
    assert run_pl(tmp_path, "JOB=7", "a.JOB.log", "echo", "JOB").returncode == 0
    assert parse_log(tmp_path / "a.7.log")["body"] == "7\n"
    assert run_pl(tmp_path, "plain.log", "echo", "hi").returncode == 0
    assert parse_log(tmp_path / "plain.log")["body"] == "hi\n"


def test_stdout_and_stderr_go_to_the_log_and_pipes_work(tmp_path):
    # Kaldi semantics: a lone '|' argument is a shell pipe; an argument with spaces stays one word.
    # ("a  b" keeps both spaces only if it reaches echo as one quoted word.)
    p = run_pl(tmp_path, "x.log", "echo", "a  b", "|", "tr", "a-z", "A-Z", ";", "echo", "err", ">&2")
    assert p.returncode == 0, p.stderr
    assert parse_log(tmp_path / "x.log")["body"] == "A  B\nerr\n"


def test_failing_job_is_reported_with_its_log_path(tmp_path):
    p = run_pl(tmp_path, "JOB=1:3", "log/t.JOB.log", "test", "JOB", "-ne", "2", "||", "exit", "3")
    assert p.returncode == 1
    assert "run.pl: 1 / 3 failed, log is in log/t.2.log" in p.stderr
    assert parse_log(tmp_path / "log/t.2.log")["code"] == "3"
    assert parse_log(tmp_path / "log/t.1.log")["code"] == "0"


def test_pipeline_failure_fails_the_job(tmp_path):
    # Jobs run with pipefail: a failing producer is not hidden by a succeeding consumer.
    p = run_pl(tmp_path, "p.log", "false", "|", "cat")
    assert p.returncode == 1
    assert parse_log(tmp_path / "p.log")["code"] == "1"


def test_max_jobs_run_limits_concurrency(tmp_path):
    # Each job registers itself in running/, records how many are running, then leaves.
    script = (
        "mkdir -p running && touch running/JOB && ls running | wc -l >> counts.JOB "
        "&& sleep 0.3 && rm running/JOB"
    )
    p = run_pl(tmp_path, "--max-jobs-run", "2", "JOB=1:6", "l.JOB.log", "bash", "-c", script)
    assert p.returncode == 0, p.stderr
    counts = [int((tmp_path / f"counts.{i}").read_text()) for i in range(1, 7)]
    assert max(counts) <= 2


def test_jobs_run_in_parallel_without_limit(tmp_path):
    # Job 1 waits for a file that only job 2 creates: succeeds only if both run at once.
    wait = "for i in $(seq 100); do [ -e flag ] && exit 0; sleep 0.1; done; exit 1"
    p = run_pl(tmp_path, "JOB=1:2", "l.JOB.log", "bash", "-c", f"if [ JOB = 1 ]; then {wait}; else touch flag; fi")
    assert p.returncode == 0, p.stderr


def test_cluster_options_are_accepted_and_threads_are_accounted(tmp_path):
    p = run_pl(
        tmp_path, "--gpu", "1", "--mem", "4G", "--num_threads", "3", "--name", "n", "--time", "1:00:00",
        "--config", "conf/slurm.conf", "--num_nodes", "1", "--partition", "p", "x.log", "true",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert parse_log(tmp_path / "x.log")["threads"] == "3"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--foo", "1", "x.log", "true"], "unknown option --foo"),
        (["JOB=3:1", "x.JOB.log", "true"], "invalid job range JOB=3:1"),
        (["JOB=a:b", "x.JOB.log", "true"], "invalid job range 'JOB=a:b'"),
        (["JOB=1:2", "x.log", "true"], "put JOB in the log file name"),
        (["x.log"], "need a log file and a command"),
        (["--max-jobs-run", "two", "x.log", "true"], "non-negative integer"),
    ],
)
def test_bad_command_lines_are_rejected(tmp_path, argv, message):
    p = run_pl(tmp_path, *argv)
    assert p.returncode == 1
    assert message in p.stderr
    assert not list(tmp_path.glob("x*.log")), "nothing must run"


def test_parse_command_line_and_kaldi_quoting():
    req = parse_command_line(["--gpu=1", "SPLIT=2:4", "log/s.SPLIT.log", "cmd", "a b", "", "SPLIT"])
    assert (req.job_var, req.indices, req.options) == ("SPLIT", [2, 3, 4], {"gpu": "1"})
    assert req.command_for(3) == "cmd 'a b' '' 3"
    assert shell_join(["|", ">", "x"]) == "| > x"
    with pytest.raises(UsageError):
        parse_command_line(["-tc"])


def test_sigterm_stops_running_jobs_and_writes_their_footer(tmp_path):
    proc = subprocess.Popen([RUN_PL, "JOB=1:2", "s.JOB.log", "sleep", "60"], cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while not all((tmp_path / f"s.{i}.log").exists() for i in (1, 2)) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    for i in (1, 2):
        assert parse_log(tmp_path / f"s.{i}.log")["code"] == str(128 + signal.SIGTERM)


def test_espnet_launch_single_node_runs_through_run_pl(tmp_path):
    # espnet2.bin.launch calls `<cmd> --gpu N LOG <train cmd> --ngpu N --multiprocessing_distributed B`
    # and reads LOG when the command fails; utils/ is linked as in a recipe directory.
    (tmp_path / "utils").symlink_to(TEMPLATE / "utils")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "espnet2.bin.launch", "--cmd", "utils/run.pl", "--log", "exp/train.log", "--ngpu", "0", "--"]
    ok = base + ["python", "-c", "import sys; print('ARGS', sys.argv[1:])"]
    p = subprocess.run(ok, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ARGS ['--ngpu', '0', '--multiprocessing_distributed', 'True']" in (tmp_path / "exp/train.log").read_text()
    bad = base + ["python", "-c", "import sys; sys.exit('training broke')"]
    p = subprocess.run(bad, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode != 0
    assert "training broke" in p.stderr, "launch.py shows the tail of run.pl's log"


def test_unwritable_log_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("")
    p = run_pl(tmp_path, "afile/x.log", "true")
    assert p.returncode == 1
    assert p.stderr.startswith("run.pl: ") and "afile" in p.stderr and "Traceback" not in p.stderr
