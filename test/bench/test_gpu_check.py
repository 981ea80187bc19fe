"""bench/gpu_check.py: its CPU dry run passes, and its comparison catches wrong statistics.

The CUDA path needs a GPU machine (run it there once; docs/gradient_remedy_trainer.md has
the figures when one was lent); this keeps the script from rotting in between.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_cpu_dry_run_trains_every_system_and_passes():
    p = subprocess.run(
        [sys.executable, str(REPO / "bench/gpu_check.py"), "--device", "cpu", "--model", "small", "--steps", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for system in gpu_check.SYSTEMS:
        assert f" {system} " in p.stdout
    assert "all checks passed" in p.stdout


def test_statistics_comparison_flags_a_lost_or_rescaled_gradient():
    """Within tolerance passes; a flipped cosine (a lost task gradient) or a ratio off by
    2x (a loss scale applied to one task only) fails; non-finite values fail."""
    ref = dict(gr_cos=-0.30, gr_norm_ratio=8.0, gr_w_asr=3.0, gr_w_se=0.9)
    assert gpu_check.compare_stats(ref, dict(ref, gr_cos=-0.29, gr_norm_ratio=8.3), "float16") == []
    assert gpu_check.compare_stats(ref, dict(ref, gr_cos=0.30), "float32")
    assert gpu_check.compare_stats(ref, dict(ref, gr_norm_ratio=16.0), "bfloat16")
    assert gpu_check.compare_stats(ref, dict(ref, gr_w_se=float("nan")), "float16")
