"""Kaldi-style table files (``<key> <value...>`` per line) and atomic writes.

Every data-dir and scp tool reads its inputs through :func:`read_table`, so a bad line is
reported the same way everywhere: ``<file>:<line>: <what is wrong>``. Keys are compared in
``LC_ALL=C`` order, i.e. by their UTF-8 bytes (:func:`c_order`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator


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


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Open ``path`` for writing through a temporary file renamed into place on success.

    If the block raises (or the process dies), ``path`` keeps its old content (or stays
    absent) and the temporary file is removed (or left as ``.<name>.tmp*``, never read).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_lines_atomic(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write ``lines`` (without newlines) to ``path`` atomically, one per line."""
    with atomic_writer(path) as f:
        for line in lines:
            f.write(line + "\n")
