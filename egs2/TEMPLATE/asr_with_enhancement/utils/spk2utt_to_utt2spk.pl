#!/usr/bin/env python3
"""spk2utt_to_utt2spk.pl [spk2utt] > utt2spk (implemented in pyscripts/utils/data_dir.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pyscripts.utils.data_dir import spk2utt_to_utt2spk_main  # noqa: E402

sys.exit(spk2utt_to_utt2spk_main())
