"""Word alignment with sclite's weights, and sclite-style count tables.

sclite (SCTK) aligns a reference and a hypothesis token sequence by dynamic programming with the
costs correct 0, substitution 4, insertion 3, deletion 3, comparing tokens case-insensitively
(ASCII letters only, sclite's default without ``-s``). :func:`align` does the same, and on ties
prefers, during the backtrace from the end, a correct/substitution step, then an insertion, then a
deletion; on random inputs this reproduces sclite's per-utterance (Corr, Sub, Del, Ins) counts
exactly (checked by test/egs2/TEMPLATE/test_scoring_sclite_parity.py against the installed sclite).

Worked example: ref ``a b c``, hyp ``a x c d`` -> ``C S C I``: Corr 2, Sub 1, Del 0, Ins 1;
``Err = (S + D + I) / N = 2 / 3 = 66.7 %`` of the N = 3 reference words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

COST_SUB = 4
COST_INS = 3
COST_DEL = 3

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(token: str) -> str:
    """sclite's default case folding: ASCII letters to lower case, other characters kept."""
    return token.translate(_ASCII_LOWER)


@dataclass
class Counts:
    """Error counts of one or more utterances (``ref_words`` = N = C + S + D)."""

    corr: int = 0
    sub: int = 0
    dels: int = 0
    ins: int = 0
    sentences: int = 0
    sentence_errors: int = 0

    @property
    def ref_words(self) -> int:
        return self.corr + self.sub + self.dels

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    def __iadd__(self, other: "Counts") -> "Counts":
        self.corr += other.corr
        self.sub += other.sub
        self.dels += other.dels
        self.ins += other.ins
        self.sentences += other.sentences
        self.sentence_errors += other.sentence_errors
        return self

    def percentages(self) -> list[float]:
        """``[Corr, Sub, Del, Ins, Err, S.Err]`` in percent, as in sclite's Sum/Avg row.

        Word rates are relative to the N reference words, S.Err to the sentences; like sclite,
        a rate over zero reference words is printed as 0.0.
        """
        n = self.ref_words
        return [
            rate(self.corr, n),
            rate(self.sub, n),
            rate(self.dels, n),
            rate(self.ins, n),
            rate(self.errors, n),
            rate(self.sentence_errors, self.sentences),
        ]


def rate(count: int, total: int) -> float:
    """``100 * count / total``, or 0.0 when ``total`` is 0 (sclite's Sum/Avg convention)."""
    return 100.0 * count / total if total else 0.0


@dataclass
class Alignment:
    """Aligned pairs ``(op, ref token, hyp token)``: op in ``C S D I``; None for a gap."""

    ops: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def counts(self) -> Counts:
        ops = [op for op, _, _ in self.ops]
        c = Counts(ops.count("C"), ops.count("S"), ops.count("D"), ops.count("I"), sentences=1)
        c.sentence_errors = int(c.errors > 0)
        return c


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Minimum-cost alignment of ``ref`` and ``hyp`` with sclite's weights and tie-breaking."""
    n, m = len(ref), len(hyp)
    r = [fold(t) for t in ref]
    h = [fold(t) for t in hyp]
    # cost[i][j]: best cost of aligning ref[:i] with hyp[:j]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i * COST_DEL
    for j in range(1, m + 1):
        cost[0][j] = j * COST_INS
    for i in range(1, n + 1):
        row, prev = cost[i], cost[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if r[i - 1] == h[j - 1] else COST_SUB)
            row[j] = min(diag, prev[j] + COST_DEL, row[j - 1] + COST_INS)
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        here = cost[i][j]
        if i > 0 and j > 0:
            same = r[i - 1] == h[j - 1]
            if here == cost[i - 1][j - 1] + (0 if same else COST_SUB):
                ops.append(("C" if same else "S", ref[i - 1], hyp[j - 1]))
                i, j = i - 1, j - 1
                continue
        if j > 0 and here == cost[i][j - 1] + COST_INS:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
        else:
            ops.append(("D", ref[i - 1], None))
            i -= 1
    ops.reverse()
    return Alignment(ops)
