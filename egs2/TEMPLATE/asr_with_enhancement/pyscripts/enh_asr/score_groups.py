#!/usr/bin/env python3
"""Score subsets of a test set: WER per SNR, per noise type, ... (stage 14 of enh_asr.sh).

After ``pyscripts/scoring/score_asr.py`` has scored a whole test set into ``<score_dir>`` (``ref.trn``,
``hyp.trn``, ``result.txt``), this scores the utterances of each value of each group file ``utt2<group>``
(``<utt-id> <value>`` lines, e.g. ``utt2snr``: ``..._SIMU 5dB``) on their own, with the same scorer, into
``<score_dir>/by_<group>/<value>/``. Utterances of the test set missing from a group file are an error (a
per-group table that silently drops utterances would not add up to the whole set).
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
if str(TEMPLATE_DIR) not in sys.path:
    sys.path.insert(0, str(TEMPLATE_DIR))

from pyscripts.scoring.score_asr import ScoringError, read_trn, score  # noqa: E402
from pyscripts.utils.table_file import TableError, read_table, write_lines_atomic  # noqa: E402

SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def group_of(path: Path) -> str:
    """``utt2snr`` -> ``snr``."""
    return path.name[len("utt2"):] if path.name.startswith("utt2") else path.name


def split_by_group(
    trn: List[Tuple[str, List[str]]], utt2spk: Dict[str, str], utt2value: Dict[str, str], source: str
) -> Dict[str, List[Tuple[str, List[str]]]]:
    """The ``trn`` items (ids ``<spk>-<utt>``) of each group value, in file order."""
    id2utt = {f"{spk}-{utt}": utt for utt, spk in utt2spk.items()}
    out: Dict[str, List[Tuple[str, List[str]]]] = {}
    for uid, tokens in trn:
        utt = id2utt.get(uid)
        if utt is None:
            raise ScoringError(f"trn id '{uid}' is not '<spk>-<utt>' of utt2spk")
        if utt not in utt2value:
            raise ScoringError(f"{source}: utterance '{utt}' has no value")
        out.setdefault(utt2value[utt], []).append((uid, tokens))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--score_dir", type=Path, required=True, help="score_{wer,cer,ter} of a test set")
    parser.add_argument("--utt2spk", type=Path, required=True, help="the test set's utt2spk")
    parser.add_argument("groups", type=Path, nargs="+", help="utt2<group> files")
    args = parser.parse_args(argv)
    try:
        utt2spk = {e.key: e.value.split()[0] for e in read_table(str(args.utt2spk))}
        refs = read_trn(str(args.score_dir / "ref.trn"))
        hyps = read_trn(str(args.score_dir / "hyp.trn"))
        for group_file in args.groups:
            utt2value = {e.key: e.value.split()[0] for e in read_table(str(group_file))}
            ref_groups = split_by_group(refs, utt2spk, utt2value, str(group_file))
            hyp_groups = split_by_group(hyps, utt2spk, utt2value, str(group_file))
            for value in sorted(ref_groups):
                if not SAFE_VALUE.match(value):
                    raise ScoringError(f"{group_file}: value '{value}' cannot name a directory")
                out = args.score_dir / f"by_{group_of(group_file)}" / value
                out.mkdir(parents=True, exist_ok=True)
                for name, items in (("ref.trn", ref_groups[value]), ("hyp.trn", hyp_groups.get(value, []))):
                    write_lines_atomic(out / name, [f"{' '.join(t)}\t({uid})" for uid, t in items])
                cells = score(str(out / "ref.trn"), str(out / "hyp.trn"), str(out))
                print(f"{group_of(group_file)}={value}: |" + "|".join(cells) + "|")
    except (ScoringError, TableError, OSError) as e:
        print(f"score_groups.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
