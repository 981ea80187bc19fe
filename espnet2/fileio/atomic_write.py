"""Atomic file writes: write a temporary file beside the target, rename it into place on success.

A reader (a later stage, a resumed run, another rank) sees either the old file or the complete
new one, never a half-written file. The writers of the ``espnet2`` package and of the recipe scripts
that run in the project's environment go through ``atomic_path`` (binary writers that take a file
name: ``torch.save``, ``savefig``), ``atomic_writer`` (text) or ``write_lines_atomic`` (a list of
lines). The recipe's standard-library-only tools (``utils/*.pl`` through
``pyscripts/utils/table_file.py``, the CHiME-4 data preparation) run under any ``python3`` and keep
their own equivalent.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file name beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary file is created empty in ``path``'s directory (made when missing) and named
    ``.<name>.<random><suffix>``: hidden, and never a name a reader looks for. Give ``suffix``
    when the writer infers the format from it (``".png"`` for ``savefig``). On success the file
    gets ``path``'s current permissions, or 0644 for a new file (not ``mkstemp``'s 0600, which
    would hide results from the user's group on a shared cluster), and replaces ``path`` in one
    rename. When the block raises, ``path`` keeps its old content (or stays absent) and the
    temporary file is removed; a killed process may leave the hidden file behind.

    Example:
        >>> import torch
        >>> with atomic_path("exp/model.pth") as tmp:  # doctest: +SKIP
        ...     torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[str]]:
    """``open(path, "w")`` (UTF-8, ``"\\n"`` line ends) through ``atomic_path``: the file is
    closed, then renamed into place, when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        yield f


def write_lines_atomic(path: PathLike, lines: Iterable[str]) -> None:
    """Write ``lines`` (without their newlines) to ``path`` atomically, one per line."""
    with atomic_writer(path) as f:
        for line in lines:
            f.write(line + "\n")
