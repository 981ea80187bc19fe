#!/usr/bin/env python3
"""Score ASR output like ESPnet's asr.sh scoring stage (sclite), with a built-in fallback.

Call form::

    score_asr.py --ref data/test/text --hyp exp/m/decode/test/text --token-type word|char|bpe
                 --out-dir exp/m/decode/test/score_wer [--utt2spk data/test/utt2spk]
                 [--bpemodel bpe.model] [--nlsyms nlsyms.txt] [--cleaner none]
                 [--scorer auto|sclite|builtin]

``--ref``/``--hyp`` are Kaldi text files (``<utt> <text>``), tokenised with ESPnet's tokenizers
as asr.sh does: ``word`` (WER) splits on whitespace; ``char`` (CER) splits into characters with
each space written as the token ``<space>`` (so a missing space is an error, as in ESPnet's CER);
``bpe`` (TER) applies the sentencepiece model. Non-linguistic symbols (``--nlsyms``) are removed
from both sides; ``--cleaner`` is applied to the reference only (ESPnet does not clean hyps).
A file ending in ``.trn`` is taken as already tokenised ``tokens (spk-utt)`` lines instead.

Writes into ``--out-dir``: ``ref.trn`` and ``hyp.trn`` (``tokens (spk-utt)``; the speaker from
``--utt2spk``, else ``all``) and ``result.txt``: sclite's report
(``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout``) when sclite is found (on PATH or
in /usr/lib/sctk/bin) and ``--scorer`` is not ``builtin``; otherwise the same report layout from
:mod:`pyscripts.scoring.sclite_align`: sclite's percentage table per speaker with the ``Sum/Avg``
row (without sclite's Mean/S.D./Median rows and count table), then the per-utterance alignments
(``id:``, ``Scores: (#C #S #D #I)``, ``REF:``, ``HYP:``, ``Eval:``). The counts are sclite's.
Every hypothesis utterance must be in the reference and vice versa (an error names the first
one that is not). Prints the ``Sum/Avg`` row.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
if str(TEMPLATE_DIR) not in sys.path:
    sys.path.insert(0, str(TEMPLATE_DIR))

from pyscripts.scoring.sclite_align import Alignment, Counts, align  # noqa: E402
from pyscripts.utils.table_file import TableError, read_table, write_lines_atomic  # noqa: E402

SCLITE_DIRS = ("/usr/lib/sctk/bin",)
_TRN_ID = re.compile(r"^(.*?)\s*\(([^()\s]+)\)\s*$")


class ScoringError(Exception):
    """Bad input to the scorer; the message names the file, line or utterance."""


def find_sclite() -> str | None:
    """Path of sclite: on PATH, else in Debian's /usr/lib/sctk/bin; None if absent."""
    found = shutil.which("sclite")
    if found:
        return found
    for d in SCLITE_DIRS:
        candidate = Path(d) / "sclite"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def read_trn(path: str) -> list[tuple[str, list[str]]]:
    """``[(id, tokens)]`` from a ``tokens (id)`` file, in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            match = _TRN_ID.match(line.rstrip("\n"))
            if not match:
                raise ScoringError(
                    f"{path}:{lineno}: expected 'tokens (id)', got '{line.rstrip()}'"
                )
            out.append((match.group(2), match.group(1).split()))
    return out


def make_tokenizer(token_type: str, bpemodel: str | None, nlsyms: str | None):
    """ESPnet's tokenizer for ``token_type`` (``text2tokens(str) -> list[str]``)."""
    if token_type == "word":
        from espnet2.text.word_tokenizer import WordTokenizer

        return WordTokenizer(
            non_linguistic_symbols=nlsyms, remove_non_linguistic_symbols=nlsyms is not None
        )
    if token_type == "char":
        from espnet2.text.char_tokenizer import CharTokenizer

        return CharTokenizer(
            non_linguistic_symbols=nlsyms, remove_non_linguistic_symbols=nlsyms is not None
        )
    if token_type == "bpe":
        if not bpemodel:
            raise ScoringError("--token-type bpe needs --bpemodel")
        from espnet2.text.sentencepiece_tokenizer import SentencepiecesTokenizer

        return SentencepiecesTokenizer(bpemodel)
    raise ScoringError(f"--token-type must be word, char or bpe, got '{token_type}'")


def load_side(
    path: str, tokenizer, utt2spk: dict[str, str] | None, cleaner=None
) -> list[tuple[str, list[str]]]:
    """``[(spk-utt, tokens)]`` from a Kaldi text file (tokenised) or a .trn file (as is)."""
    if path.endswith(".trn"):
        return read_trn(path)
    out = []
    for e in read_table(path, need_value=False):
        text = cleaner(e.value) if cleaner else e.value
        spk = "all" if utt2spk is None else utt2spk.get(e.key)
        if spk is None:
            raise ScoringError(f"{path}:{e.lineno}: utterance '{e.key}' is not in --utt2spk")
        out.append((f"{spk}-{e.key}", tokenizer.text2tokens(text)))
    return out


def write_trn(path: Path, items: Sequence[tuple[str, list[str]]]) -> None:
    write_lines_atomic(path, [f"{' '.join(tokens)}\t({uid})" for uid, tokens in items])


def speaker_of(uid: str) -> str:
    """sclite ``-i rm``: the speaker is the id up to the first ``-``."""
    return uid.split("-", 1)[0]


def builtin_report(
    refs: dict[str, list[str]], hyps: dict[str, list[str]], title: str
) -> tuple[str, Counts]:
    """The sclite-style report text and the total counts."""
    per_spk: dict[str, Counts] = {}
    blocks: dict[str, list[str]] = {}
    for uid in sorted(refs):
        ali = align(refs[uid], hyps[uid])
        c = ali.counts()
        spk = speaker_of(uid)
        per_spk.setdefault(spk, Counts())
        per_spk[spk] += c
        blocks.setdefault(spk, []).append(alignment_block(uid, ali, c))
    total = Counts()
    for c in per_spk.values():
        total += c
    width = max([len(s) for s in per_spk] + [7])
    rule = f"|{'-' * (width + 1)}+-------------+-----------------------------------------|"
    lines = [
        "SYSTEM SUMMARY PERCENTAGES by SPEAKER",
        "",
        f"| {title}",
        f"| {'SPKR':<{width}}| # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |",
        rule,
    ]
    for spk in sorted(per_spk):
        lines.append(table_row(spk, per_spk[spk], width))
        lines.append(rule)
    lines[-1] = "|" + "=" * (len(rule) - 2) + "|"
    lines.append(table_row("Sum/Avg", total, width))
    lines += ["", "", "DUMP OF SYSTEM ALIGNMENT STRUCTURE", "", f"System name:   {title}", ""]
    for spk in sorted(blocks):
        lines.append(f"Speaker sentences: {spk}   #utts: {len(blocks[spk])}")
        for block in blocks[spk]:
            lines += block
    return "\n".join(lines) + "\n", total


def table_row(name: str, c: Counts, width: int) -> str:
    """One sclite table row; rates over zero reference words show the counts with ``*``."""
    if c.ref_words == 0 and name != "Sum/Avg":
        cells = [f"{v}*" for v in (c.corr, c.sub, c.dels, c.ins, c.errors)]
        cells.append(f"{100.0 * c.sentence_errors / c.sentences:.1f}")
    else:
        cells = [f"{v:.1f}" for v in c.percentages()]
    body = f"{cells[0]:>5}" + "".join(f"{x:>7}" for x in cells[1:])
    return f"| {name:<{width}}|{c.sentences:5d}{c.ref_words:7d} |{body} |"


def alignment_block(uid: str, ali: Alignment, c: Counts) -> list[str]:
    """sclite's per-utterance alignment lines (errors in upper case, gaps as ``***``)."""
    ref_row, hyp_row, eval_row = [], [], []
    for op, r, h in ali.ops:
        r_text = "*" * len(h or "") if r is None else (r if op == "C" else r.upper())
        h_text = "*" * len(r or "") if h is None else (h if op == "C" else h.upper())
        w = max(len(r_text), len(h_text))
        ref_row.append(r_text.ljust(w))
        hyp_row.append(h_text.ljust(w))
        eval_row.append(("" if op == "C" else op).ljust(w))
    return [
        f"id: ({uid})",
        f"Scores: (#C #S #D #I) {c.corr} {c.sub} {c.dels} {c.ins}",
        "REF:  " + " ".join(ref_row),
        "HYP:  " + " ".join(hyp_row),
        "Eval: " + " ".join(eval_row),
        "",
    ]


def check_same_ids(refs: dict, hyps: dict, ref_path: str, hyp_path: str) -> None:
    for uid in hyps:
        if uid not in refs:
            raise ScoringError(f"{hyp_path}: utterance '{uid}' is not in the reference {ref_path}")
    for uid in refs:
        if uid not in hyps:
            raise ScoringError(f"{hyp_path}: no hypothesis for utterance '{uid}' of {ref_path}")


def sum_avg_row(result_text: str) -> list[str]:
    """The cells of the ``Sum/Avg`` row: [Snt, Wrd, Corr, Sub, Del, Ins, Err, S.Err]."""
    for line in result_text.splitlines():
        if "Sum/Avg" in line:
            cells = [c for c in line.split("|") if c.strip()]
            return cells[1].split() + cells[2].split()
    raise ScoringError("no 'Sum/Avg' row in the scoring result")


def score(
    ref: str,
    hyp: str,
    out_dir: str,
    token_type: str = "word",
    utt2spk: str | None = None,
    bpemodel: str | None = None,
    nlsyms: str | None = None,
    cleaner: str = "none",
    scorer: str = "auto",
) -> list[str]:
    """Score ``hyp`` against ``ref`` into ``out_dir``; return the Sum/Avg cells."""
    out = Path(out_dir)
    spk_map = None
    if utt2spk:
        spk_map = {e.key: e.value.split()[0] for e in read_table(utt2spk)}
    needs_tokenizer = not (ref.endswith(".trn") and hyp.endswith(".trn"))
    tokenizer = make_tokenizer(token_type, bpemodel, nlsyms) if needs_tokenizer else None
    clean = None
    if cleaner != "none":
        from espnet2.text.cleaner import TextCleaner

        clean = TextCleaner(cleaner)
    ref_items = load_side(ref, tokenizer, spk_map, clean)
    hyp_items = load_side(hyp, tokenizer, spk_map)
    refs, hyps = dict(ref_items), dict(hyp_items)
    check_same_ids(refs, hyps, ref, hyp)
    write_trn(out / "ref.trn", ref_items)
    write_trn(out / "hyp.trn", hyp_items)

    sclite = None if scorer == "builtin" else find_sclite()
    if scorer == "sclite" and sclite is None:
        raise ScoringError("--scorer sclite: sclite not found (PATH, /usr/lib/sctk/bin)")
    if sclite:
        cmd = [sclite, "-r", str(out / "ref.trn"), "trn", "-h", str(out / "hyp.trn"), "trn",
               "-i", "rm", "-o", "all", "stdout"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or "Sum/Avg" not in proc.stdout:
            tail = proc.stderr.strip()[-500:]
            raise ScoringError(f"sclite failed (exit {proc.returncode}): {tail}")
        text = proc.stdout
    else:
        text, _ = builtin_report(refs, hyps, "hyp.trn")
    write_lines_atomic(out / "result.txt", text.splitlines())
    return sum_avg_row(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="reference: Kaldi text or .trn")
    parser.add_argument("--hyp", required=True, help="hypothesis: Kaldi text or .trn")
    parser.add_argument(
        "--out-dir", "--out_dir", required=True, help="e.g. <decode>/<test>/score_wer"
    )
    parser.add_argument(
        "--token-type", "--token_type", default="word", choices=["word", "char", "bpe"]
    )
    parser.add_argument("--utt2spk", default=None, help="utt2spk for per-speaker rows")
    parser.add_argument("--bpemodel", default=None, help="sentencepiece model (bpe)")
    parser.add_argument("--nlsyms", default=None, help="non-linguistic symbols to remove")
    parser.add_argument("--cleaner", default="none", help="ESPnet text cleaner for the reference")
    parser.add_argument("--scorer", default="auto", choices=["auto", "sclite", "builtin"])
    args = parser.parse_args(argv)
    try:
        cells = score(args.ref, args.hyp, args.out_dir, args.token_type, args.utt2spk,
                      args.bpemodel, args.nlsyms, args.cleaner, args.scorer)  # fmt: skip
    except (ScoringError, TableError, OSError) as exc:
        print(f"score_asr.py: {exc}", file=sys.stderr)
        return 1
    print("|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|" + "|".join(cells) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
