#!/usr/bin/env python3
"""slurm.pl [options] [JOB=a:b] LOG command...: run a (parallel) job on Slurm (sbatch array job).

See pyscripts/utils/job_runner.py and pyscripts/utils/slurm_backend.py for the behaviour.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.job_runner import main  # noqa: E402

sys.exit(main(backend="slurm"))
