"""sclite-compatible ASR scoring (pyscripts/scoring) and the RESULTS.md table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

TEMPLATE = Path(__file__).resolve().parents[3] / "egs2" / "TEMPLATE" / "asr_with_enhancement"
sys.path.insert(0, str(TEMPLATE))

from pyscripts.scoring.score_asr import ScoringError, find_sclite, score  # noqa: E402
from pyscripts.scoring.sclite_align import COST_DEL, COST_INS, COST_SUB, align  # noqa: E402


def test_worked_example_counts():
    # ref a b c / hyp a x c d: a=C, b->x=S, c=C, d=I (cost 4 + 3 = 7 is the minimum).
    c = align("a b c".split(), "a x c d".split()).counts()
    assert (c.corr, c.sub, c.dels, c.ins) == (2, 1, 0, 1)
    assert c.percentages()[4] == pytest.approx(200 / 3)


def test_case_is_ignored_like_sclite_default():
    c = align(["Hello", "WORLD"], ["hello", "world"]).counts()
    assert (c.corr, c.errors) == (2, 0)


def test_empty_sides():
    assert align([], ["a", "b"]).counts().ins == 2
    assert align(["a", "b"], []).counts().dels == 2
    c = align([], []).counts()
    assert (c.ref_words, c.errors, c.sentence_errors) == (0, 0, 0)


def brute_force_cost(ref, hyp):
    """Independent minimum cost by memoised recursion over the three edit operations."""
    from functools import lru_cache

    @lru_cache(None)
    def f(i, j):
        if i == len(ref):
            return (len(hyp) - j) * COST_INS
        if j == len(hyp):
            return (len(ref) - i) * COST_DEL
        return min(f(i + 1, j + 1) + (0 if ref[i] == hyp[j] else COST_SUB),
                   f(i + 1, j) + COST_DEL, f(i, j + 1) + COST_INS)  # fmt: skip

    return f(0, 0)


words = st.lists(st.sampled_from(["a", "b", "c"]), max_size=7)


@given(words, words)
@settings(max_examples=300, deadline=None)
def test_alignment_is_minimal_and_consistent(ref, hyp):
    ali = align(ref, hyp)
    c = ali.counts()
    # Every ref word is C, S or D; every hyp word is C, S or I; the path cost is optimal.
    assert c.corr + c.sub + c.dels == len(ref) and c.corr + c.sub + c.ins == len(hyp)
    assert [r for _, r, _ in ali.ops if r is not None] == ref
    assert [h for _, _, h in ali.ops if h is not None] == hyp
    cost = COST_SUB * c.sub + COST_DEL * c.dels + COST_INS * c.ins
    assert cost == brute_force_cost(tuple(ref), tuple(hyp))


@pytest.fixture
def texts(tmp_path):
    (tmp_path / "ref").write_text("u1 the cat sat on the mat\nu2 Hello world again\nu3\n")
    (tmp_path / "hyp").write_text("u1 the bat sat on mat mat too\nu2 hello world\nu3 foo\n")
    (tmp_path / "utt2spk").write_text("u1 spkA\nu2 spkB\nu3 spkB\n")
    return tmp_path


def test_builtin_summary_row_wer(texts):
    # u1: C4 S2 I1 (the->mat, cat->bat, +too); u2: C2 D1; u3: I1 (empty ref). N = 6+3+0 = 9:
    # Corr 6/9 = 66.7, Sub 2/9 = 22.2, Del 1/9 = 11.1, Ins 2/9 = 22.2, Err 5/9 = 55.6, S.Err 3/3.
    cells = score(str(texts / "ref"), str(texts / "hyp"), str(texts / "score_wer"),
                  utt2spk=str(texts / "utt2spk"), scorer="builtin")  # fmt: skip
    assert cells == ["3", "9", "66.7", "22.2", "11.1", "22.2", "55.6", "100.0"]
    result = (texts / "score_wer/result.txt").read_text()
    assert "id: (spkA-u1)\nScores: (#C #S #D #I) 4 2 0 1\n" in result
    assert (texts / "score_wer/ref.trn").read_text().splitlines()[0] == "the cat sat on the mat\t(spkA-u1)"


def test_cer_counts_spaces_as_tokens_like_espnet(tmp_path):
    # ESPnet's char tokenizer writes each space as <space>: "ab c" has 4 tokens, "abc" misses one.
    (tmp_path / "ref").write_text("u1 ab c\n")
    (tmp_path / "hyp").write_text("u1 abc\n")
    cells = score(str(tmp_path / "ref"), str(tmp_path / "hyp"), str(tmp_path / "s"), token_type="char", scorer="builtin")
    assert cells[1] == "4" and cells[4] == "25.0"  # Wrd = 4 tokens, Del = 1/4


def test_missing_hypothesis_is_an_error(texts):
    (texts / "hyp").write_text("u1 the cat\nu2 x\n")
    with pytest.raises(ScoringError, match="no hypothesis for utterance 'all-u3'"):
        score(str(texts / "ref"), str(texts / "hyp"), str(texts / "s"), scorer="builtin")


@pytest.mark.skipif(find_sclite() is None, reason="sclite (SCTK) is not installed")
def test_sclite_and_builtin_give_the_same_summary(texts):
    for token_type in ("word", "char"):
        rows = [
            score(str(texts / "ref"), str(texts / "hyp"), str(texts / f"{s}_{token_type}"),
                  token_type=token_type, utt2spk=str(texts / "utt2spk"), scorer=s)  # fmt: skip
            for s in ("sclite", "builtin")
        ]
        assert rows[0] == rows[1], token_type


def test_show_asr_result_builds_markdown_tables(texts):
    exp = texts / "exp"
    for test_set in ("test_a", "test_b"):
        for metric, token_type in (("wer", "word"), ("cer", "char")):
            score(str(texts / "ref"), str(texts / "hyp"), str(exp / f"enh_asr_x/decode_asr/{test_set}/score_{metric}"),
                  token_type=token_type, scorer="builtin")  # fmt: skip
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    p = subprocess.run([str(TEMPLATE / "scripts/utils/show_asr_result.sh"), str(exp)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    md = p.stdout
    assert "## enh_asr_x\n### WER\n\n|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|" in md
    assert "|decode_asr/test_a|3|9|66.7|22.2|11.1|22.2|55.6|100.0|" in md
    assert "|decode_asr/test_b|3|9|66.7|22.2|11.1|22.2|55.6|100.0|" in md
    assert md.index("### WER") < md.index("### CER")
    p = subprocess.run([str(TEMPLATE / "scripts/utils/show_asr_result.sh"), str(texts / "nothing")], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "no */score_{wer,cer,ter}/result.txt" in p.stderr


def test_ter_uses_the_sentencepiece_model(tmp_path):
    # TER counts sentencepiece tokens: Wrd must equal the number of pieces of the reference.
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"turn the light {w} now\n" for w in ["on", "off", "up", "down"] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "bpe"), vocab_size=25,
                                   model_type="bpe", minloglevel=2)  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe.model"))
    (tmp_path / "ref").write_text("u1 turn the light on\n")
    (tmp_path / "hyp").write_text("u1 turn the light off\n")
    cells = score(str(tmp_path / "ref"), str(tmp_path / "hyp"), str(tmp_path / "score_ter"),
                  token_type="bpe", bpemodel=str(tmp_path / "bpe.model"), scorer="builtin")  # fmt: skip
    n_ref = len(sp.encode("turn the light on", out_type=str))
    assert cells[1] == str(n_ref)
    assert float(cells[6]) > 0  # "on" vs "off" differ in at least one piece
