"""Kaldi-style table files (``<key> <value...>`` per line) and atomic writes.

Every data-dir and scp tool reads its inputs through :func:`read_table`, so a bad line is
reported the same way everywhere: ``<file>:<line>: <what is wrong>``. Keys are compared in
``LC_ALL=C`` order, i.e. by their UTF-8 bytes (:func:`c_order`). Writes go through
:mod:`espnet2.fileio.atomic_write` (``atomic_writer`` and ``write_lines_atomic``, re-exported here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from espnet2.fileio.atomic_write import atomic_writer, write_lines_atomic

__all__ = ["Entry", "TableError", "atomic_writer", "c_order", "parse_lines", "read_table", "write_lines_atomic"]


class TableError(ValueError):
    """A table file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    """One line of a table file.

    ``key`` is the first whitespace-separated field, ``value`` the rest of the line with the
    separating whitespace removed (may be empty), ``line`` the text without its newline (written
    back unchanged by the tools) and ``lineno`` its 1-based line number.
    """

    key: str
    value: str
    line: str
    lineno: int


def c_order(key: str) -> bytes:
    """Sort key for ``LC_ALL=C`` order (byte order of the UTF-8 encoding)."""
    return key.encode("utf-8")


def parse_lines(lines: Iterable[bytes], source: str, *, need_value: bool = True) -> list[Entry]:
    """Parse raw lines (with their newlines) of ``source`` into entries.

    Raises :class:`TableError` on an empty line, invalid UTF-8, a line with a key only when
    ``need_value`` is true, or a missing newline at the end of the file.
    """
    entries = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.endswith(b"\n"):
            raise TableError(f"{source}:{lineno}: no newline at the end of the file")
        try:
            line = raw[:-1].decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise TableError(f"{source}:{lineno}: not valid UTF-8 ({exc.reason})") from None
        fields = line.split(None, 1)
        if not fields:
            raise TableError(f"{source}:{lineno}: empty line")
        if line[0].isspace():
            raise TableError(f"{source}:{lineno}: line starts with whitespace (no key)")
        value = fields[1].strip() if len(fields) == 2 else ""
        if need_value and not value:
            raise TableError(f"{source}:{lineno}: key '{fields[0]}' has no value")
        entries.append(Entry(fields[0], value, line, lineno))
    return entries


def read_table(path: str | os.PathLike, *, need_value: bool = True) -> list[Entry]:
    """Read a table file; see :func:`parse_lines` for what is rejected."""
    with open(path, "rb") as f:
        return parse_lines(f, str(path), need_value=need_value)
