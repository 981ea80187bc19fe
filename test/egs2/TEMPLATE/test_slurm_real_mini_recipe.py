"""The mini recipe's smoke run with ``cmd_backend=slurm`` on the real single-node CI cluster.

Same invocation as test/egs2/mini_noisy/test_smoke_recipe.py (``./run.sh --smoke true`` in a copy of
the recipe), but every job of every stage (data formatting, statistics, training through
``espnet2.bin.launch``, decoding and enhancement split over 2 jobs, scoring) is an sbatch job of
utils/slurm.pl. One system (``--grad_rules gr``) and one test set are enough to exercise each
kind of job and keep the run short; the recipe's own smoke test covers both systems, both test
sets and the numbers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from slurm_fixture import slurm_cluster  # noqa: F401  (the fixture)

pytest.importorskip("espeakng_loader")  # the mini corpus synthesiser's TTS

REPO = Path(__file__).resolve().parents[3]
RECIPE = "mini_noisy/asr_with_enhancement"
TEST = "et05_simu_isolated_1ch_track"
SYSTEM = "enh_asr_train_enh_asr_smoke_gr"
DECODE = "decode_asr_smoke_enh_asr_model_valid.acc.ave"


def make_sandbox(tmp: Path) -> Path:
    """``tmp/main/egs2/<RECIPE>``: a copy of the recipe (symlinks kept) beside links to the repository."""
    main = tmp / "main"
    (main / "egs2").mkdir(parents=True)
    for name in ("tools", "espnet2"):
        (main / name).symlink_to(REPO / name)
    for name in ("TEMPLATE", "chime4"):  # local/prepare_chime4.py links into egs2/chime4
        (main / "egs2" / name).symlink_to(REPO / "egs2" / name)
    dst = main / "egs2" / RECIPE
    shutil.copytree(REPO / "egs2" / RECIPE, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump*", "exp*", "downloads", "__pycache__"))  # fmt: skip
    return dst


def jobcomp_lines(cluster) -> list[str]:
    """Slurm's completion log (JobCompType=jobcomp/filetxt): one line per finished job/array task."""
    return (cluster.root / "log" / "jobcomp.txt").read_text().splitlines()


def jobs_by_name(lines: list[str]) -> dict[str, list[str]]:
    """Job name -> 'STATE exit' of each job/array task in jobcomp lines."""
    jobs: dict[str, list[str]] = {}
    for line in lines:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        jobs.setdefault(fields["Name"], []).append(f"{fields['JobState']} {fields['ExitCode']}")
    return jobs


@pytest.mark.slow
def test_smoke_recipe_runs_every_stage_through_slurm(slurm_cluster, tmp_path):
    recipe = make_sandbox(tmp_path)
    assert slurm_cluster.active_jobs() == []  # so every job completed from here on is the recipe's
    done_before = len(jobcomp_lines(slurm_cluster))
    env = {**slurm_cluster.env, "cmd_backend": "slurm", "SLURM_PL_POLL": "0.5"}
    start = time.monotonic()
    cmd = ["./run.sh", "--smoke", "true", "--grad_rules", "gr", "--test_sets", TEST]
    p = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=1800)
    print(f"smoke run on Slurm: {time.monotonic() - start:.0f} s")
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]

    # Every stage's jobs ran as Slurm jobs, and Slurm saw each one succeed. The names are
    # slurm.pl's defaults (the log name without JOB and .log) or the training stage's --name.
    # slurm.pl returns when its tasks wrote their done files; Slurm logs a job once it has left
    # the queue (COMPLETING included), so wait for that before reading the log.
    deadline = time.monotonic() + 30
    while slurm_cluster.active_jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs = jobs_by_name(jobcomp_lines(slurm_cluster)[done_before:])
    train = [n for n in jobs if n.endswith(f"{SYSTEM}/train.log")]
    assert len(train) == 1 and jobs[train[0]] == ["COMPLETED 0:0"], jobs
    for name in ("format_wav", "stats", "asr_inference", "enh_inference", "enh_scoring"):
        assert name in jobs, f"no Slurm job named {name}: {sorted(jobs)}"
    assert all(state == "COMPLETED 0:0" for states in jobs.values() for state in states), jobs
    # Decoding was split over 2 array tasks (--inference_nj 2), each with its run.pl log.
    assert len(jobs["asr_inference"]) == 2
    exp = recipe / "exp_smoke" / SYSTEM
    logdir = exp / DECODE / TEST / "logdir"
    for i in (1, 2):
        assert re.search(r"^# Ended \(code 0\)", (logdir / f"asr_inference.{i}.log").read_text(), re.M)
    # Every test utterance was decoded once, in the reference's order.
    ref = (recipe / "dump_smoke/raw" / TEST / "text_spk1").read_text().splitlines()
    hyp = (exp / DECODE / TEST / "text_spk1").read_text().splitlines()
    assert [h.split()[0] for h in hyp] == [r.split()[0] for r in ref]
    # Scoring reached RESULTS.md: the GR system's summary row ends with the test set's WER.
    results = (recipe / "exp_smoke" / "RESULTS.md").read_text()
    assert re.search(rf"^\|{SYSTEM}\|gr\|.*\|[0-9.]+\|$", results, re.M), results[:3000]
    assert re.search(rf"^\|decode_asr_smoke_enh_asr_model_valid\.acc\.ave/{TEST}(\|[0-9.]+){{8}}\|$", results, re.M)
    # No batch files remain (they are removed after each successful call).
    assert not [q for q in recipe.rglob("q/*") if q.is_dir()]
