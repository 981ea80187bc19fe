#!/usr/bin/env python3
"""split_scp.pl in.scp out.1 ... out.N: split into N contiguous near-equal parts (implemented in pyscripts/utils/scp_tools.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.scp_tools import split_main  # noqa: E402

sys.exit(split_main())
