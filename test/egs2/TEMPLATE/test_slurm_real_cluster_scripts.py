"""ci/slurm/install.sh, start.sh and stop.sh: a second, private cluster is started and stopped here.

The session cluster (slurm_fixture.py) is only stopped at the end of the session; this test checks
on a cluster of its own what CI relies on at that point: stop.sh ends every daemon by its recorded
PID, cancels queued work, and kills a job's process that escaped Slurm's process tracking, so no
process survives the test session; and start.sh refuses to start a second cluster in a running one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from slurm_fixture import CI_SLURM, free_port, slurm_cluster  # noqa: F401  (the fixture)


def wait_for_file(path: Path, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.exists()


def test_stop_leaves_no_process_behind(slurm_cluster, tmp_path):
    # slurm_cluster: skips this test where Slurm cannot run, installs it where needed.
    root = tmp_path / "cluster"
    env = dict(slurm_cluster.env, SLURM_CI_CTLD_PORT=str(free_port()), SLURM_CI_SLURMD_PORT=str(free_port()),
               SLURM_CONF=str(root / "etc" / "slurm.conf"))  # fmt: skip
    start = subprocess.run([str(CI_SLURM / "start.sh"), str(root)], capture_output=True, text=True, env=env, timeout=120)
    try:
        assert start.returncode == 0, start.stderr
        assert start.stdout.splitlines()[-1] == f"export SLURM_CONF={root}/etc/slurm.conf"
        daemons = {p.stem: int(p.read_text()) for p in (root / "run").glob("*.pid")}
        assert sorted(daemons) == ["munged", "slurmctld", "slurmd"]
        for name, pid in daemons.items():
            assert Path(f"/proc/{pid}/comm").read_text().strip() == name

        # A second start in the same directory must not start a second set of daemons.
        again = subprocess.run([str(CI_SLURM / "start.sh"), str(root)], capture_output=True, text=True, env=env)
        assert again.returncode == 1 and "already running" in again.stderr

        # One job leaves a process that ignores SIGTERM in a new session (out of Slurm's reach:
        # proctrack/linuxproc follows parent links only); another job is still running at stop.
        escaped = tmp_path / "escaped.pid"
        script = f'setsid sh -c \'trap "" TERM; echo $$ > {escaped}; exec sleep 300\' </dev/null >/dev/null 2>&1 &'
        for wrap in (script + " sleep 1", f"echo $$ > {tmp_path}/running.pid; sleep 300"):
            sub = subprocess.run(["sbatch", "-o", "/dev/null", "--wrap", wrap], capture_output=True, text=True, env=env)
            assert sub.returncode == 0, sub.stderr
        assert wait_for_file(escaped) and wait_for_file(tmp_path / "running.pid")
        job_pids = [int(escaped.read_text()), int((tmp_path / "running.pid").read_text())]
    finally:
        stop = subprocess.run([str(CI_SLURM / "stop.sh"), str(root)], capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    survivors = [pid for pid in [*daemons.values(), *job_pids] if Path(f"/proc/{pid}").exists()]
    assert survivors == [], stop.stderr
    # The escaped process was found by slurmd's namespace and killed.
    assert re.search(rf"killing \d+ process\(es\) left by jobs: .*\b{job_pids[0]}\b", stop.stderr), stop.stderr
    assert not list((root / "run").glob("*.pid"))
    # Stopping a stopped cluster is harmless.
    assert subprocess.run([str(CI_SLURM / "stop.sh"), str(root)], capture_output=True).returncode == 0


def test_without_apt_the_slurm_tests_are_skipped_with_the_reason(tmp_path, monkeypatch):
    # A machine without Slurm and without apt-get (or without root) cannot get a cluster: install.sh
    # must say so and exit 2, and the fixture must turn that into a skip that names the packages,
    # instead of failing the suite. The PATH below has bash but no Slurm and no apt-get.
    import slurm_fixture

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("env", "bash", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("SLURM_CI_INSTALL", raising=False)
    p = subprocess.run([str(CI_SLURM / "install.sh")], capture_output=True, text=True)
    assert p.returncode == 2
    assert "needs root and apt-get" in p.stderr and "slurmctld slurmd slurm-client munge" in p.stderr
    reason = slurm_fixture.why_cluster_cannot_run()
    assert reason.startswith("Slurm is not installed and ci/slurm/install.sh failed") and "needs root and apt-get" in reason
