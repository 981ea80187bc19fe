#!/usr/bin/env python3
"""Print the command line, shell-quoted, so that it can be pasted back into a shell.

Usage: ``pyscripts/utils/print_args.py "$0" "$@"`` prints e.g. ``./run.sh --stage 3 --args 'a b'``.
Recipes use it to record how they were called (``run_args``) and to write a re-runnable
``run.sh`` into each experiment directory. Every argument is quoted only when needed
(:func:`shlex.quote`), so the output round-trips through ``shlex.split`` / bash unchanged.
"""

from __future__ import annotations

import shlex
import sys
from typing import Sequence


def quoted_command(argv: Sequence[str]) -> str:
    """``argv`` joined into one shell command line that reproduces it exactly."""
    return " ".join(shlex.quote(a) for a in argv)


def main(argv: Sequence[str] | None = None) -> int:
    print(quoted_command(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
