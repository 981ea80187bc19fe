"""``utils/split_scp.pl`` and ``utils/filter_scp.pl``.

split_scp.pl in.scp out.1 ... out.N
    Split the lines of ``in.scp`` into N contiguous chunks, in order; chunk sizes differ by at
    most one (the first ``lines % N`` chunks get the extra line). It is an error to ask for
    more chunks than there are lines. Outputs are written atomically.

filter_scp.pl [--exclude] [-f N] idlist [in.scp] > out
    Print the lines of ``in.scp`` (stdin if absent) whose N-th field (default 1) is (with
    ``--exclude``: is not) a key of ``idlist`` (its first column). Lines are printed unchanged
    and in input order.
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO, Sequence

from pyscripts.utils.table_file import read_table, write_lines_atomic


def chunk_sizes(n_lines: int, n_chunks: int) -> list[int]:
    """Near-equal contiguous chunk sizes, e.g. ``chunk_sizes(7, 3) == [3, 2, 2]``."""
    base, extra = divmod(n_lines, n_chunks)
    return [base + (1 if i < extra else 0) for i in range(n_chunks)]


def split_scp(in_path: str, out_paths: Sequence[str]) -> None:
    """Split ``in_path`` into ``out_paths``; raises ValueError naming the problem."""
    with open(in_path, "rb") as f:
        raw = f.readlines()
    lines = []
    for lineno, line in enumerate(raw, 1):
        text = line.decode("utf-8", errors="strict").rstrip("\n")
        if not text.strip():
            raise ValueError(f"{in_path}:{lineno}: empty line")
        lines.append(text)
    if len(out_paths) > len(lines):
        raise ValueError(
            f"cannot split {in_path} ({len(lines)} lines) into {len(out_paths)} parts: "
            "more parts than lines"
        )
    start = 0
    for path, size in zip(out_paths, chunk_sizes(len(lines), len(out_paths))):
        write_lines_atomic(path, lines[start : start + size])
        start += size


def filter_lines(
    ids: set[str], lines: BinaryIO, source: str, field: int, exclude: bool
) -> list[bytes]:
    """The lines of ``lines`` whose ``field``-th (1-based) field is in ``ids`` (or not)."""
    kept = []
    for lineno, raw in enumerate(lines, 1):
        fields = raw.split()
        if len(fields) < field:
            raise ValueError(
                f"{source}:{lineno}: has {len(fields)} field(s), -f {field} needs {field}"
            )
        if (fields[field - 1].decode("utf-8", errors="replace") in ids) != exclude:
            kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return kept


def split_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: split_scp.pl in.scp out.1 [out.2 ... out.N]", file=sys.stderr)
        return 1
    try:
        split_scp(args[0], args[1:])
    except (OSError, ValueError) as exc:
        print(f"split_scp.pl: {exc}", file=sys.stderr)
        return 1
    return 0


def filter_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="filter_scp.pl",
        description="Keep (or with --exclude drop) the lines whose key is in idlist.",
    )
    parser.add_argument("--exclude", action="store_true", help="drop the listed keys instead")
    parser.add_argument("-f", type=int, default=1, dest="field", help="key field (1-based)")
    parser.add_argument("idlist", help="file whose first column lists the keys")
    parser.add_argument("input", nargs="?", help="input table (default: stdin)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.field < 1:
        parser.error(f"-f needs a field number >= 1, got {args.field}")
    try:
        ids = {e.key for e in read_table(args.idlist, need_value=False)}
        if args.input is None:
            kept = filter_lines(ids, sys.stdin.buffer, "<stdin>", args.field, args.exclude)
        else:
            with open(args.input, "rb") as f:
                kept = filter_lines(ids, f, args.input, args.field, args.exclude)
    except (OSError, ValueError) as exc:
        print(f"filter_scp.pl: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.writelines(kept)
    return 0
