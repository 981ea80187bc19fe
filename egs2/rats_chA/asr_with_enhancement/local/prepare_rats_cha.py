#!/usr/bin/env python3
"""Prepare RATS channel A as parallel noisy/clean 8 kHz Kaldi-style data dirs.

RATS channel A (LDC2015S02) carries Fisher English telephone speech re-transmitted over a
UHF narrow-band FM radio link; the Gradient-Remedy paper (Hu et al., ICASSP 2023) uses the
received signal as the noisy input and the source signal as the clean SE target.

Two input modes:

``pairs`` (the form the paper's authors consumed)::

    <corpus_dir>/<split>/noisy/<uttid>.wav   received channel A segment
    <corpus_dir>/<split>/clean/<uttid>.wav   time-aligned source segment (same length)
    <corpus_dir>/<split>/text                "<uttid> WORDS ..." per line

``ldc`` (best effort; built from the LDC release and the Fisher transcripts)::

    <corpus_dir>/data/<part>/audio/eng/src/<src>_eng_src.flac
    <corpus_dir>/data/<part>/audio/eng/A/<src>_<session>_eng_A.flac
    <corpus_dir>/data/<part>/sad/eng/{src,A}/<same stem>.tab
    <corpus_dir>/docs/source_file_info.tab      SRC_ID CORPUS LNG SRC_FILE MINUTES PART
    <fisher_dir>/**/fe_03_<call>.txt            "start end A|B: words" per line

  Each Fisher segment of the source side is cut from the source file (clean) and from the
  channel A file (noisy) after shifting by the src->A delay, which is estimated as the
  median start-time difference of the speech (``S``) regions of the two SAD tables.
  Segments that overlap an untransmitted region (``NT`` or ``RX``) of channel A, or that run
  past either file, are dropped. Audio is downsampled to 8 kHz and written as 16-bit wav.
  Assumptions that could not be checked against the real release (documented in RESULTS.md
  and the recipe's README): the SAD ``.tab`` columns are ``channel, file id, start, end,
  label, ...`` (tab separated, seconds), ``SRC_FILE`` names the Fisher call and side
  (e.g. ``fe_03_04165_B``), and LDC parts map to splits as train->train, dev-1->valid,
  dev-2->test (configurable).

Output, for each split, ``<output_dir>/<dir_prefix>_<split>/`` with sorted files:
``wav.scp`` (noisy), ``spk1.scp`` (clean), ``text_spk1`` and ``text`` (identical),
``utt2spk``, ``spk2utt``, ``utt2category`` (``SIMU``: every utterance has a parallel clean
reference, so the SE loss applies). Utterance ids ending in ``REAL`` or ``CLEAN`` are rejected
because the joint model treats those suffixes as "no clean reference". The speaker of an
utterance is its id up to the Fisher side (``fe_03_49740-04165-B`` for
``fe_03_49740-04165-B-006411-007486-A``); ids of another form are their own speaker.
Each data dir is written to a temporary sibling and renamed into place, so a failed run
never leaves a half-written dir behind.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

DIR_PREFIX = "rats_Ach_waveform_8k_joint_enh_asr"
SPLITS = ("train", "valid", "test")
LDC_PARTS = {"train": "train", "valid": "dev-1", "test": "dev-2"}
TARGET_FS = 8000
UNTRANSMITTED = ("NT", "RX")
SAD_LABELS = ("S", "NS", "NT", "RX")
# fe_03_<x>-<call>-<side>-<startcs>-<endcs>-<channel>: speaker = up to and including side.
RATS_ID = re.compile(r"^(fe_03_\d+-\d+-[AB])-\d+-\d+-[A-H]$")


class PrepError(ValueError):
    """A corpus file is missing, malformed or inconsistent; the message names it."""


@dataclass(frozen=True)
class Utterance:
    """One parallel pair: noisy/clean are absolute wav paths, words the transcript."""

    uttid: str
    noisy: Path
    clean: Path
    words: str


def speaker_of(uttid: str) -> str:
    """Speaker id: the id up to the Fisher side for RATS-style ids, else the id itself."""
    m = RATS_ID.match(uttid)
    return m.group(1) if m else uttid


def check_uttid(uttid: str, where: str) -> None:
    """Reject ids the data dir or the joint model cannot carry (whitespace, REAL/CLEAN)."""
    if not uttid or any(c.isspace() for c in uttid):
        raise PrepError(f"{where}: utterance id {uttid!r} is empty or has whitespace")
    if uttid.endswith(("REAL", "CLEAN")):
        raise PrepError(
            f"{where}: utterance id {uttid!r} ends in REAL/CLEAN, which the joint model "
            "reads as 'no clean reference' and would skip its SE loss; rename it"
        )


# --------------------------------------------------------------------------- output


def write_data_dir(utts: Sequence[Utterance], data_dir: Path) -> None:
    """Write one Kaldi-style data dir atomically (temp sibling dir + rename).

    Files are sorted by utterance id (``LC_ALL=C`` byte order, as Kaldi expects).
    """
    if not utts:
        raise PrepError(f"{data_dir}: no utterances to write")
    utts = sorted(utts, key=lambda u: u.uttid.encode())
    ids = [u.uttid for u in utts]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise PrepError(f"{data_dir}: duplicate utterance ids {dup[:5]}")
    spk2utt: Dict[str, List[str]] = {}
    for u in utts:
        spk2utt.setdefault(speaker_of(u.uttid), []).append(u.uttid)
    files = {
        "wav.scp": [f"{u.uttid} {u.noisy}" for u in utts],
        "spk1.scp": [f"{u.uttid} {u.clean}" for u in utts],
        "text_spk1": [f"{u.uttid} {u.words}" for u in utts],
        "text": [f"{u.uttid} {u.words}" for u in utts],
        "utt2spk": [f"{u.uttid} {speaker_of(u.uttid)}" for u in utts],
        "spk2utt": [
            f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items(), key=lambda kv: kv[0].encode())
        ],
        "utt2category": [f"{u.uttid} SIMU" for u in utts],
    }
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.tmp", dir=data_dir.parent))
    try:
        for name, lines in files.items():
            (tmp / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        old = data_dir.with_name(f".{data_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if data_dir.exists():
            os.replace(data_dir, old)
        os.replace(tmp, data_dir)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logging.info("wrote %s (%d utterances, %d speakers)", data_dir, len(utts), len(spk2utt))


# --------------------------------------------------------------------------- pairs mode


def read_text(path: Path) -> Dict[str, str]:
    """Read a Kaldi ``text`` file into {uttid: words}; every line needs id and words."""
    if not path.is_file():
        raise PrepError(f"{path}: transcript file not found")
    out: Dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise PrepError(f"{path}:{lineno}: utterance {parts[0]!r} has no transcript")
        uttid, words = parts[0], " ".join(parts[1].split())
        check_uttid(uttid, f"{path}:{lineno}")
        if uttid in out:
            raise PrepError(f"{path}:{lineno}: utterance {uttid!r} appears twice")
        out[uttid] = words
    if not out:
        raise PrepError(f"{path}: no transcripts")
    return out


def _wav_ids(folder: Path) -> Dict[str, Path]:
    if not folder.is_dir():
        raise PrepError(f"{folder}: directory not found")
    return {p.stem: p.resolve() for p in folder.iterdir() if p.suffix == ".wav"}


def _describe(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return ", ".join(ids[:5]) + more


def collect_pairs_split(split_dir: Path) -> List[Utterance]:
    """Match ``noisy/*.wav``, ``clean/*.wav`` and ``text`` of one split and check each pair.

    A pair must have equal sample rates, one channel each and equal lengths (the released
    samples are exactly sample-aligned), otherwise the SE target would be misaligned.
    """
    text_path = split_dir / "text"
    texts = read_text(text_path)
    noisy = _wav_ids(split_dir / "noisy")
    clean = _wav_ids(split_dir / "clean")
    problems = []
    for a_name, a, b_name, b in (
        ("noisy/", noisy, "clean/", clean),
        ("clean/", clean, "noisy/", noisy),
        ("text", texts, "noisy/", noisy),
        ("noisy/", noisy, "text", texts),
    ):
        missing = set(a) - set(b)
        if missing:
            problems.append(f"in {a_name} but not in {b_name}: {_describe(missing)}")
    if problems:
        raise PrepError(f"{split_dir}: mismatched utterances; " + "; ".join(problems))
    utts = []
    for uttid in sorted(texts):
        check_uttid(uttid, str(noisy[uttid]))
        n_info, c_info = sf.info(str(noisy[uttid])), sf.info(str(clean[uttid]))
        if (n_info.samplerate, n_info.channels, n_info.frames) != (
            c_info.samplerate,
            c_info.channels,
            c_info.frames,
        ):
            raise PrepError(
                f"{noisy[uttid]} ({n_info.samplerate} Hz, {n_info.channels} ch, "
                f"{n_info.frames} samples) does not match {clean[uttid]} "
                f"({c_info.samplerate} Hz, {c_info.channels} ch, {c_info.frames} samples)"
            )
        if n_info.channels != 1:
            raise PrepError(f"{noisy[uttid]}: {n_info.channels} channels, expected mono")
        utts.append(Utterance(uttid, noisy[uttid], clean[uttid], texts[uttid]))
    return utts


# --------------------------------------------------------------------------- ldc mode


@dataclass(frozen=True)
class SadRegion:
    """One row of a SAD table: [start, end) in seconds and its label (S, NS, NT, RX)."""

    start: float
    end: float
    label: str


def read_sad_tab(path: Path) -> List[SadRegion]:
    """Read a RATS SAD ``.tab`` (tab separated: channel, file id, start, end, label, ...)."""
    if not path.is_file():
        raise PrepError(f"{path}: SAD annotation not found")
    regions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        try:
            start, end, label = float(cols[2]), float(cols[3]), cols[4].strip()
        except (IndexError, ValueError):
            raise PrepError(f"{path}:{lineno}: expected 'channel<TAB>file<TAB>start<TAB>end<TAB>label'")
        if label not in SAD_LABELS or end < start:
            raise PrepError(f"{path}:{lineno}: bad region {start}-{end} label {label!r}")
        regions.append(SadRegion(start, end, label))
    return regions


def estimate_delay(src: Sequence[SadRegion], chan: Sequence[SadRegion], where: str) -> float:
    """Channel delay in seconds: median start difference of the k-th speech regions.

    LDC projected the source annotation onto each channel with a per-session shift, so the
    k-th ``S`` region of the channel is the k-th ``S`` region of the source, shifted.
    """
    s_src = [r.start for r in src if r.label == "S"]
    s_chan = [r.start for r in chan if r.label == "S"]
    if not s_src or len(s_src) != len(s_chan):
        raise PrepError(
            f"{where}: cannot pair speech regions ({len(s_src)} in src, {len(s_chan)} in A)"
        )
    return statistics.median(c - s for s, c in zip(s_src, s_chan))


def read_source_info(path: Path) -> Dict[str, Tuple[str, str]]:
    """Map RATS source id -> (Fisher call ``fe_03_NNNNN``, side) from source_file_info.tab."""
    if not path.is_file():
        raise PrepError(f"{path}: source file table not found")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cols = line.split("\t")
        if lineno == 1 and cols[0].strip().upper() == "SRC_ID":
            continue
        if len(cols) < 4:
            raise PrepError(f"{path}:{lineno}: expected SRC_ID CORPUS LNG SRC_FILE ...")
        if cols[2].strip() != "eng":
            continue
        m = re.search(r"(fe_03_\d+)\D*?[_.:-]([AB])\b", cols[3])
        if not m:
            raise PrepError(f"{path}:{lineno}: SRC_FILE {cols[3]!r} names no Fisher call and side")
        out[cols[0].strip()] = (m.group(1), m.group(2))
    return out


def normalize_fisher(words: str) -> str:
    """Drop non-speech ``[...]`` tags and the ``((``/``))`` uncertainty marks; squeeze spaces."""
    words = re.sub(r"\[[^\]]*\]", " ", words)
    words = words.replace("((", " ").replace("))", " ")
    return " ".join(words.split())


def read_fisher(path: Path, side: str) -> List[Tuple[float, float, str]]:
    """Segments ``(start, end, words)`` of one side of a Fisher ``fe_03_*.txt`` transcript."""
    segs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^\s*([\d.]+)\s+([\d.]+)\s+([AB])\s*:(.*)$", line)
        if not m:
            raise PrepError(f"{path}:{lineno}: expected 'start end A|B: words'")
        if m.group(3) == side:
            segs.append((float(m.group(1)), float(m.group(2)), normalize_fisher(m.group(4))))
    return segs


def _load_8k(path: Path) -> np.ndarray:
    audio, fs = sf.read(str(path), dtype="float32", always_2d=False)
    if audio.ndim != 1:
        raise PrepError(f"{path}: expected mono audio")
    if fs == TARGET_FS:
        return audio
    g = math.gcd(fs, TARGET_FS)
    return resample_poly(audio, TARGET_FS // g, fs // g).astype(np.float32)


def collect_ldc_split(
    corpus_dir: Path,
    part: str,
    split: str,
    fisher_files: Mapping[str, Path],
    src_info: Mapping[str, Tuple[str, str]],
    audio_dir: Path,
) -> List[Utterance]:
    """Cut the Fisher segments of one LDC part into 8 kHz noisy/clean wav pairs."""
    chan_dir = corpus_dir / "data" / part / "audio" / "eng" / "A"
    if not chan_dir.is_dir():
        raise PrepError(f"{chan_dir}: channel A audio directory not found")
    out_dir = audio_dir / split
    utts = []
    for a_path in sorted(chan_dir.glob("*_eng_A.flac")):
        src_id = a_path.name.split("_")[0]
        if src_id not in src_info:
            raise PrepError(f"{a_path}: source {src_id} is not an English entry of source_file_info.tab")
        call, side = src_info[src_id]
        if call not in fisher_files:
            raise PrepError(f"{a_path}: Fisher transcript {call}.txt not found")
        src_path = a_path.parent.parent / "src" / f"{src_id}_eng_src.flac"
        sad = corpus_dir / "data" / part / "sad" / "eng"
        src_sad = read_sad_tab(sad / "src" / f"{src_id}_eng_src.tab")
        a_sad = read_sad_tab(sad / "A" / (a_path.stem + ".tab"))
        delay = estimate_delay(src_sad, a_sad, str(a_path))
        clean_all, noisy_all = _load_8k(src_path), _load_8k(a_path)
        gaps = [r for r in a_sad if r.label in UNTRANSMITTED]
        for start, end, words in read_fisher(fisher_files[call], side):
            a_start, a_end = start + delay, end + delay
            if not words or any(g.start < a_end and a_start < g.end for g in gaps):
                continue
            c0, n0 = round(start * TARGET_FS), round(a_start * TARGET_FS)
            length = round((end - start) * TARGET_FS)
            if c0 < 0 or n0 < 0 or c0 + length > len(clean_all) or n0 + length > len(noisy_all):
                continue
            # fe_03_<src id>-<call>-<side>-<start cs>-<end cs>-A, the authors' id form.
            uttid = f"fe_03_{src_id}-{call[6:]}-{side}-{round(start * 100):06d}-{round(end * 100):06d}-A"
            paths = []
            for kind, sig, s0 in (("noisy", noisy_all, n0), ("clean", clean_all, c0)):
                p = out_dir / kind / f"{uttid}.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_name(p.name + ".tmp.wav")
                sf.write(str(tmp), sig[s0 : s0 + length], TARGET_FS, subtype="PCM_16")
                os.replace(tmp, p)
                paths.append(p.resolve())
            utts.append(Utterance(uttid, paths[0], paths[1], words))
    return utts


# --------------------------------------------------------------------------- entry point


def prepare_rats_cha(
    corpus_dir: Path | str,
    output_dir: Path | str,
    *,
    mode: str = "pairs",
    fisher_dir: Optional[Path | str] = None,
    audio_dir: Optional[Path | str] = None,
    ldc_parts: Optional[Mapping[str, str]] = None,
    dir_prefix: str = DIR_PREFIX,
) -> Dict[str, Path]:
    """Prepare ``<output_dir>/<dir_prefix>_{train,valid,test}``; returns {split: data dir}.

    Args:
        corpus_dir: the pairs root (mode ``pairs``) or the LDC2015S02 root (mode ``ldc``).
        output_dir: where the data dirs go (a recipe's ``data/``).
        mode: ``pairs`` or ``ldc`` (see the module docstring).
        fisher_dir: Fisher English transcripts root (``ldc`` only), searched recursively.
        audio_dir: where ``ldc`` writes the cut 8 kHz wavs (default ``<output_dir>/rats_cha_8k``).
        ldc_parts: split -> LDC part (default train->train, valid->dev-1, test->dev-2).
        dir_prefix: data dir name prefix (default: the paper's authors' names).
    """
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    if not corpus_dir.is_dir():
        raise PrepError(f"{corpus_dir}: corpus directory not found")
    per_split: Dict[str, List[Utterance]] = {}
    if mode == "pairs":
        for split in SPLITS:
            per_split[split] = collect_pairs_split(corpus_dir / split)
    elif mode == "ldc":
        if fisher_dir is None or not Path(fisher_dir).is_dir():
            raise PrepError(f"{fisher_dir}: Fisher transcript directory not found (--fisher_dir)")
        fisher_files = {p.stem: p for p in Path(fisher_dir).rglob("fe_03_*.txt")}
        src_info = read_source_info(corpus_dir / "docs" / "source_file_info.tab")
        audio_dir = Path(audio_dir) if audio_dir else output_dir / "rats_cha_8k"
        parts = dict(LDC_PARTS, **(ldc_parts or {}))
        for split in SPLITS:
            per_split[split] = collect_ldc_split(
                corpus_dir, parts[split], split, fisher_files, src_info, audio_dir
            )
    else:
        raise PrepError(f"unknown mode {mode!r}; expected 'pairs' or 'ldc'")
    seen: Dict[str, str] = {}
    for split, utts in per_split.items():
        for u in utts:
            if u.uttid in seen:
                raise PrepError(f"utterance {u.uttid} is in both {seen[u.uttid]} and {split}")
            seen[u.uttid] = split
    out = {}
    for split, utts in per_split.items():
        out[split] = output_dir / f"{dir_prefix}_{split}"
        write_data_dir(utts, out[split])
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus_dir", required=True, type=Path, help="pairs root or LDC2015S02 root")
    p.add_argument("--output_dir", required=True, type=Path, help="recipe data/ directory")
    p.add_argument("--mode", choices=("pairs", "ldc"), default="pairs")
    p.add_argument("--fisher_dir", type=Path, default=None, help="Fisher transcripts (ldc mode)")
    p.add_argument("--audio_dir", type=Path, default=None, help="cut wavs (ldc mode)")
    p.add_argument(
        "--ldc_parts",
        default="",
        help="split=part overrides for ldc mode, e.g. 'valid=dev-2,test=dev-1'",
    )
    p.add_argument("--dir_prefix", default=DIR_PREFIX)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(argv)
    parts = {}
    for item in filter(None, args.ldc_parts.split(",")):
        split, _, part = item.partition("=")
        if split not in SPLITS or not part:
            raise SystemExit(f"--ldc_parts: bad item {item!r}; expected <train|valid|test>=<part>")
        parts[split] = part
    try:
        prepare_rats_cha(
            args.corpus_dir,
            args.output_dir,
            mode=args.mode,
            fisher_dir=args.fisher_dir,
            audio_dir=args.audio_dir,
            ldc_parts=parts,
            dir_prefix=args.dir_prefix,
        )
    except PrepError as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
