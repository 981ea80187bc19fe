#!/usr/bin/env python3
"""filter_scp.pl [--exclude] [-f N] idlist [in] > out: keep lines whose key is in idlist (implemented in pyscripts/utils/scp_tools.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.scp_tools import filter_main  # noqa: E402

sys.exit(filter_main())
