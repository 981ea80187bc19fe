"""The engine behind ``utils/run.pl`` (local backend) and ``utils/slurm.pl`` (Slurm backend).

Call form (Kaldi's)::

    run.pl [options] [JOB=a:b | JOB=a] LOG command...

* ``JOB`` (any identifier) is replaced by the job index everywhere in ``LOG`` and in every
  argument of the command; ``a:b`` runs ``b - a + 1`` jobs, ``JOB=a`` one job with index ``a``.
  A range of more than one job needs the name in ``LOG`` (otherwise they would share a log).
* The command is run by ``bash`` with ``set -o pipefail``, stdin from /dev/null, in the current
  directory. Arguments are joined the way Kaldi's run.pl joins them: an argument without
  whitespace is passed verbatim (so ``\\|`` or ``'>'`` act as shell operators), any other
  argument (or an empty one) is single-quoted.
* Each job's log starts with ``# <command>`` and ``# Started at <date>``, then the job's stdout
  and stderr, and ends with ``# Accounting: time=<seconds> threads=<n>`` and
  ``# Ended (code <N>) at <date>``. A job killed by signal S ends with code 128+S.
* The exit status is 0 when every job succeeded; otherwise it is 1 and stderr says
  ``<prog>: N / M failed, log is in <log of the first failed job>``.

Options (``--name value`` or ``--name=value``; dashes and underscores are interchangeable):
``--max-jobs-run N`` (also ``-tc N``) limits the number of jobs running at once; ``--gpu``,
``--mem``, ``--num-threads``, ``--name``, ``--time``, ``--config``, ``--num-nodes``,
``--partition`` describe cluster resources: the local backend ignores them (``--num-threads``
only appears in the accounting line), the Slurm backend maps them to sbatch options
(see :mod:`pyscripts.utils.slurm_backend`). Any other option is an error.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

VALUE_OPTIONS = (
    "max_jobs_run",
    "gpu",
    "mem",
    "num_threads",
    "name",
    "time",
    "config",
    "num_nodes",
    "partition",
)

_JOB_RANGE = re.compile(r"^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$")
_LOOKS_LIKE_RANGE = re.compile(r"^[A-Za-z_]\w*=[^/]*$")


class UsageError(Exception):
    """Bad command line of run.pl/slurm.pl (printed as ``<prog>: <message>``, exit 1)."""


@dataclass
class JobRequest:
    """A parsed run.pl/slurm.pl command line."""

    options: dict[str, str]
    log_pattern: str
    command_args: list[str]
    job_var: str | None = None
    indices: list[int] = field(default_factory=lambda: [0])

    @property
    def is_array(self) -> bool:
        return self.job_var is not None

    def log_for(self, index: int) -> str:
        return substitute(self.log_pattern, self.job_var, index)

    def command_for(self, index: int) -> str:
        return shell_join([substitute(a, self.job_var, index) for a in self.command_args])

    @property
    def threads(self) -> int:
        return int(self.options.get("num_threads", "1"))


def substitute(text: str, var: str | None, index: int) -> str:
    """Replace every occurrence of ``var`` in ``text`` by ``index`` (Kaldi replaces substrings)."""
    return text if var is None else text.replace(var, str(index))


def shell_join(args: Sequence[str]) -> str:
    """Join arguments like Kaldi's run.pl: plain words verbatim, others single-quoted."""
    return " ".join(a if a and not re.search(r"\s", a) else shlex.quote(a) for a in args)


def parse_command_line(argv: Sequence[str]) -> JobRequest:
    """Parse ``[options] [JOB=a:b] LOG command...``; raises :class:`UsageError`."""
    args = list(argv)
    options: dict[str, str] = {}
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "--":
            break
        if "=" in opt and opt.startswith("--"):
            opt, value = opt.split("=", 1)
        else:
            if not args:
                raise UsageError(f"option {opt} needs a value")
            value = args.pop(0)
        name = "max_jobs_run" if opt == "-tc" else opt.lstrip("-").replace("-", "_")
        if name not in VALUE_OPTIONS:
            raise UsageError(
                f"unknown option {opt} (known: "
                + ", ".join("--" + o.replace("_", "-") for o in VALUE_OPTIONS)
                + ")"
            )
        options[name] = value
    for name in ("max_jobs_run", "gpu", "num_threads", "num_nodes"):
        if name in options and not re.fullmatch(r"\d+", options[name]):
            raise UsageError(
                f"option --{name.replace('_', '-')} needs a non-negative integer, "
                f"got '{options[name]}'"
            )
    if options.get("max_jobs_run") == "0":
        raise UsageError("option --max-jobs-run must be at least 1")

    job_var = None
    indices = [0]
    if args:
        match = _JOB_RANGE.match(args[0])
        if match:
            args.pop(0)
            job_var = match.group(1)
            first = int(match.group(2))
            last = int(match.group(3)) if match.group(3) is not None else first
            if last < first:
                raise UsageError(f"invalid job range {job_var}={first}:{last} (end < start)")
            indices = list(range(first, last + 1))
        elif _LOOKS_LIKE_RANGE.match(args[0]):
            raise UsageError(
                f"invalid job range '{args[0]}': expected NAME=a:b or NAME=a with "
                "integers 0 <= a <= b"
            )
    if len(args) < 2:
        raise UsageError(
            "usage: [options] [JOB=a:b] LOG command... (need a log file and a command)"
        )
    log_pattern = args.pop(0)
    if job_var is not None and len(indices) > 1 and job_var not in log_pattern:
        raise UsageError(
            f"{len(indices)} jobs would share the log file '{log_pattern}': "
            f"put {job_var} in the log file name"
        )
    return JobRequest(options, log_pattern, args, job_var, indices)


def date_string() -> str:
    """The current time formatted like ``date`` (e.g. ``Sat Nov 21 06:13:21 UTC 2026``)."""
    return time.strftime("%a %b %e %H:%M:%S %Z %Y")


def exit_code(returncode: int) -> int:
    """Shell-style exit code: a process killed by signal S reports 128 + S."""
    return 128 - returncode if returncode < 0 else returncode


class ProcessRegistry:
    """The running job processes, so that a signal handler can kill their process groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stopping = False
        self._signum = signal.SIGTERM

    def add(self, proc: subprocess.Popen) -> None:
        """Track ``proc``; if a stop was already requested, signal it at once."""
        with self._lock:
            self._procs.add(proc)
            if self.stopping:
                self._kill(proc)

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self, signum: int) -> None:
        """Send ``signum`` to the process group of every job, now and when one starts later."""
        with self._lock:
            self.stopping = True
            self._signum = signum
            for proc in self._procs:
                self._kill(proc)

    def _kill(self, proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, self._signum)
        except ProcessLookupError:
            pass


def run_one_job(
    command: str, log_path: str, threads: int, registry: ProcessRegistry | None = None
) -> int:
    """Run ``command`` with bash, writing the Kaldi log header/footer; return its exit code."""
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# Started at {date_string()}\n")
    with open(log, "a", encoding="utf-8") as f:
        try:
            proc = subprocess.Popen(
                ["bash", "-c", "set -o pipefail\n" + command],
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:  # bash missing, cwd gone, ...
            f.write(f"could not start bash: {exc}\n")
            code = 127
        else:
            if registry is not None:
                registry.add(proc)
            try:
                code = exit_code(proc.wait())
            finally:
                if registry is not None:
                    registry.discard(proc)
        f.write(
            f"# Accounting: time={int(round(time.time() - start))} threads={threads}\n"
            f"# Ended (code {code}) at {date_string()}\n"
        )
    return code


def run_local(request: JobRequest) -> dict[int, int | None]:
    """Run the jobs on this machine; return index -> exit code (None: not started)."""
    registry = ProcessRegistry()
    workers = int(request.options.get("max_jobs_run", 0)) or len(request.indices)

    def job(index: int) -> int | None:
        if registry.stopping:
            return None
        return run_one_job(
            request.command_for(index), request.log_for(index), request.threads, registry
        )

    with forward_signals(registry.kill_all):
        with ThreadPoolExecutor(max_workers=min(workers, len(request.indices))) as pool:
            codes = dict(zip(request.indices, pool.map(job, request.indices)))
    return codes


class forward_signals:
    """Context manager: on SIGINT/SIGTERM/SIGHUP call ``handler(signum)``, then re-raise.

    After the block, the process exits with 128 + the signal number if a signal arrived
    (the jobs have been stopped by then).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, handler: Callable[[int], None]) -> None:
        self.handler = handler
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received = signum
        self.handler(signum)

    def __enter__(self) -> "forward_signals":
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self.received is not None:
            sys.exit(128 + self.received)


def report(prog: str, request: JobRequest, codes: dict[int, int | None]) -> int:
    """Print the Kaldi failure line if any job failed; return run.pl's exit status."""
    failed = [i for i in request.indices if codes.get(i) != 0]
    if not failed:
        return 0
    print(
        f"{prog}: {len(failed)} / {len(request.indices)} failed, "
        f"log is in {request.log_for(failed[0])}",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None, backend: str = "local") -> int:
    """Entry point of run.pl (``backend="local"``) and slurm.pl (``backend="slurm"``)."""
    prog = "run.pl" if backend == "local" else "slurm.pl"
    try:
        request = parse_command_line(sys.argv[1:] if argv is None else argv)
        if backend == "local":
            codes = run_local(request)
        else:
            from pyscripts.utils import slurm_backend

            codes = slurm_backend.run_slurm(request)
    except (UsageError, RuntimeError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return report(prog, request, codes)
