#!/usr/bin/env python3
"""utt2spk_to_spk2utt.pl [utt2spk] > spk2utt (implemented in pyscripts/utils/data_dir.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.data_dir import utt2spk_to_spk2utt_main  # noqa: E402

sys.exit(utt2spk_to_spk2utt_main())
