#!/usr/bin/env python3
"""Score subsets of a test set: WER per SNR, per noise type, ... (stage 14 of enh_asr.sh).

After ``pyscripts/scoring/score_asr.py`` has scored a whole test set into ``<score_dir>`` (``ref.trn``,
``hyp.trn``, ``result.txt``), this scores the utterances of each value of a grouping on their own, with the
same scorer, into ``<score_dir>/by_<name>/<value>/``.

A grouping is ``[<name>=]<file>[:<field>]``: ``<file>`` has ``<utt-id> <value>`` lines (e.g. the mini
corpus's ``utt2condition``: ``..._SIMU CAF_0dB``); ``:<field>`` keeps the field-th ``_``-separated part of
the value (``utt2condition:1`` -> ``CAF``, the noise type; ``:2`` -> ``0dB``, the SNR); the name defaults to
the file name without ``utt2``. Utterances missing from a file are an error (per-group tables that
silently drop utterances would not add up to the whole set).
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


class Grouping:
    """A parsed ``[<name>=]<file>[:<field>]`` specification."""

    def __init__(self, spec: str):
        name, sep, rest = spec.partition("=")
        if not sep:
            name, rest = "", spec
        path, sep, field = rest.rpartition(":")
        if not sep or not field.isdigit():
            path, field = rest, ""
        self.path = Path(path)
        self.field = int(field) if field else None
        if self.field == 0:
            raise ScoringError(f"grouping '{spec}': fields count from 1")
        default = self.path.name[len("utt2"):] if self.path.name.startswith("utt2") else self.path.name
        self.name = name or (default if self.field is None else f"{default}{self.field}")

    def read(self) -> Dict[str, str]:
        """``{utt_id: group value}``."""
        out = {}
        for e in read_table(str(self.path)):
            value = e.value.split()[0]
            if self.field is not None:
                parts = value.split("_")
                if len(parts) < self.field:
                    raise ScoringError(f"{self.path}:{e.lineno}: value '{value}' has no _-separated field {self.field}")
                value = parts[self.field - 1]
            out[e.key] = value
        return out


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
    parser.add_argument("groups", nargs="+", help="groupings: [<name>=]<file>[:<field>]")
    args = parser.parse_args(argv)
    try:
        utt2spk = {e.key: e.value.split()[0] for e in read_table(str(args.utt2spk))}
        refs = read_trn(str(args.score_dir / "ref.trn"))
        hyps = read_trn(str(args.score_dir / "hyp.trn"))
        for grouping in map(Grouping, args.groups):
            utt2value = grouping.read()
            ref_groups = split_by_group(refs, utt2spk, utt2value, str(grouping.path))
            hyp_groups = split_by_group(hyps, utt2spk, utt2value, str(grouping.path))
            for value in sorted(ref_groups):
                if not SAFE_VALUE.match(value):
                    raise ScoringError(f"{grouping.path}: value '{value}' cannot name a directory")
                out = args.score_dir / f"by_{grouping.name}" / value
                out.mkdir(parents=True, exist_ok=True)
                for name, items in (("ref.trn", ref_groups[value]), ("hyp.trn", hyp_groups.get(value, []))):
                    write_lines_atomic(out / name, [f"{' '.join(t)}\t({uid})" for uid, t in items])
                cells = score(str(out / "ref.trn"), str(out / "hyp.trn"), str(out))
                print(f"{grouping.name}={value}: |" + "|".join(cells) + "|")
    except (ScoringError, TableError, OSError) as e:
        print(f"score_groups.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
