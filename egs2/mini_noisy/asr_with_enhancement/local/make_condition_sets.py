#!/usr/bin/env python3
"""Per-condition test data for the mini corpus: ``utt2condition`` and one data dir per SNR.

The CHiME-4 preparation writes ``{dt05,et05}_{real,simu}_isolated_1ch_track``; the mini
corpus records each utterance's noise type and SNR in
``<corpus>/data/annotations/mini_noisy_conditions.txt`` (``<stem> <set> <category> <ENV> <snr_db>``).
``make_condition_sets(data_dir, conditions_file)`` then, for each of those four dirs:

* adds ``utt2condition``: ``<utt_id> <ENV>_<snr>dB`` (e.g. ``CAF_0dB``; ENV = the noise type,
  see ``noise_synthesis.NOISE_OF_ENVIRONMENT``), so a scorer can group by SNR and noise type;
* writes ``<dir>_<snr>dB`` (e.g. ``et05_simu_isolated_1ch_track_0dB``; a negative SNR is
  written ``m5dB``), the subset at that SNR with every file of the parent dir, so the stage
  script can decode and score each SNR as a test set.

Files are written atomically; an up-to-date dir is left untouched.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prepare_chime4 import DATA_DIR_FILES, PrepError, c_sorted, write_dir_atomic, write_file_atomic  # noqa: E402

BASE_DIRS = tuple(f"{s}_{c}_isolated_1ch_track" for s in ("dt05", "et05") for c in ("real", "simu"))

logger = logging.getLogger("make_condition_sets")


def read_conditions(path: Path) -> Dict[str, Tuple[str, float]]:
    """``mini_noisy_conditions.txt`` as {stem: (ENV, snr_db)}."""
    out: Dict[str, Tuple[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                stem, _set, _category, env, snr = fields
                out[stem] = (env, float(snr))
            except ValueError:
                raise PrepError(f"{path}:{lineno}: expected '<stem> <set> <category> <ENV> <snr_db>', got {line.strip()!r}") from None
    return out


def snr_name(snr_db: float) -> str:
    """0 -> '0dB', 5 -> '5dB', -5 -> 'm5dB', 2.5 -> '2.5dB'."""
    return f"{snr_db:g}".replace("-", "m") + "dB"


def _read_lines(path: Path) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def subset_files(base: Path, keep: set) -> Dict[str, str]:
    """The data-dir files of ``base`` restricted to the utterances ``keep``."""
    files = {}
    for name in DATA_DIR_FILES + ("utt2condition",):
        if name == "spk2utt":
            continue
        rows = [r for r in _read_lines(base / name) if r.split(" ", 1)[0] in keep]
        files[name] = "".join(r + "\n" for r in rows)
    spk2utt: Dict[str, List[str]] = {}
    for row in files["utt2spk"].splitlines():
        utt, spk = row.split(" ", 1)
        spk2utt.setdefault(spk, []).append(utt)
    files["spk2utt"] = "".join(f"{s} {' '.join(spk2utt[s])}\n" for s in c_sorted(spk2utt))
    return files


def make_condition_sets(data_dir: os.PathLike, conditions_file: os.PathLike) -> Dict[str, Path]:
    """Add ``utt2condition`` to the four 1ch test dirs and write their per-SNR subsets.

    Returns {name: path} of the per-SNR dirs.
    """
    data_dir, conditions_file = Path(data_dir), Path(conditions_file)
    conditions = read_conditions(conditions_file)
    written: Dict[str, Path] = {}
    for base_name in BASE_DIRS:
        base = data_dir / base_name
        if not (base / "wav.scp").is_file():
            raise PrepError(f"missing {base / 'wav.scp'}: run the CHiME-4 preparation first")
        by_snr: Dict[float, set] = {}
        rows = []
        for utt in (r.split(" ", 1)[0] for r in _read_lines(base / "wav.scp")):
            stem = utt.rsplit("_", 1)[0]  # drop _REAL / _SIMU
            if stem not in conditions:
                raise PrepError(f"{base / 'wav.scp'}: utterance {utt} has no line in {conditions_file}")
            env, snr = conditions[stem]
            rows.append(f"{utt} {env}_{snr_name(snr)}")
            by_snr.setdefault(snr, set()).add(utt)
        content = "".join(r + "\n" for r in rows)
        write_file_atomic(base / "utt2condition", content)
        for snr, keep in sorted(by_snr.items()):
            name = f"{base_name}_{snr_name(snr)}"
            changed = write_dir_atomic(data_dir / name, subset_files(base, keep))
            logger.info("%s %s (%d utterances)", "wrote" if changed else "up to date:", data_dir / name, len(keep))
            written[name] = data_dir / name
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--conditions", required=True, help="<corpus>/data/annotations/mini_noisy_conditions.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        make_condition_sets(args.data_dir, args.conditions)
    except PrepError as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
