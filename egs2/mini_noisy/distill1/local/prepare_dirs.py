#!/usr/bin/env python3
"""Data directories of the distillation recipe, made from the mini corpus's Kaldi dirs.

* ``clean``: the distillation data. ``wav.scp`` = the clean references (``spk1.scp``) of
  the utterances that have an exact one (category SIMU or CLEAN; REAL utterances only
  have a close-talk or dummy reference), plus ``speech_shape`` (samples).
* ``asr``: the downstream ASR data. ``wav.scp`` = the noisy signals, ``text`` = the
  transcripts (``text_spk1``), ``speech_shape`` (samples) and ``text_shape.char``
  (characters), as ESPnet's sequence iterator reads them.
* ``tokens``: a character token list (``<blank>``, ``<unk>``, the characters of the
  given transcripts with ``<space>``, ``<sos/eos>``), ESPnet's ``token_type char`` layout.

Every file is written to a temporary name and renamed into place.

    prepare_dirs.py clean --src data/tr05_multi_noisy --dst data/distill_train
    prepare_dirs.py asr --src data/tr05_multi_noisy --dst data/asr_train
    prepare_dirs.py tokens --text data/asr_train/text --out data/token_list/char/tokens.txt
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import soundfile

from espnet2.fileio.atomic_write import write_lines_atomic

EXACT_REFERENCE = ("SIMU", "CLEAN")


def read_table(path: Path) -> Dict[str, str]:
    """``<key> <value...>`` lines -> dict; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    table = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if key in table:
            raise ValueError(f"{path}:{number}: duplicate key '{key}'")
        table[key] = value.strip()
    return table


def num_samples(utt: str, path: str) -> int:
    try:
        return soundfile.info(path).frames
    except RuntimeError as e:
        raise ValueError(f"utterance {utt}: cannot read {path} ({e})") from e


def prepare_clean(src: Path, dst: Path) -> int:
    refs = read_table(src / "spk1.scp")
    categories = read_table(src / "utt2category")
    utts = sorted(u for u, c in categories.items() if c in EXACT_REFERENCE)
    missing = [u for u in utts if u not in refs]
    if missing:
        raise ValueError(f"{src}/spk1.scp has no reference for {missing[0]} ({len(missing)} missing)")
    if not utts:
        raise ValueError(f"{src}: no utterance with an exact clean reference ({EXACT_REFERENCE})")
    write_lines_atomic(dst / "speech_shape", [f"{u} {num_samples(u, refs[u])}" for u in utts])
    write_lines_atomic(dst / "wav.scp", [f"{u} {refs[u]}" for u in utts])
    return len(utts)


def prepare_asr(src: Path, dst: Path) -> int:
    wavs = read_table(src / "wav.scp")
    texts = read_table(src / "text_spk1")
    if set(wavs) != set(texts):
        odd = sorted(set(wavs) ^ set(texts))[0]
        raise ValueError(f"{src}: wav.scp and text_spk1 differ in utterances, e.g. '{odd}'")
    utts = sorted(wavs)
    write_lines_atomic(dst / "speech_shape", [f"{u} {num_samples(u, wavs[u])}" for u in utts])
    write_lines_atomic(dst / "text_shape.char", [f"{u} {len(texts[u])}" for u in utts])
    write_lines_atomic(dst / "text", [f"{u} {texts[u]}" for u in utts])
    write_lines_atomic(dst / "wav.scp", [f"{u} {wavs[u]}" for u in utts])
    return len(utts)


def write_tokens(text: Path, out: Path) -> int:
    chars = sorted({c for line in read_table(text).values() for c in line} - {" "})
    write_lines_atomic(out, ["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"])
    return len(chars) + 4


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("clean", "asr"):
        p = sub.add_parser(name)
        p.add_argument("--src", type=Path, required=True)
        p.add_argument("--dst", type=Path, required=True)
    p = sub.add_parser("tokens")
    p.add_argument("--text", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "clean":
            print(f"{args.dst}: {prepare_clean(args.src, args.dst)} clean utterances")
        elif args.command == "asr":
            print(f"{args.dst}: {prepare_asr(args.src, args.dst)} utterances")
        else:
            print(f"{args.out}: {write_tokens(args.text, args.out)} tokens")
    except (OSError, ValueError) as e:
        sys.exit(f"prepare_dirs.py {args.command}: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
