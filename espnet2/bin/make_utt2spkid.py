#!/usr/bin/env python3
"""Write the integer speaker labels a speaker branch trains on.

From a Kaldi-style ``utt2spk`` this writes, atomically, into the data dir:

* ``spk2spkid``: ``<speaker> <id>``, ids 0..S-1 in sorted speaker order
  (written only when no ``--spk2spkid`` is given);
* ``utt2spkid``: ``<utt-id> <id>``, read by ESPnet's ``text_int`` loader as
  ``--train_data_path_and_name_and_type <dir>/utt2spkid,spk_labels,text_int``.

For another set (e.g. a validation set with the training speakers) pass the
training set's ``--spk2spkid`` so the ids agree; speakers missing from it get
-1 ("unknown": no speaker loss for that utterance). ``num_speakers`` in
``speaker_branch_conf`` is the number of lines of the training ``spk2spkid``.

Usage::

    python -m espnet2.bin.make_utt2spkid data/train
    python -m espnet2.bin.make_utt2spkid data/dev --spk2spkid data/train/spk2spkid
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet2.fileio.atomic_write import write_lines_atomic


def _read_pairs(path: Path) -> List[Tuple[str, str]]:
    pairs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<key> <value>', got {line.rstrip()!r}")
            pairs.append((parts[0], parts[1]))
    return pairs


def make_utt2spkid(data_dir: Path, spk2spkid: Optional[Path] = None) -> Dict[str, int]:
    """Write ``utt2spkid`` (and ``spk2spkid`` if not given); return the speaker ids."""
    utt2spk = _read_pairs(data_dir / "utt2spk")
    if spk2spkid is None:
        ids = {s: i for i, s in enumerate(sorted({s for _, s in utt2spk}))}
        write_lines_atomic(data_dir / "spk2spkid", [f"{s} {i}" for s, i in ids.items()])
    else:
        ids = {}
        for lineno, (s, i) in enumerate(_read_pairs(spk2spkid), 1):
            if not i.isdigit():
                raise ValueError(f"{spk2spkid}:{lineno}: speaker id must be an integer >= 0, got {i!r}")
            ids[s] = int(i)
    write_lines_atomic(data_dir / "utt2spkid", [f"{u} {ids.get(s, -1)}" for u, s in utt2spk])
    return ids


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="Kaldi-style data dir with utt2spk")
    parser.add_argument("--spk2spkid", type=Path, default=None, help="reuse these ids (e.g. the training set's)")
    args = parser.parse_args(cmd)
    ids = make_utt2spkid(args.data_dir, args.spk2spkid)
    print(f"{args.data_dir}/utt2spkid written: {len(ids)} speakers")


if __name__ == "__main__":
    main()
