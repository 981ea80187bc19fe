"""Pytest fixture ``slurm_cluster``: one real single-node Slurm cluster for the whole test session.

Import it into a test module (``from slurm_fixture import slurm_cluster``). The first test that
needs it installs Slurm if necessary (``ci/slurm/install.sh``: only as root with apt-get; the
time is printed), starts munged + slurmctld + slurmd on 127.0.0.1 with ``ci/slurm/start.sh``
under a pytest temp dir and free ports, and the cluster is stopped with ``ci/slurm/stop.sh`` at
the end of the session (also after failures or Ctrl-C; an ``atexit`` hook is the last resort).
Several modules importing the fixture share the one cluster.

The tests are skipped, with the reason, when Slurm is missing and cannot be installed (not root,
no apt-get, apt-get failed, or ``SLURM_CI_INSTALL=0``) or when the daemons cannot run here (not
root). A cluster that is installed but fails to start is an error, not a skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[3]
CI_SLURM = REPO / "ci" / "slurm"
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun", "munged")
# CPUs the node advertises: more than a 2-core CI machine has, so that `srun -n 2` inside a
# 2-CPU job and a 3-task array run without waiting for each other.
ADVERTISED_CPUS = 4


@dataclass
class SlurmCluster:
    """A running cluster: ``root`` holds etc/slurm.conf, log/, run/*.pid; ``env`` is the
    environment for clients and ``utils/slurm.pl`` (SLURM_CONF set, slurm.pl polling fast)."""

    root: Path
    env: dict[str, str]

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        """Run a Slurm client command (squeue, scontrol, ...) against this cluster."""
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=30)

    def active_jobs(self) -> list[str]:
        """Job ids (array tasks expanded) that are pending, running or completing."""
        proc = self.run("squeue", "-h", "-r", "-o", "%i")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    def daemon_pids(self) -> list[int]:
        return [int(p.read_text()) for p in sorted((self.root / "run").glob("*.pid"))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_cluster_cannot_run() -> str | None:
    """Install Slurm with ci/slurm/install.sh if needed; the reason the cluster cannot run, or None."""
    if not sys.platform.startswith("linux"):
        return "the CI Slurm cluster needs Linux"
    if not all(shutil.which(c) for c in COMMANDS):
        if os.environ.get("SLURM_CI_INSTALL") == "0":
            return "Slurm is not installed and SLURM_CI_INSTALL=0 forbids installing it"
        start = time.monotonic()
        proc = subprocess.run([str(CI_SLURM / "install.sh")], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return f"Slurm is not installed and ci/slurm/install.sh failed: {proc.stderr.strip()[-1500:]}"
        print(f"slurm_fixture: installed Slurm in {time.monotonic() - start:.1f} s", file=sys.stderr)
    if os.geteuid() != 0:
        return "the CI Slurm cluster needs root (slurmd runs jobs as their submitting user)"
    return None


class _Shared:
    """The one cluster of this process, shared by every module that imports the fixture."""

    cluster: SlurmCluster | None = None
    users = 0
    skip_reason: str | None = None


def _stop(cluster: SlurmCluster) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(CI_SLURM / "stop.sh"), str(cluster.root)], capture_output=True, text=True, timeout=120
    )
    _Shared.cluster = None
    return proc


def _stop_at_exit() -> None:
    if _Shared.cluster is not None:
        _stop(_Shared.cluster)


atexit.register(_stop_at_exit)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A running single-node Slurm cluster on 127.0.0.1 (see the module docstring)."""
    if _Shared.skip_reason is not None:
        pytest.skip(_Shared.skip_reason)
    if _Shared.cluster is None:
        _Shared.skip_reason = why_cluster_cannot_run()
        if _Shared.skip_reason is not None:
            pytest.skip(_Shared.skip_reason)
        root = tmp_path_factory.mktemp("slurm")
        env = dict(os.environ)
        env.pop("SLURM_PARTITION", None)
        env.update(
            SLURM_CI_CTLD_PORT=str(free_port()),
            SLURM_CI_SLURMD_PORT=str(free_port()),
            SLURM_CI_CPUS=str(max(ADVERTISED_CPUS, os.cpu_count() or 1)),
        )
        start = subprocess.run(
            [str(CI_SLURM / "start.sh"), str(root)], capture_output=True, text=True, env=env, timeout=120
        )
        assert start.returncode == 0, f"ci/slurm/start.sh failed:\n{start.stdout}\n{start.stderr}"
        print(start.stdout, file=sys.stderr)
        env.update(
            SLURM_CONF=str(root / "etc" / "slurm.conf"),
            SLURM_PL_POLL="0.2",
            OMP_NUM_THREADS="1",
            PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        )
        _Shared.cluster = SlurmCluster(root, env)
    cluster = _Shared.cluster
    _Shared.users += 1
    try:
        yield cluster
    finally:
        _Shared.users -= 1
        if _Shared.users == 0 and _Shared.cluster is not None:
            pids = cluster.daemon_pids()
            stop = _stop(cluster)
            left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            assert stop.returncode == 0 and not left, (
                f"ci/slurm/stop.sh left processes {left}:\n{stop.stdout}\n{stop.stderr}"
            )
