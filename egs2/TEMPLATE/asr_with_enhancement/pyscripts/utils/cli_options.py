"""Kaldi-style ``--name value`` options for the Python tools behind ``utils/*.sh`` scripts.

Unlike argparse, a value that itself starts with ``--`` (``--validate_opts --non-print``) is
taken as the value, and ``--a-b`` and ``--a_b`` name the same option, as in parse_options.sh.
"""

from __future__ import annotations

from typing import Sequence


class OptionError(ValueError):
    """Unknown option or missing value; the message names the option."""


def parse_value_options(
    argv: Sequence[str], names: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Split leading ``--name value`` / ``--name=value`` options from the positionals.

    Returns ``({name_with_underscores: value}, positionals)``; parsing stops at the first
    argument not starting with ``--`` (or after a lone ``--``).
    """
    args = list(argv)
    values: dict[str, str] = {}
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--":
            break
        if "=" in opt:
            opt, value = opt.split("=", 1)
        elif args:
            value = args.pop(0)
        else:
            raise OptionError(f"option {opt} needs a value")
        name = opt[2:].replace("-", "_")
        if name not in names:
            known = ", ".join("--" + n for n in names)
            raise OptionError(f"unknown option {opt} (known: {known})")
        values[name] = value
    return values, args
