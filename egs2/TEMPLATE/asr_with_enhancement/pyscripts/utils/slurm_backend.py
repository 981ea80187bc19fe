"""Slurm backend of the job runner (``utils/slurm.pl``).

One call submits ONE sbatch job (an array job ``--array=a-b[%max-jobs-run]`` when a ``JOB=a:b``
range is given). Each array task runs the same per-job code as run.pl
(:func:`pyscripts.utils.job_runner.run_one_job`), so logs, headers, footers and the failure
report are identical. slurm.pl then waits by polling:

* every task writes ``<qdir>/done.<index>`` (its exit code, written atomically) when it ends,
  also when Slurm stops it with SIGTERM (time limit, ``scancel``);
* a task that has no done file and has left ``squeue`` for ``SLURM_PL_LOST_GRACE`` seconds
  (default 30; SIGKILL, node failure, a job that never started) counts as failed, with the state
  ``sacct`` reports when accounting is available; its log gets a note and a footer.

SIGINT/SIGTERM/SIGHUP to slurm.pl runs ``scancel <jobid>`` and exits 128 + signal.
A submission that sbatch rejects (e.g. ``--gres=gpu:1`` on a cluster without GPUs) fails at
once: sbatch's message is printed and written to the job logs, and slurm.pl exits 1.

Option mapping (Kaldi's slurm.pl config format; this is the built-in default, used when
``--config`` is not given)::

    command sbatch --export=ALL
    option name=* --job-name $0
    option time=* --time $0
    option mem=* --mem $0
    option mem=0
    option num_threads=* --cpus-per-task $0
    option num_nodes=* --nodes $0
    option gpu=0
    option gpu=* --gres=gpu:$0

A config file (``--config conf/slurm.conf``) replaces it. Lines: ``command <submit command>``;
``option <name>=<value> <sbatch options>`` for one value; ``option <name>=* <options>`` for any
other value, ``$0`` standing for the value; ``default <name>=<value>`` applied when the option is
not given. An option given on the command line that the config does not handle is an error.
The partition is ``--partition`` if given, else ``$SLURM_PARTITION`` if set, else whatever the
config's command line says (or the cluster default). ``--max-jobs-run N`` becomes ``%N``.

Files: ``<log dir>/q/<log name>.<random>/{job.sh,spec.json,slurm-<index>.out,done.<index>}``
(kept when a task fails, removed on success). Polling interval: ``SLURM_PL_POLL`` seconds
(default 2).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pyscripts.utils.job_runner import (
    JobRequest,
    ProcessRegistry,
    date_string,
    forward_signals,
    run_one_job,
)
from pyscripts.utils.table_file import atomic_writer

TEMPLATE_DIR = Path(__file__).resolve().parents[2]

DEFAULT_CONFIG = """\
command sbatch --export=ALL
option name=* --job-name $0
option time=* --time $0
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_nodes=* --nodes $0
option gpu=0
option gpu=* --gres=gpu:$0
"""

# Options that are not looked up in the config file.
_SPECIAL = {"max_jobs_run", "config", "partition"}


@dataclass
class SlurmConfig:
    """Parsed slurm.pl config: submit command, per-option rules and defaults."""

    command: list[str]
    rules: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)


def parse_config(text: str, source: str) -> SlurmConfig:
    """Parse Kaldi slurm.pl config text; errors name ``source`` and the line."""
    command: list[str] | None = None
    rules: dict[str, dict[str, list[str]]] = {}
    defaults: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind = words[0]
        if kind == "command":
            command = words[1:]
            continue
        if kind not in ("option", "default") or len(words) < 2 or "=" not in words[1]:
            raise RuntimeError(
                f"{source}:{lineno}: expected 'command ...', 'option NAME=VALUE ...' or "
                f"'default NAME=VALUE', got '{line}'"
            )
        name, value = words[1].split("=", 1)
        if kind == "default":
            defaults[name] = value
        else:
            rules.setdefault(name, {})[value] = words[2:]
    if not command:
        raise RuntimeError(f"{source}: no 'command sbatch ...' line")
    return SlurmConfig(command, rules, defaults)


def load_config(path: str | None) -> SlurmConfig:
    if path is None:
        return parse_config(DEFAULT_CONFIG, "slurm.pl built-in config")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"cannot read config file '{path}': {exc.strerror}") from None
    return parse_config(text, path)


def sbatch_command(request: JobRequest, config: SlurmConfig) -> list[str]:
    """The submit command without the array/output/script arguments."""
    values = dict(config.defaults)
    values.update({k: v for k, v in request.options.items() if k not in _SPECIAL})
    cmd = list(config.command)
    for name, value in values.items():
        rules = config.rules.get(name)
        if rules is None:
            raise RuntimeError(
                f"option --{name} is not handled by the config "
                f"({request.options.get('config', 'built-in')})"
            )
        template = rules.get(value, rules.get("*"))
        if template is None:
            raise RuntimeError(f"option --{name} {value}: no rule for this value in the config")
        cmd += [w.replace("$0", value) for w in template]
    partition = request.options.get("partition") or os.environ.get("SLURM_PARTITION")
    if partition:
        cmd.append(f"--partition={partition}")
    if "name" not in values:
        cmd.append(f"--job-name={default_job_name(request)}")
    return cmd


def default_job_name(request: JobRequest) -> str:
    """Job name: the log file name without JOB and ``.log`` (``train`` for train.JOB.log)."""
    name = Path(request.log_pattern).name
    if request.job_var:
        name = name.replace("." + request.job_var, "").replace(request.job_var, "")
    return re.sub(r"\.log$", "", name) or "job"


def write_batch_files(request: JobRequest, qdir: Path) -> Path:
    """Write spec.json and job.sh (the batch script) into ``qdir``; return the script path."""
    spec = {
        "command_args": request.command_args,
        "log_pattern": request.log_pattern,
        "job_var": request.job_var,
        "threads": request.threads,
        "qdir": str(qdir),
    }
    with atomic_writer(qdir / "spec.json") as f:
        json.dump(spec, f)
    script = qdir / "job.sh"
    runner = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from pyscripts.utils.slurm_backend import run_task; "
        "sys.exit(run_task(sys.argv[2], sys.argv[3]))"
    )
    index = "${SLURM_ARRAY_TASK_ID}" if request.is_array else str(request.indices[0])
    with atomic_writer(script) as f:
        f.write(
            "#!/bin/bash\n"
            f"cd {shlex.quote(os.getcwd())}\n"
            f"exec {shlex.quote(sys.executable)} -c {shlex.quote(runner)} "
            f"{shlex.quote(str(TEMPLATE_DIR))} {shlex.quote(str(qdir / 'spec.json'))} "
            f'"{index}"\n'
        )
    script.chmod(0o755)
    return script


def run_task(spec_path: str, index: str) -> int:
    """Body of one Slurm task: run the job with run.pl's log format, then write done.<index>."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    request = JobRequest(
        options={"num_threads": str(spec["threads"])},
        log_pattern=spec["log_pattern"],
        command_args=spec["command_args"],
        job_var=spec["job_var"],
        indices=[int(index)],
    )
    i = int(index)
    registry = ProcessRegistry()
    # Slurm sends SIGTERM on scancel/time limit: stop the job, still write footer + done file.
    signal.signal(signal.SIGTERM, lambda s, f: registry.kill_all(s))
    code = run_one_job(request.command_for(i), request.log_for(i), request.threads, registry)
    with atomic_writer(Path(spec["qdir"]) / f"done.{i}") as f:
        f.write(f"{code}\n")
    return code


def submit(request: JobRequest, config: SlurmConfig, qdir: Path) -> str:
    """Submit the job; return its id. Raises RuntimeError with sbatch's message on rejection."""
    script = write_batch_files(request, qdir)
    cmd = sbatch_command(request, config) + ["--parsable"]
    if request.is_array:
        array = f"{request.indices[0]}-{request.indices[-1]}"
        if "max_jobs_run" in request.options:
            array += f"%{request.options['max_jobs_run']}"
        cmd += [f"--array={array}", f"--output={qdir}/slurm-%a.out"]
    else:
        cmd += [f"--output={qdir}/slurm-{request.indices[0]}.out"]
    cmd.append(str(script))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise RuntimeError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        message = (
            f"sbatch rejected the job (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}\n  command: {shlex.join(cmd)}"
        )
        for i in request.indices:
            log = Path(request.log_for(i))
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(
                f"# {request.command_for(i)}\n# {message}\n"
                f"# Ended (code 1) at {date_string()}\n",
                encoding="utf-8",
            )
        raise RuntimeError(message)
    job_id = proc.stdout.strip().split(";")[0]
    if not re.fullmatch(r"\d+", job_id):
        raise RuntimeError(f"cannot parse the job id from sbatch's output '{proc.stdout.strip()}'")
    return job_id


def queued_tasks(job_id: str) -> set[str] | None:
    """Task ids (``<job>_<index>`` or ``<job>``) still known to squeue; None if squeue failed."""
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-j", job_id, "-o", "%i"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        # squeue fails for a job id that is no longer known at all: that means "none queued".
        if "Invalid job id" in proc.stderr:
            return set()
        return None
    return {line.strip() for line in proc.stdout.splitlines() if line.strip()}


def sacct_state(task_id: str) -> str:
    """``STATE exit=X:Y`` from sacct, or a note that accounting is not available."""
    if shutil.which("sacct") is None:
        return "state unknown (no sacct)"
    proc = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", task_id, "-o", "State,ExitCode"],
        capture_output=True,
        text=True,
    )
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        return "state unknown (sacct has no record)"
    state, _, code = lines[0].partition("|")
    return f"{state} exit={code}"


def wait_for_tasks(request: JobRequest, job_id: str, qdir: Path) -> dict[int, int | None]:
    """Poll done files and squeue until every task finished or is lost; return codes."""
    poll = float(os.environ.get("SLURM_PL_POLL", "2"))
    grace = float(os.environ.get("SLURM_PL_LOST_GRACE", "30"))
    codes: dict[int, int | None] = {}
    missing_since: dict[int, float] = {}
    warned = False
    while True:
        for i in request.indices:
            done = qdir / f"done.{i}"
            if i not in codes and done.exists():
                codes[i] = int(done.read_text().strip())
        pending = [i for i in request.indices if i not in codes]
        if not pending:
            return codes
        queued = queued_tasks(job_id)
        now = time.time()
        if queued is None:
            if not warned:
                print(
                    f"slurm.pl: warning: squeue failed for job {job_id}; retrying",
                    file=sys.stderr,
                )
                warned = True
        else:
            for i in pending:
                task = f"{job_id}_{i}" if request.is_array else job_id
                if task in queued:
                    missing_since.pop(i, None)
                    continue
                first = missing_since.setdefault(i, now)
                if now - first >= grace and not (qdir / f"done.{i}").exists():
                    state = sacct_state(task)
                    with open(request.log_for(i), "a", encoding="utf-8") as f:
                        f.write(
                            f"# slurm.pl: task {task} left the queue without finishing: {state}\n"
                            f"# Ended (code 1) at {date_string()}\n"
                        )
                    codes[i] = 1
        if all(i in codes for i in request.indices):
            return codes
        time.sleep(poll)


def run_slurm(request: JobRequest) -> dict[int, int | None]:
    """Submit ``request`` as one Slurm job, wait for it, return index -> exit code."""
    config = load_config(request.options.get("config"))
    log_dir = Path(request.log_for(request.indices[0])).parent
    qdir = log_dir / "q" / f"{default_job_name(request)}.{uuid.uuid4().hex[:8]}"
    qdir.mkdir(parents=True)
    job_id = submit(request, config, qdir)

    def cancel(signum: int) -> None:
        print(f"slurm.pl: signal {signum}: cancelling job {job_id}", file=sys.stderr)
        subprocess.run(["scancel", job_id], capture_output=True)
        raise SystemExit(128 + signum)

    with forward_signals(cancel):
        codes = wait_for_tasks(request, job_id, qdir)
    if all(c == 0 for c in codes.values()):
        shutil.rmtree(qdir, ignore_errors=True)
    return codes
