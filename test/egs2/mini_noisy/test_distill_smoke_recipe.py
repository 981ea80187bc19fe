"""End to end: egs2/mini_noisy/distill1/run.sh --smoke true in a sandbox copy.

The smoke run synthesises the smoke corpus, writes a tiny random teacher, distils one epoch,
measures noise invariance before/after, trains one ASR epoch on the distilled student as
front-end, decodes, scores and writes RESULTS.md. It checks the code path, not the numbers.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def sandbox(tmp: Path) -> Path:
    """tmp/main with tools and espnet2 linked and egs2 copied without run outputs.

    Copied, not linked: bash reads a script while it runs it, and the recipes link to each
    other (TEMPLATE utils, the CHiME-4 preparation), so the whole egs2 tree is snapshotted.
    """
    main = tmp / "main"
    main.mkdir()
    for name in ("tools", "espnet2"):
        (main / name).symlink_to(REPO / name)

    def ignore(directory, names):  # run outputs (data/, exp_smoke/, ...) and caches
        return [n for n in names if n == "__pycache__" or (
            re.fullmatch(r"(data|dump|exp|downloads|corpus)(_\w+)?", n)
            and Path(directory, n).is_dir())]

    shutil.copytree(REPO / "egs2", main / "egs2", symlinks=True, ignore=ignore)
    return main / "egs2/mini_noisy/distill1"


@pytest.mark.slow
def test_smoke_run_writes_noise_invariance_and_wer_results(tmp_path):
    recipe = sandbox(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["./run.sh", "--smoke", "true"], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = recipe / "exp_smoke"
    invariance = json.loads((exp / "noise_invariance.json").read_text())
    assert set(invariance) == {"before", "after"}
    for per_layer in invariance.values():
        assert list(per_layer) == ["0", "1", "2"]  # 2-layer student: 3 hidden states
        assert all(-1 <= v["matched"] <= 1 for v in per_layer.values())
    # the distilled student differs from the initial one
    assert invariance["before"] != invariance["after"]
    results = (exp / "RESULTS.md").read_text()
    assert "## Noise invariance" in results and "Mean-centred:" in results
    downstream = results.split("## Downstream ASR: WER % (sub/del/ins) / CER %")[1]
    assert "| after | " in downstream
    for unit in ("wer", "cer"):  # both scored by sclite (or the built-in scorer)
        assert (exp / f"asr_after/decode_et05_simu_isolated_1ch_track/score_{unit}/result.txt").is_file()
    # the distillation used the gradient-rule trainer (its stats are in the log)
    assert "gr_cos=" in proc.stdout + proc.stderr
    # a second run finds every stage complete and redoes no training
    again = subprocess.run(["./run.sh", "--smoke", "true", "--stop_stage", "3"], cwd=recipe,
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "is complete, skipping" in again.stdout
