#!/usr/bin/env python3
"""Prepare CHiME-4 (1-channel track + multi-condition training) as Kaldi-style data dirs.

``prepare_chime4(corpus_dir, output_dir, ...)`` reads the CHiME-4 package tree (the directory
that the package unpacks to, literally called ``CHiME3``; ESPnet's ``db.sh`` names it
``CHIME4``) and writes the data dirs ESPnet's joint SE+ASR recipe (``egs2/chime4/enh_asr1``)
trains and tests on. It is a pure function of the tree: standard library only, no audio is
read, and nothing outside ``output_dir`` is written.

What it reads (``$C`` = ``corpus_dir``)::

    $C/data/audio/16kHz/isolated/{tr05,dt05,et05}_{bus,caf,ped,str}_{real,simu}/
        <SPK>_<WSJID>_<ENV>.CH<n>.wav         n = 0 (close-talk, real only) .. 6
    $C/data/audio/16kHz/isolated/tr05_org/<SPK>_<WSJID>_ORG.wav          (WSJ0 originals)
    $C/data/audio/16kHz/isolated/{dt05,et05}_bth/<SPK>_<WSJID>_BTH.CH0.wav (booth)
    $C/data/audio/16kHz/isolated_1ch_track/{dt05,et05}_<env>_{real,simu}/<SPK>_<WSJID>_<ENV>.wav
    $C/data/annotations/dt05_{real,simu}_1ch_track.list     lines: dt05_bus_real/<stem>.CH5.wav
    <extra_annotations>/et05_{real,simu}_1ch_track.list     (CHiME4_diff package; falls back
                                                             to $C/data/annotations)
    $C/data/transcriptions/{tr05,dt05,et05}_real.dot_all, {dt05,et05}_simu.dot_all
                                                            lines: WORDS ... (<stem>)
    $C/data/WSJ0/**/<wsjid[:6]>00.dot                       tr05_simu text, lines: WORDS (<wsjid>)
    [isolated_ext]/{tr05,dt05,et05}_<env>_simu/<stem>.CH<n>.Clean.wav   (optional, re-simulated)

What it writes, under ``output_dir``:

==================================  ===========================================================
data dir                            utterances
==================================  ===========================================================
``tr05_multi_noisy``                tr05 simu + real, every channel of ``train_channels`` found
                                    in ``isolated/`` (id ``<stem>.CH<n>_SIMU`` / ``_REAL``)
``dt05_multi_isolated_1ch_track``   dt05 simu + real 1-channel track (validation)
``{dt05,et05}_{real,simu}_``        the 1-channel track (id ``<stem>_REAL`` / ``<stem>_SIMU``)
``isolated_1ch_track``
==================================  ===========================================================

Each dir holds ``wav.scp`` (noisy input), ``spk1.scp`` (clean reference), ``text`` and
``text_spk1`` (identical; ``text_spk1`` is the name ESPnet's joint model reads), ``utt2spk``,
``spk2utt`` (speaker = the id up to the first ``_``) and ``utt2category`` (``SIMU``/``REAL``),
all sorted in C byte order. ``output_dir/nlsyms.txt`` lists the non-linguistic symbols
(every token containing ``<``) of all written transcripts.

Clean references (``spk1.scp``):

* simulated utterances with ``isolated_ext`` given: the re-simulated, sample-aligned
  ``<stem>.CH<n>.Clean.wav`` of the same channel (ESPnet enh1's MATLAB re-simulation).
* tr05 simulated without ``isolated_ext``: the WSJ0 original ``tr05_org/<SPK>_<WSJID>_ORG.wav``.
  It is NOT time-aligned with the noisy channel (the simulation applied an equalisation
  filter, per-frame steering delays and a gain), so train the SE front-end on it only with
  a scale-invariant or magnitude/mask loss, never with a sample-exact loss (L1/MSE on
  waveforms).
* dt05/et05 simulated without ``isolated_ext``: the booth close-talk ``<SPK>_<WSJID>_BTH.CH0.wav``
  (the simulation's source; not aligned either).
* dt05/et05 real: the close-talk ``<stem>.CH0.wav`` next to the far channels in ``isolated/``
  (a pseudo-clean reference: the lapel microphone leaks noise).
* tr05 real: a dummy equal to the noisy input. The ``_REAL`` id suffix makes ESPnet's
  ``ESPnetEnhS2TModel`` skip the SE loss for such batches, so the dummy is never a target.

Transcripts are normalised as ESPnet's CHiME-4 recipe does (see ``normalize_transcript``).
Errors (a missing directory, list or transcript file, audio without a transcript, a
transcript without audio, a malformed line, a missing reference) raise ``PrepError`` naming
the file and what is wrong. Each data dir is written to a temporary sibling and renamed into
place; a dir whose files already hold exactly the content to be written is left untouched
(files added by later steps included), so a re-run after a failure redoes only what is missing
or stale, and a stale dir is replaced as a whole.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

ENVIRONMENTS = ("bus", "caf", "ped", "str")
TEST_SETS = ("dt05", "et05")
CATEGORIES = ("real", "simu")
NOISE_SYMBOL = "<NOISE>"
TRAIN_DIR = "tr05_multi_noisy"
VALID_DIR = "dt05_multi_isolated_1ch_track"
DATA_DIR_FILES = ("wav.scp", "spk1.scp", "text", "text_spk1", "utt2spk", "spk2utt", "utt2category")

# <SPK>_<WSJID>_<ENV>: 3-character speaker, 8-character WSJ prompt id, environment.
STEM = re.compile(r"^(?P<spk>[A-Za-z0-9]{3})_(?P<wsj>[A-Za-z0-9]{8})_(?P<env>[A-Z]{3})$")
CHANNEL_WAV = re.compile(r"^(?P<stem>[^.]+)\.CH(?P<ch>[0-6])\.wav$")
DOT_LINE = re.compile(r"^(?P<words>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")

logger = logging.getLogger("prepare_chime4")


class PrepError(ValueError):
    """The corpus tree is missing something or is inconsistent; the message names the file."""


@dataclass(frozen=True)
class Utterance:
    """One line of every file of a data dir."""

    utt_id: str
    speaker: str
    wav: str  # noisy input path
    ref: str  # clean reference path (spk1.scp)
    text: str  # normalised transcript
    category: str  # "SIMU" or "REAL"


# ----------------------------------------------------------------------------- transcripts

_DELETE = (
    re.compile(r"^\[<\w+\]$", re.ASCII),  # [<door_slam]: noise in the preceding word
    re.compile(r"^\[\w+>\]$", re.ASCII),  # [door_slam>]: noise in the next word
    re.compile(r"\[\w+/\]$", re.ASCII),  # [phone_ring/]: a noise starts
    re.compile(r"\[/\w+\]$", re.ASCII),  # [/phone_ring]: a noise ends
)
_NOISE = re.compile(r"\[\w+\]", re.ASCII)  # [loud_breath] and other noises
_VERBAL_DELETION = re.compile(r"^<([\w']+)>$", re.ASCII)  # <and>: spoken, marked deleted


def normalize_word(word: str) -> Optional[str]:
    """Normalise one WSJ/CHiME transcript token; ``None`` means "drop it".

    The rules of ESPnet's (Kaldi's) ``normalize_transcript.pl`` with ``<NOISE>`` as noise
    word: upper-case and drop backslashes; ``%PERCENT`` -> ``PERCENT`` and ``.POINT`` ->
    ``POINT``; drop noise-extent markers (``[<x]``, ``[x>]``, ``[x/]``, ``[/x]``), ``~``
    (truncation) and ``.`` (pause); any other bracketed noise ``[x]`` -> ``<NOISE>``;
    ``<word>`` (a verbal deletion, still pronounced) -> ``WORD``; ``--DASH`` -> ``-DASH``.
    Verbal punctuation such as ``.PERIOD`` or ``,COMMA`` is kept.
    """
    w = word.upper().replace("\\", "")
    if w == "%PERCENT":
        return "PERCENT"
    if w == ".POINT":
        return "POINT"
    if w in ("~", ".") or any(p.search(w) for p in _DELETE):
        return None
    if _NOISE.search(w):
        return NOISE_SYMBOL
    deletion = _VERBAL_DELETION.match(w)
    if deletion:
        return deletion.group(1)
    if w == "--DASH":
        return "-DASH"
    return w


def normalize_transcript(words: str) -> str:
    """Normalise a whitespace-separated transcript with ``normalize_word``."""
    kept = (normalize_word(w) for w in words.split())
    return " ".join(w for w in kept if w)


def read_dot_file(path: Path) -> Dict[str, str]:
    """Read a WSJ dot file (``WORDS ... (ID)`` per line) into {ID upper-cased: raw words}.

    Blank lines are skipped; a line without a trailing ``(ID)`` or a repeated ID is an error.
    """
    entries: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise PrepError(f"{path}: not UTF-8/ASCII text ({e})") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = DOT_LINE.match(line)
        if not m:
            raise PrepError(f"{path}:{lineno}: expected 'WORDS ... (ID)', got {line.strip()!r}")
        key = m.group("id").upper()
        if key in entries:
            raise PrepError(f"{path}:{lineno}: transcript id {m.group('id')} appears twice")
        entries[key] = m.group("words")
    return entries


class Wsj0Dots:
    """tr05_simu transcripts from the WSJ0 ``.dot`` files under ``wsj0_dir``.

    The prompt ``011c0201`` is in the file ``011c0200.dot`` (first 6 characters + ``00``);
    files are found by name anywhere below ``wsj0_dir`` and parsed on first use.
    """

    def __init__(self, wsj0_dir: Path):
        if not wsj0_dir.is_dir():
            raise PrepError(f"missing directory {wsj0_dir}: the WSJ0 .dot files hold the tr05_simu transcripts")
        self.wsj0_dir = wsj0_dir
        self._files: Dict[str, List[Path]] = {}
        for root, _dirs, names in os.walk(wsj0_dir):
            for name in names:
                if name.lower().endswith(".dot"):
                    self._files.setdefault(name.lower(), []).append(Path(root) / name)
        self._parsed: Dict[Path, Dict[str, str]] = {}

    def words(self, wsj_id: str, audio: Path) -> str:
        """Raw transcript of prompt ``wsj_id`` (any case); ``audio`` is named in errors."""
        dot_name = wsj_id[:6].lower() + "00.dot"
        paths = sorted(self._files.get(dot_name, []))
        if not paths:
            raise PrepError(f"{audio}: no transcript: WSJ0 file {dot_name} not found under {self.wsj0_dir}")
        for path in paths:
            if path not in self._parsed:
                self._parsed[path] = read_dot_file(path)
            if wsj_id.upper() in self._parsed[path]:
                return self._parsed[path][wsj_id.upper()]
        raise PrepError(f"{audio}: no transcript: prompt {wsj_id.lower()} is not in {', '.join(map(str, paths))}")


def read_dot_all(corpus_dir: Path, name: str) -> Tuple[Path, Dict[str, str]]:
    """``transcriptions/<name>.dot_all`` as (path, {stem: raw words})."""
    path = corpus_dir / "data" / "transcriptions" / f"{name}.dot_all"
    if not path.is_file():
        raise PrepError(f"missing transcript file {path}")
    return path, read_dot_file(path)


# ----------------------------------------------------------------------------- audio layout


def parse_stem(stem: str, where: str) -> re.Match:
    m = STEM.match(stem)
    if not m:
        raise PrepError(f"{where}: '{stem}' is not a CHiME-4 utterance name <SPK>_<WSJID>_<ENV>")
    return m


def scan_channels(set_dir: Path, env: str) -> Dict[str, Dict[int, Path]]:
    """Map each ``<stem>`` in ``set_dir`` to {channel: path} of its ``<stem>.CH<n>.wav`` files.

    Files that are not ``.wav`` are ignored; a ``.wav`` with another name pattern or of another
    environment than the directory's is an error.
    """
    if not set_dir.is_dir():
        raise PrepError(f"missing directory {set_dir}")
    found: Dict[str, Dict[int, Path]] = {}
    for name in sorted(os.listdir(set_dir)):
        if not name.endswith(".wav"):
            continue
        m = CHANNEL_WAV.match(name)
        if not m:
            raise PrepError(f"{set_dir / name}: expected a name <SPK>_<WSJID>_<ENV>.CH<0-6>.wav")
        stem = m.group("stem")
        if parse_stem(stem, str(set_dir / name)).group("env") != env.upper():
            raise PrepError(f"{set_dir / name}: environment differs from its directory's ({env.upper()})")
        found.setdefault(stem, {})[int(m.group("ch"))] = set_dir / name
    return found


def require_file(path: Path, purpose: str) -> str:
    if not path.is_file():
        raise PrepError(f"missing {purpose} {path}")
    return str(path)


def check_all_have_audio(transcripts: Mapping[str, str], stems_with_audio: Iterable[str], dot_path: Path, where: str) -> None:
    """Every transcript of a ``.dot_all`` file must have audio (else the set is incomplete)."""
    orphans = sorted(set(transcripts) - {s.upper() for s in stems_with_audio})
    if orphans:
        shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
        raise PrepError(f"{dot_path}: {len(orphans)} transcript(s) without audio in {where}: {shown}")


def transcript_for(transcripts: Mapping[str, str], stem: str, audio: Path, dot_path: Path) -> str:
    try:
        return normalize_transcript(transcripts[stem.upper()])
    except KeyError:
        raise PrepError(f"{audio}: audio without transcript: no line '({stem})' in {dot_path}") from None


class Chime4Tree:
    """Paths of one CHiME-4 package tree and the options that choose references."""

    def __init__(
        self,
        corpus_dir: Path,
        extra_annotations: Optional[Path],
        isolated_ext: Optional[Path],
        wsj0_dir: Optional[Path],
    ):
        self.corpus_dir = corpus_dir
        self.audio = corpus_dir / "data" / "audio" / "16kHz"
        self.isolated = self.audio / "isolated"
        self.track_1ch = self.audio / "isolated_1ch_track"
        self.annotations = corpus_dir / "data" / "annotations"
        self.extra_annotations = extra_annotations
        self.isolated_ext = isolated_ext
        self.wsj0_dir = wsj0_dir if wsj0_dir is not None else corpus_dir / "data" / "WSJ0"
        for d in (self.isolated, self.annotations, corpus_dir / "data" / "transcriptions"):
            if not d.is_dir():
                raise PrepError(f"missing directory {d}: is {corpus_dir} the CHiME-4 'CHiME3' directory?")
        if isolated_ext is not None and not isolated_ext.is_dir():
            raise PrepError(f"missing directory {isolated_ext} (given as isolated_ext)")

    def clean_ext(self, sub: str, stem: str, channel: int) -> str:
        assert self.isolated_ext is not None
        return require_file(self.isolated_ext / sub / f"{stem}.CH{channel}.Clean.wav", "re-simulated clean reference")

    def track_list(self, set_name: str, category: str) -> Path:
        """The 1ch track list of ``<set>_<category>``; et05 lists come from CHiME4_diff."""
        name = f"{set_name}_{category}_1ch_track.list"
        if set_name == "et05" and self.extra_annotations is not None:
            path = self.extra_annotations / name
            if not path.is_file():
                raise PrepError(f"missing {path} (looked in --extra_annotations {self.extra_annotations})")
            return path
        path = self.annotations / name
        if not path.is_file():
            hint = (
                "; the et05 track lists ship in the CHiME4_diff package: pass "
                "--extra_annotations <CHiME4_diff/CHiME3/data/annotations>"
                if set_name == "et05"
                else ""
            )
            raise PrepError(f"missing track list {path}{hint}")
        return path


def read_track_list(path: Path, set_name: str, category: str) -> List[Tuple[str, str, int]]:
    """Lines ``<set>_<env>_<category>/<stem>.CH<n>.wav`` as [(sub dir, stem, channel)]."""
    entries = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            sub, _, name = fields[0].partition("/")
            m = CHANNEL_WAV.match(name)
            envs = {f"{set_name}_{env}_{category}" for env in ENVIRONMENTS}
            if len(fields) != 1 or sub not in envs or not m:
                raise PrepError(
                    f"{path}:{lineno}: expected one path <{set_name}_ENV_{category}>/<stem>.CH<n>.wav, got {line.strip()!r}"
                )
            stem = m.group("stem")
            if parse_stem(stem, f"{path}:{lineno}").group("env").lower() != sub.split("_")[1]:
                raise PrepError(f"{path}:{lineno}: environment of {stem} differs from its directory {sub}")
            if stem in seen:
                raise PrepError(f"{path}:{lineno}: {stem} is listed twice")
            seen.add(stem)
            entries.append((sub, stem, int(m.group("ch"))))
    return entries


# ----------------------------------------------------------------------------- the sets


def training_utterances(tree: Chime4Tree, channels: Sequence[int]) -> List[Utterance]:
    """tr05 real + simu, one utterance per (stem, channel in ``channels``) found on disk."""
    utts: List[Utterance] = []
    dot_path, real_text = read_dot_all(tree.corpus_dir, "tr05_real")
    real_stems = []
    for env in ENVIRONMENTS:
        set_dir = tree.isolated / f"tr05_{env}_real"
        for stem, files in scan_channels(set_dir, env).items():
            used = sorted(ch for ch in files if ch in channels)
            if used:
                real_stems.append(stem)
            for ch in used:
                text = transcript_for(real_text, stem, files[ch], dot_path)
                wav = str(files[ch])
                utts.append(Utterance(f"{stem}.CH{ch}_REAL", stem.split("_")[0], wav, wav, text, "REAL"))
    check_all_have_audio(real_text, real_stems, dot_path, f"{tree.isolated}/tr05_*_real (channels {list(channels)})")

    wsj0 = Wsj0Dots(tree.wsj0_dir)
    for env in ENVIRONMENTS:
        sub = f"tr05_{env}_simu"
        for stem, files in scan_channels(tree.isolated / sub, env).items():
            m = parse_stem(stem, str(tree.isolated / sub))
            for ch in sorted(ch for ch in files if ch in channels):
                text = normalize_transcript(wsj0.words(m.group("wsj"), files[ch]))
                if tree.isolated_ext is not None:
                    ref = tree.clean_ext(sub, stem, ch)
                else:
                    org = tree.isolated / "tr05_org" / f"{m.group('spk')}_{m.group('wsj')}_ORG.wav"
                    ref = require_file(org, f"clean reference (WSJ0 original) of {files[ch]}:")
                utts.append(Utterance(f"{stem}.CH{ch}_SIMU", m.group("spk"), str(files[ch]), ref, text, "SIMU"))
    return utts


def track_1ch_utterances(tree: Chime4Tree, set_name: str, category: str) -> List[Utterance]:
    """The 1-channel track of ``<set_name>_<category>``, as listed in its track list."""
    list_path = tree.track_list(set_name, category)
    listed = read_track_list(list_path, set_name, category)
    dot_path, transcripts = read_dot_all(tree.corpus_dir, f"{set_name}_{category}")
    listed_names = {(sub, stem) for sub, stem, _ in listed}
    for env in ENVIRONMENTS:
        sub = f"{set_name}_{env}_{category}"
        set_dir = tree.track_1ch / sub
        if not set_dir.is_dir():
            raise PrepError(f"missing directory {set_dir}")
        for name in sorted(os.listdir(set_dir)):
            if name.endswith(".wav") and (sub, name[: -len(".wav")]) not in listed_names:
                raise PrepError(f"{set_dir / name}: audio not listed in {list_path}")
    check_all_have_audio(transcripts, [stem for _, stem, _ in listed], dot_path, f"{list_path}")

    suffix = category.upper()
    utts = []
    for sub, stem, ch in listed:
        m = parse_stem(stem, str(list_path))
        wav = tree.track_1ch / sub / f"{stem}.wav"
        require_file(wav, f"1ch track audio (listed in {list_path}):")
        text = transcript_for(transcripts, stem, wav, dot_path)
        if category == "real":
            ref = require_file(tree.isolated / sub / f"{stem}.CH0.wav", f"close-talk reference of {wav}:")
        elif tree.isolated_ext is not None:
            ref = tree.clean_ext(sub, stem, ch)
        else:
            booth = tree.isolated / f"{set_name}_bth" / f"{m.group('spk')}_{m.group('wsj')}_BTH.CH0.wav"
            ref = require_file(booth, f"clean reference (booth recording) of {wav}:")
        utts.append(Utterance(f"{stem}_{suffix}", m.group("spk"), str(wav), ref, text, suffix))
    return utts


# ----------------------------------------------------------------------------- writing


def c_sorted(items: Iterable[str]) -> List[str]:
    """Sort as ``LC_ALL=C sort`` does (byte order of the UTF-8 encoding)."""
    return sorted(items, key=lambda s: s.encode("utf-8"))


def data_dir_files(utts: Sequence[Utterance]) -> Dict[str, str]:
    """File name -> content of a Kaldi-style data dir holding ``utts``."""
    by_id: Dict[str, Utterance] = {}
    for u in utts:
        if u.utt_id in by_id:
            raise PrepError(f"utterance id {u.utt_id} occurs twice ({by_id[u.utt_id].wav} and {u.wav})")
        if not u.utt_id.startswith(u.speaker + "_"):
            raise PrepError(f"utterance id {u.utt_id} does not start with its speaker {u.speaker}_")
        for value in (u.wav, u.ref):
            if any(c.isspace() for c in value):
                raise PrepError(f"{value}: paths with white space cannot go into a Kaldi scp file")
        by_id[u.utt_id] = u
    ids = c_sorted(by_id)
    spk2utt: Dict[str, List[str]] = {}
    for i in ids:
        spk2utt.setdefault(by_id[i].speaker, []).append(i)

    def lines(rows: Iterable[str]) -> str:
        return "".join(row + "\n" for row in rows)

    text = lines(f"{i} {by_id[i].text}".rstrip() for i in ids)
    return {
        "wav.scp": lines(f"{i} {by_id[i].wav}" for i in ids),
        "spk1.scp": lines(f"{i} {by_id[i].ref}" for i in ids),
        "text": text,
        "text_spk1": text,
        "utt2spk": lines(f"{i} {by_id[i].speaker}" for i in ids),
        "spk2utt": lines(f"{s} {' '.join(spk2utt[s])}" for s in c_sorted(spk2utt)),
        "utt2category": lines(f"{i} {by_id[i].category}" for i in ids),
    }


def _holds(directory: Path, files: Mapping[str, str]) -> bool:
    """True when every one of ``files`` is in ``directory`` with exactly that content.

    Other files (e.g. a later step's ``utt2condition``) do not make the dir stale.
    """
    for name, content in files.items():
        path = directory / name
        if not path.is_file():
            return False
        with open(path, encoding="utf-8") as f:
            if f.read() != content:
                return False
    return True


def write_dir_atomic(directory: Path, files: Mapping[str, str]) -> bool:
    """Write ``files`` as ``directory`` via a temporary sibling and a rename.

    Returns False (and writes nothing) when ``directory`` already holds ``files`` (see
    ``_holds``). A stale ``directory`` is replaced as a whole, extra files included; at no
    time does it hold a partial set.
    """
    if _holds(directory, files):
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp.", dir=directory.parent))
    try:
        for name, content in files.items():
            with open(tmp / name, "w", encoding="utf-8") as f:
                f.write(content)
        os.chmod(tmp, 0o755)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.rename(directory, old / directory.name)
            os.rename(tmp, directory)
            shutil.rmtree(old)
        else:
            os.rename(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return True


def write_file_atomic(path: Path, content: str) -> bool:
    """Write ``content`` to ``path`` via a temporary file and ``os.replace``.

    Returns False (and writes nothing) when ``path`` already holds ``content``.
    """
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return True


def nlsyms(texts: Iterable[str]) -> List[str]:
    """Non-linguistic symbols: the distinct tokens containing ``<`` (ESPnet's rule), C-sorted."""
    return c_sorted({tok for text in texts for line in text.splitlines() for tok in line.split()[1:] if "<" in tok})


# ----------------------------------------------------------------------------- entry point


def prepare_chime4(
    corpus_dir: os.PathLike,
    output_dir: os.PathLike,
    extra_annotations: Optional[os.PathLike] = None,
    isolated_ext: Optional[os.PathLike] = None,
    wsj0_dir: Optional[os.PathLike] = None,
    train_channels: Sequence[int] = (1, 2, 3, 4, 5, 6),
) -> Dict[str, Path]:
    """Write the CHiME-4 data dirs and ``nlsyms.txt`` under ``output_dir``.

    Args:
        corpus_dir: the CHiME-4 ``CHiME3`` directory (holding ``data/audio/16kHz/isolated``).
        output_dir: where the data dirs go (``data`` in a recipe).
        extra_annotations: ``CHiME4_diff/CHiME3/data/annotations``, holding the et05 1ch
            track lists; without it they are looked for in ``corpus_dir/data/annotations``.
        isolated_ext: the re-simulated ``isolated_ext`` dir (``<set>_<env>_simu/<stem>.CH<n>.Clean.wav``);
            when given, simulated utterances use these aligned references.
        wsj0_dir: where the WSJ0 ``.dot`` files are (default ``corpus_dir/data/WSJ0``).
        train_channels: channels (1-6) that become training utterances, each found file one
            utterance (ESPnet uses all six; CH2 faces away from the talker).

    Returns:
        {data dir name: path} of every data dir written or found up to date.
    """
    if not train_channels or any(ch not in range(1, 7) for ch in train_channels):
        raise PrepError(f"train_channels must be among 1..6 (far-field channels), got {list(train_channels)}")
    tree = Chime4Tree(
        Path(os.path.abspath(corpus_dir)),
        Path(os.path.abspath(extra_annotations)) if extra_annotations else None,
        Path(os.path.abspath(isolated_ext)) if isolated_ext else None,
        Path(os.path.abspath(wsj0_dir)) if wsj0_dir else None,
    )
    logger.info("reading CHiME-4 tree %s", tree.corpus_dir)
    sets: Dict[str, List[Utterance]] = {TRAIN_DIR: training_utterances(tree, sorted(set(train_channels)))}
    for set_name in TEST_SETS:
        for category in CATEGORIES:
            sets[f"{set_name}_{category}_isolated_1ch_track"] = track_1ch_utterances(tree, set_name, category)
    sets[VALID_DIR] = sets["dt05_real_isolated_1ch_track"] + sets["dt05_simu_isolated_1ch_track"]

    out = Path(output_dir)
    written: Dict[str, Path] = {}
    all_text = []
    for name, utts in sets.items():
        if not utts:
            raise PrepError(f"{name}: no utterances found in {tree.corpus_dir}")
        files = data_dir_files(utts)
        all_text.append(files["text"])
        changed = write_dir_atomic(out / name, files)
        logger.info("%s %s (%d utterances)", "wrote" if changed else "up to date:", out / name, len(utts))
        written[name] = out / name
    symbols = nlsyms(all_text)
    changed = write_file_atomic(out / "nlsyms.txt", "".join(s + "\n" for s in symbols))
    logger.info("%s %s (%s)", "wrote" if changed else "up to date:", out / "nlsyms.txt", " ".join(symbols) or "empty")
    return written


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Prepare CHiME-4 1ch-track + multi-condition training data dirs (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--corpus_dir", "--corpus-dir", required=True, help="the CHiME-4 CHiME3 directory")
    parser.add_argument("--output_dir", "--output-dir", default="data")
    parser.add_argument(
        "--extra_annotations", "--extra-annotations", default=None,
        help="CHiME4_diff/CHiME3/data/annotations (et05 1ch track lists)",
    )
    parser.add_argument(
        "--isolated_ext", "--isolated-ext", default=None,
        help="re-simulated isolated_ext dir with <set>_<env>_simu/<stem>.CH<n>.Clean.wav",
    )
    parser.add_argument("--wsj0_dir", "--wsj0-dir", default=None, help="WSJ0 .dot tree (default <corpus_dir>/data/WSJ0)")
    parser.add_argument("--train_channels", "--train-channels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        prepare_chime4(
            args.corpus_dir, args.output_dir, args.extra_annotations, args.isolated_ext, args.wsj0_dir, args.train_channels
        )
    except PrepError as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
