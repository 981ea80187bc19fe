#!/usr/bin/env python3
"""Merge the per-job outputs of ``espnet2.bin.enh_scoring`` and average each metric (stage 15 of enh_asr.sh).

Each job directory holds one ``<METRIC>_spk1`` file per metric (``<utt-id> <value>`` lines, as ESPnet's
``DatadirWriter`` writes them; ``wav_spk1`` is the scored audio, not a metric). For every metric this writes
``<output_dir>/<METRIC>_spk1`` (all utterances, sorted) and ``<output_dir>/result_<metric>.txt`` (the mean
over utterances, the file ESPnet's enh.sh writes), each through a temporary file and a rename.
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
if str(TEMPLATE_DIR) not in sys.path:
    sys.path.insert(0, str(TEMPLATE_DIR))

from pyscripts.utils.table_file import atomic_writer  # noqa: E402


def read_scores(path: Path) -> Dict[str, float]:
    """``{utt_id: value}`` of one ``<utt-id> <value>`` file; a malformed line is an error naming it."""
    scores = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<utt-id> <value>', got {line!r}")
            try:
                scores[fields[0]] = float(fields[1])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: '{fields[1]}' is not a number") from None
    return scores


def merge_job_scores(job_dirs: List[Path]) -> Dict[str, Dict[str, float]]:
    """``{metric: {utt_id: value}}`` over all job directories (metric names without ``_spk1``)."""
    merged: Dict[str, Dict[str, float]] = {}
    for job_dir in job_dirs:
        for path in sorted(job_dir.glob("*_spk1")):
            metric = path.name[: -len("_spk1")]
            if metric == "wav":
                continue
            for utt, value in read_scores(path).items():
                if utt in merged.setdefault(metric, {}):
                    raise ValueError(f"{path}: utterance {utt} was scored by two jobs")
                merged[metric][utt] = value
    if not merged:
        raise ValueError(f"no <METRIC>_spk1 file in {', '.join(map(str, job_dirs))}")
    return merged


def mean_score(scores: Dict[str, float]) -> float:
    """Mean over utterances, ignoring NaN (ESPnet's enh_scoring never writes one; a NaN would poison the mean)."""
    values = [v for v in scores.values() if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("job_dirs", type=Path, nargs="+", help="enh_scoring output dirs")
    args = parser.parse_args(argv)
    try:
        merged = merge_job_scores(args.job_dirs)
    except (OSError, ValueError) as e:
        print(f"average_enh_scores.py: {e}", file=sys.stderr)
        return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for metric, scores in sorted(merged.items()):
        lines = "".join(f"{utt} {scores[utt]}\n" for utt in sorted(scores))
        with atomic_writer(args.output_dir / f"{metric}_spk1") as f:
            f.write(lines)
        with atomic_writer(args.output_dir / f"result_{metric.lower()}.txt") as f:
            f.write(f"{mean_score(scores):.4f}\n")
        print(f"{metric}: {mean_score(scores):.4f} ({len(scores)} utterances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
