"""The built-in aligner reproduces sclite's per-utterance and total counts.

300 random ref/hyp pairs over a small vocabulary, with substitutions, deletions, insertions,
empty hypotheses and empty references, are scored by the installed sclite and by
pyscripts.scoring.sclite_align; the (Corr, Sub, Del, Ins) counts must be identical for every
utterance (so also in total). Ties between equal-cost alignments with different counts occur in
such data: a quarter of the pairs are built from two motifs with equal-cost alignments of different
counts, so this checks sclite's tie-breaking too, not only its weights (measured: preferring
deletions over insertions on ties changes the counts of 73 of these 300 utterances, aligning from the other end those of 40).
"""

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
sys.path.insert(0, str(TEMPLATE))

from pyscripts.scoring.sclite_align import align  # noqa: E402
from pyscripts.scoring.score_asr import find_sclite  # noqa: E402

SCLITE = find_sclite()


def random_pairs(seed: int, n: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "d", "E", "f", "g", "h"]
    pairs = []
    for _ in range(n):
        if rng.random() < 0.25:
            # Tie motifs (found by search): ref "y x x y" / hyp "z z z y x" and ref "p q r p" /
            # hyp "r s s p q" have two minimum-cost alignments with different counts, e.g.
            # (C1 S3 D0 I1) and (C2 S0 D2 I3); only the tie-breaking rule decides.
            p, q, r, t = rng.sample(vocab, 4)
            ref, hyp = rng.choice([([q, p, p, q], [r, r, r, q, p]), ([p, q, r, p], [r, t, t, p, q])])
            if rng.random() < 0.5:
                ref, hyp = hyp, ref
            common = [rng.choice(vocab) for _ in range(rng.randint(0, 2))]
            pairs.append((common + ref, common + hyp))
            continue
        ref = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 12]))]
        hyp = []
        for w in ref:
            x = rng.random()
            if x < 0.5:
                hyp.append(w.lower() if rng.random() < 0.2 else w)  # case differences are correct
            elif x < 0.7:
                hyp.append(rng.choice(vocab))
            elif x < 0.85:
                pass
            else:
                hyp += [w, rng.choice(vocab)]
        if rng.random() < 0.1:
            hyp = []
        elif rng.random() < 0.2:
            hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        pairs.append((ref, hyp))
    return pairs


@pytest.mark.skipif(SCLITE is None, reason="sclite (SCTK) is not installed: apt-get install sctk")
def test_builtin_counts_equal_sclite_counts(tmp_path):
    pairs = random_pairs(seed=20231, n=300)
    assert any(not r for r, _ in pairs) and any(not h for _, h in pairs)
    for name, side in (("ref.trn", 0), ("hyp.trn", 1)):
        (tmp_path / name).write_text("".join(f"{' '.join(p[side])}\t(s{k % 3}-u{k:04d})\n" for k, p in enumerate(pairs)))
    out = subprocess.run(
        [SCLITE, "-r", str(tmp_path / "ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"), "trn", "-i", "rm", "-o", "all", "stdout"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    expected = {
        int(m[1]): tuple(map(int, m.groups()[1:]))
        for m in re.finditer(r"id: \(s\d-u(\d+)\)\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", out)
    }
    assert len(expected) == len(pairs)
    mismatches = []
    total_mine, total_sclite = [0] * 4, [0] * 4
    for k, (ref, hyp) in enumerate(pairs):
        c = align(ref, hyp).counts()
        mine = (c.corr, c.sub, c.dels, c.ins)
        if mine != expected[k]:
            mismatches.append((k, ref, hyp, mine, expected[k]))
        total_mine = [a + b for a, b in zip(total_mine, mine)]
        total_sclite = [a + b for a, b in zip(total_sclite, expected[k])]
    assert not mismatches, mismatches[:5]
    assert total_mine == total_sclite
    # The Sum row of sclite's count table agrees too.
    sum_row = re.search(r"\| Sum\s+\|\s+\d+\s+\d+\s+\|\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out)
    assert list(map(int, sum_row.groups())) == total_mine
