#!/usr/bin/env python3
"""Train a sentencepiece model on the text of a Kaldi-style transcript (stage 5 of enh_asr.sh).

Input: ``<utt-id> <transcript>`` lines (e.g. ``text_spk1``); the utterance ids are dropped. Output:
``<model_prefix>.model`` and ``<model_prefix>.vocab``, written next to each other under temporary names and
renamed when complete.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List


def read_sentences(path: Path) -> List[str]:
    """The transcripts of ``path``; an empty transcript is an error naming its line."""
    sentences = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip("\n").split(maxsplit=1)
            if len(fields) < 2:
                raise ValueError(f"{path}:{lineno}: expected '<utt-id> <transcript>', got {line!r}")
            sentences.append(fields[1])
    if not sentences:
        raise ValueError(f"{path}: no transcript")
    return sentences


def train_bpe(
    sentences: List[str],
    model_prefix: Path,
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    input_sentence_size: int,
    user_defined_symbols: str,
) -> None:
    """Train ``model_prefix``.{model,vocab} with sentencepiece (no sos/eos/pad pieces, as ESPnet)."""
    import sentencepiece as spm

    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_prefix.parent) as tmp:
        text = Path(tmp) / "input.txt"
        text.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        tmp_prefix = Path(tmp) / model_prefix.name
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=str(tmp_prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            user_defined_symbols=user_defined_symbols or [],
            unk_surface="<unk>",
            bos_id=-1,
            eos_id=-1,
            minloglevel=1,
        )
        for ext in ("vocab", "model"):  # the model last: stage 5 trusts the .model file
            os.replace(f"{tmp_prefix}.{ext}", f"{model_prefix}.{ext}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True, help="Kaldi-style transcript file")
    parser.add_argument("--model_prefix", type=Path, required=True)
    parser.add_argument("--vocab_size", type=int, required=True)
    parser.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    parser.add_argument("--character_coverage", type=float, default=1.0)
    parser.add_argument("--input_sentence_size", type=int, default=100000000)
    parser.add_argument("--user_defined_symbols", default="", help="comma-separated symbols")
    args = parser.parse_args(argv)
    try:
        sentences = read_sentences(args.input)
    except (OSError, ValueError) as e:
        print(f"train_bpe.py: {e}", file=sys.stderr)
        return 1
    try:
        train_bpe(
            sentences,
            args.model_prefix,
            args.vocab_size,
            args.model_type,
            args.character_coverage,
            args.input_sentence_size,
            args.user_defined_symbols,
        )
    except RuntimeError as e:  # sentencepiece's errors, e.g. a vocabulary smaller than the character set
        print(f"train_bpe.py: {args.input}: sentencepiece: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
