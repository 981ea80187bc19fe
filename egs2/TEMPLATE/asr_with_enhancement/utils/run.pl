#!/usr/bin/env python3
"""run.pl [options] [JOB=a:b] LOG command...: run a (parallel) job on this machine.

See pyscripts/utils/job_runner.py for the behaviour.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.job_runner import main  # noqa: E402

sys.exit(main(backend="local"))
