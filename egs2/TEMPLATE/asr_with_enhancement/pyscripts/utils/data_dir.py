"""Kaldi-style data directories: validate, fix, combine, copy (the ``utils/*_data_dir.sh`` tools).

A data directory holds table files keyed by

* utterance: ``utt2spk`` (the master list), ``text``, ``wav.scp`` (when there is no
  ``segments``), ``segments``, ``feats.scp`` and every *utterance file* found in the directory:
  ``utt2*`` (``utt2dur``, ``utt2num_samples``, ``utt2category``, ...), ``text_spk<N>``,
  ``spk<N>.scp``, ``noise<N>.scp``, ``dereverb<N>.scp``, plus any file named with
  ``--utt_extra_files`` / ``--extra_files``;
* speaker: ``spk2utt`` (always derived from utt2spk), ``spk2gender``, ``cmvn.scp``;
* recording (only with ``segments``; without it each utterance is its own recording and these
  files are utterance files): ``wav.scp``, ``reco2file_and_channel``, ``reco2dur``.

Every file must be sorted in ``LC_ALL=C`` order with unique keys. ``text`` files may have an
empty transcript (key only); other files need a value. Errors name the file, line and key.

Unlike Kaldi, files found by the name patterns above are kept in sync even when not named in
``--utt_extra_files``, so that e.g. ``spk1.scp`` can never silently drift from ``wav.scp``.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pyscripts.utils.cli_options import OptionError, parse_value_options
from pyscripts.utils.table_file import (
    Entry,
    TableError,
    c_order,
    parse_lines,
    read_table,
    write_lines_atomic,
)

UTT_FILE_PATTERN = re.compile(
    r"^(text|feats\.scp|vad\.scp|utt2(?!spk$)\w+|text_spk\d+|(spk|noise|dereverb)\d+\.scp)$"
)
SPK_FILES = ("spk2gender", "cmvn.scp")
RECO_FILES = ("reco2file_and_channel", "reco2dur")
# Files that utils/copy_data_dir.sh copies (Kaldi's standard set; not spk*.scp).
COPY_FILES = (
    "utt2spk", "spk2utt", "text", "wav.scp", "segments", "utt2dur", "utt2num_frames",
    "reco2file_and_channel", "utt2lang", "spk2gender", "feats.scp", "cmvn.scp",
)  # fmt: skip


class DataDirError(Exception):
    """A data directory is invalid or cannot be processed; the message says where and why."""


def is_text_file(name: str) -> bool:
    return name == "text" or name.startswith("text_")


def utt_files(data_dir: Path, extra: Iterable[str] = ()) -> list[str]:
    """Utterance-keyed files present in ``data_dir`` (not utt2spk/segments/wav.scp), sorted."""
    names = {p.name for p in data_dir.iterdir() if p.is_file() and UTT_FILE_PATTERN.match(p.name)}
    names |= {n for n in extra if (data_dir / n).is_file()}
    names -= {"utt2spk", "segments", "wav.scp", "spk2utt"}
    return sorted(names)


def load(path: Path) -> list[Entry]:
    """Read a table, turning I/O and format problems into :class:`DataDirError`."""
    try:
        return read_table(path, need_value=not is_text_file(path.name))
    except (OSError, TableError) as exc:
        raise DataDirError(str(exc)) from None


def check_sorted_unique(path: Path, entries: Sequence[Entry]) -> None:
    """Error on the first key that is not strictly after the previous one in C order."""
    for prev, cur in zip(entries, entries[1:]):
        if cur.key == prev.key:
            raise DataDirError(
                f"{path}:{cur.lineno}: duplicate key '{cur.key}' (also on line {prev.lineno})"
            )
        if c_order(cur.key) < c_order(prev.key):
            raise DataDirError(
                f"{path}:{cur.lineno}: key '{cur.key}' comes after '{prev.key}' (line "
                f"{prev.lineno}): not sorted in LC_ALL=C order (utils/fix_data_dir.sh sorts)"
            )


def check_same_keys(
    path: Path, entries: Sequence[Entry], ref_name: str, ref: dict[str, Entry]
) -> None:
    """Error unless the keys of ``entries`` are exactly the keys of ``ref``."""
    keys = set()
    for e in entries:
        keys.add(e.key)
        if e.key not in ref:
            raise DataDirError(f"{path}:{e.lineno}: key '{e.key}' is not in {ref_name}")
    for key, e in ref.items():
        if key not in keys:
            raise DataDirError(
                f"{path}: has no entry for '{key}' ({ref_name} line {e.lineno}); "
                "utils/fix_data_dir.sh keeps only utterances present in every file"
            )


def spk2utt_lines(utt2spk: Iterable[tuple[str, str]]) -> list[str]:
    """spk2utt lines from (utt, spk) pairs: speakers in C order, utterances in input order."""
    by_spk: dict[str, list[str]] = {}
    for utt, spk in utt2spk:
        by_spk.setdefault(spk, []).append(utt)
    return [f"{spk} {' '.join(by_spk[spk])}" for spk in sorted(by_spk, key=c_order)]


@dataclass
class ValidateOptions:
    no_feats: bool = False
    no_text: bool = False
    no_wav: bool = False
    non_print: bool = False
    no_spk_sort: bool = False


def validate_data_dir(data_dir: str | Path, opts: ValidateOptions = ValidateOptions()) -> int:
    """Check ``data_dir``; raise :class:`DataDirError` on the first problem; return #utts."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataDirError(f"{d}: no such directory")
    for name in ("utt2spk", "spk2utt"):
        if not (d / name).is_file():
            raise DataDirError(f"{d}/{name}: missing")
    utt2spk = load(d / "utt2spk")
    check_sorted_unique(d / "utt2spk", utt2spk)
    for e in utt2spk:
        if len(e.value.split()) != 1:
            raise DataDirError(f"{d}/utt2spk:{e.lineno}: expected '<utt> <spk>', got '{e.line}'")
    utts = {e.key: e for e in utt2spk}
    if not utts:
        raise DataDirError(f"{d}/utt2spk: empty")
    if not opts.no_spk_sort:
        for prev, cur in zip(utt2spk, utt2spk[1:]):
            if c_order(cur.value) < c_order(prev.value):
                raise DataDirError(
                    f"{d}/utt2spk:{cur.lineno}: speaker '{cur.value}' of '{cur.key}' sorts before "
                    f"speaker '{prev.value}' of the previous utterance: utterance ids must start "
                    "with their speaker id (or pass --no-spk-sort)"
                )

    spk2utt = load(d / "spk2utt")
    check_sorted_unique(d / "spk2utt", spk2utt)
    seen: dict[str, int] = {}
    for e in spk2utt:
        for utt in e.value.split():
            if utt not in utts or utts[utt].value != e.key:
                where = f"utt2spk says '{utts[utt].value}'" if utt in utts else "not in utt2spk"
                raise DataDirError(
                    f"{d}/spk2utt:{e.lineno}: utterance '{utt}' of speaker '{e.key}': {where}"
                )
            if utt in seen:
                raise DataDirError(f"{d}/spk2utt:{e.lineno}: utterance '{utt}' listed twice")
            seen[utt] = e.lineno
    for utt, e in utts.items():
        if utt not in seen:
            raise DataDirError(
                f"{d}/spk2utt: utterance '{utt}' (utt2spk line {e.lineno}) is missing; "
                "regenerate spk2utt with utils/utt2spk_to_spk2utt.pl"
            )

    has_segments = (d / "segments").is_file()
    required = {"text": not opts.no_text, "feats.scp": not opts.no_feats}
    for name, needed in required.items():
        if needed and not (d / name).is_file():
            flag = "--no-text" if name == "text" else "--no-feats"
            raise DataDirError(f"{d}/{name}: missing (pass {flag} if it is not needed)")
    if not (d / "wav.scp").is_file() and (has_segments or not opts.no_wav):
        raise DataDirError(f"{d}/wav.scp: missing (pass --no-wav if it is not needed)")

    for name in utt_files(d):
        entries = load(d / name)
        check_sorted_unique(d / name, entries)
        check_same_keys(d / name, entries, "utt2spk", utts)
        if is_text_file(name) and not opts.non_print:
            for e in entries:
                bad = [c for c in e.value if not (c.isprintable() or c == "\t")]
                if bad:
                    raise DataDirError(
                        f"{d}/{name}:{e.lineno}: '{e.key}' contains the non-printable character "
                        f"{bad[0]!r} (pass --non-print to allow it)"
                    )

    recordings: dict[str, Entry] = {}
    if (d / "wav.scp").is_file():
        wav = load(d / "wav.scp")
        check_sorted_unique(d / "wav.scp", wav)
        recordings = {e.key: e for e in wav}
        if not has_segments:
            check_same_keys(d / "wav.scp", wav, "utt2spk", utts)
    if has_segments:
        segments = load(d / "segments")
        check_sorted_unique(d / "segments", segments)
        check_same_keys(d / "segments", segments, "utt2spk", utts)
        for e in segments:
            check_segment(d / "segments", e, recordings)
    for name in RECO_FILES:  # without segments, each utterance is its own recording
        if (d / name).is_file():
            entries = load(d / name)
            check_sorted_unique(d / name, entries)
            if has_segments:
                check_same_keys(d / name, entries, "wav.scp", recordings)
            else:
                check_same_keys(d / name, entries, "utt2spk", utts)
    speakers = {e.key: e for e in spk2utt}
    for name in SPK_FILES:
        if (d / name).is_file():
            entries = load(d / name)
            check_sorted_unique(d / name, entries)
            check_same_keys(d / name, entries, "spk2utt", speakers)
            if name == "spk2gender":
                for e in entries:
                    if e.value not in ("m", "f"):
                        raise DataDirError(
                            f"{d}/{name}:{e.lineno}: gender must be m or f, got '{e.value}'"
                        )
    return len(utts)


def check_segment(path: Path, e: Entry, recordings: dict[str, Entry]) -> None:
    fields = e.value.split()
    if len(fields) != 3:
        raise DataDirError(
            f"{path}:{e.lineno}: expected '<utt> <reco> <start> <end>', got '{e.line}'"
        )
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        raise DataDirError(f"{path}:{e.lineno}: start/end of '{e.key}' are not numbers") from None
    if not 0 <= start < end:
        raise DataDirError(
            f"{path}:{e.lineno}: '{e.key}' needs 0 <= start < end, got {start} {end}"
        )
    if fields[0] not in recordings:
        raise DataDirError(
            f"{path}:{e.lineno}: recording '{fields[0]}' of '{e.key}' is not in wav.scp"
        )


def dedup_sorted(path: Path, entries: Sequence[Entry]) -> list[Entry]:
    """Sort by key in C order; drop repeated identical lines; error on a key with two values."""
    out: list[Entry] = []
    for e in sorted(entries, key=lambda x: c_order(x.key)):
        if out and out[-1].key == e.key:
            if out[-1].value != e.value:
                raise DataDirError(
                    f"{path}: key '{e.key}' appears with different values on lines "
                    f"{out[-1].lineno} and {e.lineno}"
                )
            continue
        out.append(e)
    return out


def fix_data_dir(data_dir: str | Path, utt_extra_files: Iterable[str] = ()) -> tuple[int, int]:
    """Sort every file and keep only utterances present in all; return (kept, before).

    Rewritten files are first copied to ``<dir>/.backup/``. Nothing is written when the result
    would be empty (an error) or when a file has a key with two different values.
    """
    d = Path(data_dir)
    if not (d / "utt2spk").is_file():
        raise DataDirError(f"{d}/utt2spk: missing")
    tables: dict[str, list[Entry]] = {}
    names = ["utt2spk", *utt_files(d, utt_extra_files)]
    names += [n for n in ("segments", "wav.scp", *SPK_FILES, *RECO_FILES) if (d / n).is_file()]
    for name in names:
        tables[name] = dedup_sorted(d / name, load(d / name))
    for e in tables["utt2spk"]:
        if len(e.value.split()) != 1:
            raise DataDirError(f"{d}/utt2spk:{e.lineno}: expected '<utt> <spk>', got '{e.line}'")
    has_segments = "segments" in tables
    before = len(tables["utt2spk"])

    keep = {e.key for e in tables["utt2spk"]}
    dropped_by: dict[str, int] = {}
    utt_level = [
        n
        for n in names
        if n not in ("utt2spk", *SPK_FILES)
        and not (has_segments and n in ("wav.scp", *RECO_FILES))
    ]
    for name in utt_level:
        keys = {e.key for e in tables[name]}
        lost = keep - keys
        if lost:
            dropped_by[name] = len(lost)
        keep &= keys
    if has_segments and "wav.scp" in tables:
        recos = {e.key for e in tables["wav.scp"]}
        lost = {
            e.key
            for e in tables["segments"]
            if e.key in keep and e.value.split()[0] not in recos
        }
        if lost:
            dropped_by["wav.scp (recording of segments)"] = len(lost)
        keep -= lost

    if not keep:
        raise DataDirError(
            f"{d}: no utterance is present in every file ({', '.join(names)}); nothing written"
        )
    new: dict[str, list[str]] = {}
    for name in ["utt2spk", *utt_level]:
        new[name] = [e.line for e in tables[name] if e.key in keep]
    utt2spk = [(e.key, e.value.split()[0]) for e in tables["utt2spk"] if e.key in keep]
    new["spk2utt"] = spk2utt_lines(utt2spk)
    speakers = {spk for _, spk in utt2spk}
    for name in SPK_FILES:
        if name in tables:
            new[name] = [e.line for e in tables[name] if e.key in speakers]
    if has_segments:
        used = {e.value.split()[0] for e in tables["segments"] if e.key in keep}
        for name in ("wav.scp", *RECO_FILES):
            if name in tables:
                new[name] = [e.line for e in tables[name] if e.key in used]

    backup = d / ".backup"
    for name, lines in new.items():
        text = "".join(line + "\n" for line in lines)
        path = d / name
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old == text:
            continue
        if old is not None:
            backup.mkdir(exist_ok=True)
            shutil.copy2(path, backup / name)
        write_lines_atomic(path, lines)
    removed = before - len(keep)
    detail = "; ".join(f"{n} lacks {c}" for n, c in dropped_by.items())
    print(
        f"fix_data_dir.sh: kept {len(keep)} utterances out of {before} in {d}"
        + (f" (removed {removed}: {detail}); originals in {backup}" if removed else ""),
        file=sys.stderr,
    )
    return len(keep), before


def combine_data(
    dst: str | Path, srcs: Sequence[str | Path], extra_files: Iterable[str] = ()
) -> int:
    """Combine ``srcs`` into ``dst`` (then fix it); return the number of utterances kept."""
    dst = Path(dst)
    srcs = [Path(s) for s in srcs]
    extra = list(extra_files)
    if not srcs:
        raise DataDirError("combine_data.sh: no source directories given")
    for s in srcs:
        if not (s / "utt2spk").is_file():
            raise DataDirError(f"{s}/utt2spk: missing (is {s} a data directory?)")
        if s.resolve() == dst.resolve():
            raise DataDirError(f"{dst}: the destination cannot also be a source")
    with_segments = [s for s in srcs if (s / "segments").is_file()]
    if with_segments and len(with_segments) != len(srcs):
        without = [str(s) for s in srcs if s not in with_segments]
        raise DataDirError(
            "combine_data.sh: sources with segments and without segments cannot be combined "
            f"(no segments in: {', '.join(without)})"
        )

    names: set[str] = {"utt2spk", "wav.scp", "segments", *SPK_FILES, *RECO_FILES}
    for s in srcs:
        names |= set(utt_files(s))
    names |= set(extra)
    shared_ok = set(SPK_FILES) | ({"wav.scp", *RECO_FILES} if with_segments else set())
    combined: dict[str, list[Entry]] = {}
    for name in sorted(names):
        present = [s for s in srcs if (s / name).is_file()]
        if not present:
            continue
        if len(present) != len(srcs):
            missing = ", ".join(str(s) for s in srcs if s not in present)
            if name in extra:
                raise DataDirError(f"combine_data.sh: extra file {name} is missing in {missing}")
            print(
                f"combine_data.sh: warning: not combining {name}: missing in {missing}",
                file=sys.stderr,
            )
            continue
        origin: dict[str, tuple[Path, Entry]] = {}
        entries: list[Entry] = []
        for s in srcs:
            for e in load(s / name):
                if e.key in origin:
                    first_src, first = origin[e.key]
                    if name in shared_ok and first.value == e.value:
                        continue
                    raise DataDirError(
                        f"combine_data.sh: duplicate key '{e.key}' in {name}: "
                        f"{first_src}/{name}:{first.lineno} and {s}/{name}:{e.lineno}"
                    )
                origin[e.key] = (s, e)
                entries.append(e)
        combined[name] = sorted(entries, key=lambda x: c_order(x.key))

    dst.mkdir(parents=True, exist_ok=True)
    for stale in dst.iterdir():
        if stale.is_file() and stale.name not in combined and (
            UTT_FILE_PATTERN.match(stale.name)
            or stale.name in ("utt2spk", "spk2utt", "wav.scp", "segments", *SPK_FILES, *RECO_FILES)
        ):
            stale.unlink()
    for name, entries in combined.items():
        write_lines_atomic(dst / name, [e.line for e in entries])
    utt2spk = [(e.key, e.value.split()[0]) for e in combined["utt2spk"]]
    write_lines_atomic(dst / "spk2utt", spk2utt_lines(utt2spk))
    print(f"combine_data.sh: combined {len(srcs)} directories into {dst}", file=sys.stderr)
    kept, _ = fix_data_dir(dst, extra)
    return kept


def copy_data_dir(src: str | Path, dst: str | Path, validate_opts: Sequence[str] = ()) -> int:
    """Copy Kaldi's standard files of ``src`` to ``dst`` and validate ``dst``; return #utts.

    Standard files that ``src`` lacks are removed from ``dst``; ``spk2utt`` is generated when
    ``src`` has none. ``--no-feats``/``--no-text``/``--no-wav`` are added to the validation
    options when ``src`` has no feats.scp/text/wav.scp (as Kaldi does for feats and text).
    """
    src, dst = Path(src), Path(dst)
    if not (src / "utt2spk").is_file():
        raise DataDirError(f"{src}/utt2spk: missing (is {src} a data directory?)")
    if src.resolve() == dst.resolve():
        raise DataDirError(f"{dst}: source and destination are the same directory")
    dst.mkdir(parents=True, exist_ok=True)
    for name in COPY_FILES:
        if (src / name).is_file():
            lines = (src / name).read_text(encoding="utf-8").splitlines()
            write_lines_atomic(dst / name, lines)
        elif (dst / name).is_file():
            (dst / name).unlink()
    if not (src / "spk2utt").is_file():
        pairs = [(e.key, e.value.split()[0]) for e in load(src / "utt2spk")]
        write_lines_atomic(dst / "spk2utt", spk2utt_lines(pairs))
    opts = parse_validate_options(list(validate_opts))
    opts.no_feats |= not (src / "feats.scp").is_file()
    opts.no_text |= not (src / "text").is_file()
    opts.no_wav |= not (src / "wav.scp").is_file()
    n = validate_data_dir(dst, opts)
    print(f"copy_data_dir.sh: copied {src} to {dst} ({n} utterances)", file=sys.stderr)
    return n


VALIDATE_FLAGS = ("no_feats", "no_text", "no_wav", "non_print", "no_spk_sort")


def parse_validate_options(flags: Sequence[str]) -> ValidateOptions:
    opts = ValidateOptions()
    for flag in flags:
        name = flag.lstrip("-").replace("-", "_")
        if not flag.startswith("--") or name not in VALIDATE_FLAGS:
            raise DataDirError(
                f"validate_data_dir.sh: unknown option '{flag}' (known: "
                + " ".join("--" + f.replace("_", "-") for f in VALIDATE_FLAGS)
                + ")"
            )
        setattr(opts, name, True)
    return opts


def _run(prog: str, body) -> int:
    try:
        body()
    except (DataDirError, OptionError) as exc:
        message = str(exc)
        print(message if message.startswith(prog) else f"{prog}: {message}", file=sys.stderr)
        return 1
    return 0


def validate_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        flags = [a for a in args if a.startswith("-")]
        dirs = [a for a in args if not a.startswith("-")]
        if len(dirs) != 1:
            raise DataDirError(
                "usage: validate_data_dir.sh [--no-feats] [--no-text] [--no-wav] [--non-print] "
                "[--no-spk-sort] <data-dir>"
            )
        n = validate_data_dir(dirs[0], parse_validate_options(flags))
        print(f"validate_data_dir.sh: {dirs[0]} is OK ({n} utterances)", file=sys.stderr)

    return _run("validate_data_dir.sh", body)


def fix_main(argv: Sequence[str] | None = None) -> int:
    def body() -> None:
        opts, pos = parse_value_options(
            sys.argv[1:] if argv is None else argv, ["utt_extra_files"]
        )
        if len(pos) != 1:
            raise DataDirError('usage: fix_data_dir.sh [--utt_extra_files "f1 f2 ..."] <data-dir>')
        fix_data_dir(pos[0], opts.get("utt_extra_files", "").split())

    return _run("fix_data_dir.sh", body)


def combine_main(argv: Sequence[str] | None = None) -> int:
    def body() -> None:
        opts, pos = parse_value_options(
            sys.argv[1:] if argv is None else argv, ["extra_files"]
        )
        if len(pos) < 2:
            raise DataDirError(
                'usage: combine_data.sh [--extra_files "f1 f2 ..."] <dst> <src1> [<src2> ...]'
            )
        combine_data(pos[0], pos[1:], opts.get("extra_files", "").split())

    return _run("combine_data.sh", body)


def copy_main(argv: Sequence[str] | None = None) -> int:
    def body() -> None:
        opts, pos = parse_value_options(
            sys.argv[1:] if argv is None else argv, ["validate_opts"]
        )
        if len(pos) != 2:
            raise DataDirError(
                'usage: copy_data_dir.sh [--validate_opts "--non-print ..."] <src> <dst>'
            )
        copy_data_dir(pos[0], pos[1], opts.get("validate_opts", "").split())

    return _run("copy_data_dir.sh", body)


def utt2spk_to_spk2utt_main(argv: Sequence[str] | None = None) -> int:
    """``utt2spk_to_spk2utt.pl [utt2spk] > spk2utt``: speakers in order of first appearance."""
    return _convert("utt2spk_to_spk2utt.pl", sys.argv[1:] if argv is None else argv, invert=False)


def spk2utt_to_utt2spk_main(argv: Sequence[str] | None = None) -> int:
    """``spk2utt_to_utt2spk.pl [spk2utt] > utt2spk``: one line per utterance, in input order."""
    return _convert("spk2utt_to_utt2spk.pl", sys.argv[1:] if argv is None else argv, invert=True)


def _convert(prog: str, args: Sequence[str], invert: bool) -> int:
    def body() -> None:
        if len(args) > 1:
            raise DataDirError(f"usage: {prog} [input] > output")
        try:
            if args:
                entries = read_table(args[0])
            else:
                entries = parse_lines(sys.stdin.buffer, "<stdin>")
        except (OSError, TableError) as exc:
            raise DataDirError(str(exc)) from None
        out = []
        if invert:
            for e in entries:
                out += [f"{utt} {e.key}" for utt in e.value.split()]
        else:
            order: dict[str, list[str]] = {}
            for e in entries:
                if len(e.value.split()) != 1:
                    source = args[0] if args else "<stdin>"
                    raise DataDirError(f"{source}:{e.lineno}: expected '<utt> <spk>'")
                order.setdefault(e.value, []).append(e.key)
            out = [f"{spk} {' '.join(utts)}" for spk, utts in order.items()]
        sys.stdout.write("".join(line + "\n" for line in out))

    return _run(prog, body)
