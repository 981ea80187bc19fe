"""Run a recipe's run.sh outside the source tree (recipes write data/, dump/, exp/ in place).

``make_sandbox`` builds ``<tmp>/main`` with the recipe and ``egs2/TEMPLATE`` copied (their
symlinks kept, relative) and ``tools`` and ``espnet2`` linked to the repository, so path.sh and
the TEMPLATE links resolve exactly as in a checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

REPO = Path(__file__).resolve().parents[3]


def make_sandbox(tmp: Path, recipe: str) -> Path:
    """Copy ``egs2/<recipe>`` into ``tmp/main`` and return the copied recipe dir."""
    main = tmp / "main"
    (main / "egs2").mkdir(parents=True)
    for name in ("tools", "espnet2"):
        (main / name).symlink_to(REPO / name)
    ignore = shutil.ignore_patterns("data", "dump", "exp", "__pycache__")
    # A snapshot of the TEMPLATE, not a link: bash reads a script while it runs it, so an edit
    # of the checkout's enh_asr.sh during a long test run would corrupt that run.
    shutil.copytree(REPO / "egs2" / "TEMPLATE", main / "egs2" / "TEMPLATE", symlinks=True, ignore=ignore)
    dst = main / "egs2" / recipe
    shutil.copytree(REPO / "egs2" / recipe, dst, symlinks=True, ignore=ignore)
    return dst


def run_recipe(recipe_dir: Path, args: Sequence[str], env: Optional[Dict[str, str]] = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """``./run.sh args`` in ``recipe_dir`` with the local backend; output captured."""
    full_env = {**os.environ, "cmd_backend": "local", "OMP_NUM_THREADS": "1",
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(["./run.sh", *args], cwd=recipe_dir, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def read_map(path: Path) -> Dict[str, str]:
    """A Kaldi ``key value...`` file as a dict (value: the rest of the line)."""
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())
