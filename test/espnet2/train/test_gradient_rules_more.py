"""Tests of the Gram-weighting baselines of espnet2.train.gradient_rules.

fixed, mgda, imtl_g, cagrad, nash_mtl, aligned_mtl and gradvac. Each rule is
checked against the property its paper defines it by (min-norm point, equal
projections, dual optimum, bargaining condition, condition number 1, cosine
raised to the EMA target), not against numbers copied from the code; the
generic guarantees the module promises (positive homogeneity, plain sum on
degenerate and non-finite blocks, independent blocks, no host sync) are
checked with the helpers of test_gradient_rules.py. Where the optional
torchjd package implements the same rule, the last tests compare with it.
"""

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from test_gradient_rules import (
    F64,
    PROPERTY,
    assert_block_close,
    blocked_pair,
    blocks_of,
    host_reads_forbidden,
    large_blocked_pair,
    norm,
    pair,
    sync_test_inputs,
)

from espnet2.train.gradient_rules import RULES, combine_blocks, get_rule

NEW_RULES = ("fixed", "mgda", "imtl_g", "cagrad", "nash_mtl", "aligned_mtl", "gradvac")
W_SE = 0.3  # a non-trivial fixed SE weight (the GR paper's enh_weight)


def make_rule(name):
    """A fresh rule (fresh GradVac state) with its default configuration."""
    return get_rule(name, w_se=W_SE) if name == "fixed" else get_rule(name)


def cosine(u, v):
    return float(torch.dot(u, v) / (norm(u) * norm(v)))


def gram(g_asr, g_se):
    """The Gram entries of one block as 1-element tensors."""
    return (
        torch.dot(g_asr, g_asr).reshape(1),
        torch.dot(g_se, g_se).reshape(1),
        torch.dot(g_asr, g_se).reshape(1),
    )


def nonzero_pair(p):
    g_asr, g_se = p
    assume(norm(g_asr) > 0 and norm(g_se) > 0)
    return g_asr, g_se


def clear_of_ties(g_asr, g_se):
    """False for (almost) exactly (anti)parallel pairs, where Nash-MTL's weights
    blow up and Aligned-MTL switches rank: rounding may flip those decisions."""
    if norm(g_asr) == 0 or norm(g_se) == 0:
        return True
    return 1.0 - abs(cosine(g_asr, g_se)) > 1e-9


# --------------------------------------------------------------------------
# Defining property of each rule
# --------------------------------------------------------------------------


def test_fixed_weights_scale_se_gradient_only():
    """fixed = G_ASR + w_se G_SE everywhere, zero G_ASR included (no reference
    direction is needed for a fixed weighting); w_se = 1 is the plain sum."""
    g_asr = torch.tensor([1.0, 0.0, 0.0, 0.0])
    g_se = torch.tensor([-1.0, 2.0, 3.0, 4.0])
    combined, _, w = combine_blocks(get_rule("fixed", w_se=0.25), g_asr, g_se, [2, 2])
    assert torch.equal(combined, torch.tensor([0.75, 0.5, 0.75, 1.0]))
    assert w.w_asr.tolist() == [1.0, 1.0] and w.w_se.tolist() == [0.25, 0.25]
    assert torch.equal(get_rule("fixed")(g_asr, g_se), g_asr + g_se)


@PROPERTY
@given(pair())
def test_mgda_result_is_min_norm_point_of_hull_and_descends_both_tasks(p):
    """MGDA returns (twice) the min-norm point of {x G_ASR + (1-x) G_SE}: no grid
    point of the segment is shorter, and its dot product with each task
    gradient is >= 0 (both losses non-increasing to first order), which is the
    min-norm point's optimality condition."""
    g_asr, g_se = nonzero_pair(p)
    combined, _, w = combine_blocks(get_rule("mgda"), g_asr, g_se, [g_asr.numel()])
    gamma = float(w.w_asr[0]) / 2
    assert 0.0 <= gamma <= 1.0 and float(w.w_asr + w.w_se) == pytest.approx(2.0)
    point = combined / 2
    xs = torch.linspace(0, 1, 201, dtype=F64).unsqueeze(1)
    segment = torch.linalg.vector_norm(xs * g_asr + (1 - xs) * g_se, dim=1)
    scale = float(norm(g_asr) + norm(g_se))
    assert float(norm(point)) <= float(segment.min()) + 1e-9 * scale
    for g in (g_asr, g_se):
        assert float(torch.dot(point, g)) >= -1e-9 * scale * float(norm(g))


@PROPERTY
@given(pair())
def test_imtl_g_projections_on_both_unit_gradients_are_equal(p):
    """IMTL-G's defining property: g . u_ASR = g . u_SE, with convex weights
    (times 2) summing to 2."""
    g_asr, g_se = nonzero_pair(p)
    combined = get_rule("imtl_g")(g_asr, g_se)
    proj_asr = float(torch.dot(combined, g_asr / norm(g_asr)))
    proj_se = float(torch.dot(combined, g_se / norm(g_se)))
    scale = float(norm(g_asr) + norm(g_se))
    assert proj_asr == pytest.approx(proj_se, rel=1e-9, abs=1e-12 * scale)
    w = get_rule("imtl_g").weights(*gram(g_asr, g_se))
    assert float(w.w_asr + w.w_se) == pytest.approx(2.0) and float(w.w_asr.min()) > 0


@PROPERTY
@given(pair(), st.floats(0.0, 2.0))
def test_cagrad_step_attains_its_dual_optimum(p, c):
    """CAGrad: x* minimises the dual F(x) = g_x . g0 + c|g0||g_x| over [0, 1]
    (checked on a grid), the step d lies in the ball |d - g0| <= c|g0|, and by
    strong duality the worse task's improvement min_i G_i . d equals F(x*)."""
    g_asr, g_se = nonzero_pair(p)
    assume(clear_of_ties(g_asr, g_se))  # collinear pairs: the next test
    rule = get_rule("cagrad", c=c)
    x, _ = rule.dual_point(*gram(g_asr, g_se))
    d = rule(g_asr, g_se) / 2
    g0 = (g_asr + g_se) / 2
    scale = float(norm(g_asr) + norm(g_se)) ** 2

    def dual(x):  # F on a column of points x [k, 1] -> [k]
        g_x = x * g_asr + (1 - x) * g_se
        return g_x @ g0 + c * norm(g0) * torch.linalg.vector_norm(g_x, dim=1)

    best = float(dual(torch.linspace(0, 1, 401, dtype=F64).unsqueeze(1)).min())
    f_star = float(dual(x.reshape(1, 1)))
    assert f_star <= best + 1e-9 * scale
    assert float(norm(d - g0)) <= c * float(norm(g0)) * (1 + 1e-9) + 1e-12 * scale**0.5
    worse = min(float(torch.dot(g_asr, d)), float(torch.dot(g_se, d)))
    assert worse == pytest.approx(f_star, abs=1e-7 * scale)


@pytest.mark.parametrize("c", [0.0, 0.4, 1.0, 1.5])
def test_cagrad_on_one_element_blocks_solves_the_1d_problem(c):
    """One-element blocks (scalar parameters) are always collinear. In 1-D,
    max_d min(a d, b d) over |d - g0| <= c|g0|: same signs give the far end
    d = (1 + c) g0, opposite signs the point nearest 0, d = max(0, 1 - c) g0
    (0 itself once c >= 1)."""
    g_asr = torch.tensor([3.0, 3.0], dtype=F64)
    g_se = torch.tensor([1.0, -1.0], dtype=F64)
    combined = combine_blocks(get_rule("cagrad", c=c), g_asr, g_se, [1, 1])[0]
    expected = torch.tensor([(1 + c) * 4.0, max(0.0, 1 - c) * 2.0], dtype=F64)
    torch.testing.assert_close(combined, expected)


@PROPERTY
@given(pair())
def test_cagrad_with_c_zero_is_the_plain_sum(p):
    """c = 0 shrinks the ball to g0: the step is 2 g0 = G_ASR + G_SE (the paper:
    CAGrad with c = 0 is gradient descent on the average loss)."""
    g_asr, g_se = p
    assert torch.equal(get_rule("cagrad", c=0.0)(g_asr, g_se), g_asr + g_se)


@PROPERTY
@given(pair())
def test_nash_mtl_weights_satisfy_the_bargaining_condition(p):
    """Nash-MTL: alpha > 0 and (G^T G / |G^T G|_F) alpha = 1 / alpha elementwise,
    the Nash bargaining solution's first-order condition (released code's
    normalised Gram matrix)."""
    g_asr, g_se = nonzero_pair(p)
    assume(1.0 + cosine(g_asr, g_se) > 1e-6)  # no solution for opposite gradients
    aa, ss, as_ = gram(g_asr, g_se)
    w = get_rule("nash_mtl").weights(aa, ss, as_)
    alpha = torch.cat([w.w_asr, w.w_se])
    m = torch.tensor([[float(aa), float(as_)], [float(as_), float(ss)]], dtype=F64)
    assert float(alpha.min()) > 0
    torch.testing.assert_close(m @ alpha / torch.linalg.matrix_norm(m), 1 / alpha, rtol=1e-8, atol=0)


def test_nash_mtl_equal_gradients_get_the_plain_sum_and_opposite_ones_fall_back():
    """Equal gradients: alpha = (1, 1) (the sum's scale). Opposite gradients:
    the bargaining set is empty, the weights are infinite, and the rule falls
    back to the plain sum (documented)."""
    g = torch.tensor([3.0, -4.0], dtype=F64)
    assert torch.allclose(get_rule("nash_mtl")(g, g), 2 * g)
    assert torch.equal(get_rule("nash_mtl")(g, -2 * g), -g)


@PROPERTY
@given(pair())
def test_aligned_mtl_makes_the_aligned_gram_matrix_perfectly_conditioned(p):
    """Aligned-MTL: the aligned Gram matrix W M W equals lambda_min I
    (condition number 1) for a full-rank M, the weights are W 1, and W equals
    the eigendecomposition form sqrt(lambda_min) V diag(lambda)^-1/2 V^T."""
    g_asr, g_se = nonzero_pair(p)
    assume(1.0 - abs(cosine(g_asr, g_se)) > 1e-6)  # clearly full rank
    aa, ss, as_ = gram(g_asr, g_se)
    rule = get_rule("aligned_mtl")
    w11, w12, w22 = (float(t) for t in rule.alignment(aa, ss, as_))
    W = torch.tensor([[w11, w12], [w12, w22]], dtype=F64)
    M = torch.tensor([[float(aa), float(as_)], [float(as_), float(ss)]], dtype=F64)
    lam, V = torch.linalg.eigh(M)
    aligned = W @ M @ W
    torch.testing.assert_close(aligned, lam[0] * torch.eye(2, dtype=F64), rtol=0, atol=1e-6 * float(lam[0]))
    cond = torch.linalg.cond(aligned)
    assert float(cond) == pytest.approx(1.0, abs=1e-5)
    reference = lam[0].sqrt() * V @ torch.diag(lam.rsqrt()) @ V.T
    torch.testing.assert_close(W, reference, rtol=1e-6, atol=1e-9 * float(W.abs().max()))
    w = rule.weights(aa, ss, as_)
    assert float(w.w_asr) == pytest.approx(w11 + w12) and float(w.w_se) == pytest.approx(w12 + w22)


def test_aligned_mtl_rank_one_gram_keeps_the_nonzero_eigenvalue():
    """Parallel gradients (rank-one M): like the released code, only the
    non-zero eigenvalue is kept, W = v v^T. G_SE = 2 G_ASR: M = aa [[1, 2],
    [2, 4]], v = [1, 2]/sqrt(5), W 1 = [3, 6]/5, step 3/5 G_ASR + 6/5 G_SE =
    3 G_ASR."""
    g = torch.tensor([1.0, 2.0], dtype=F64)
    torch.testing.assert_close(get_rule("aligned_mtl")(g, 2 * g), 3 * g)


@PROPERTY
@given(pair(), st.floats(-0.99, 0.99), st.floats(0.01, 1.0))
def test_gradvac_raises_the_cosine_to_the_ema_target_when_below_it(p, target, beta):
    """GradVac: when cos(phi) < t, each adjusted gradient (G_SE + x G_ASR, and
    G_ASR + y G_SE, read off the weights) has cosine exactly t with the other
    original one; when cos(phi) >= t nothing changes. Either way the target
    moves to (1 - beta) t + beta cos(phi)."""
    g_asr, g_se = nonzero_pair(p)
    # Exactly opposite gradients span a line: the adjustment cancels G_SE
    # (G_SE' = 0) and no cosine can be measured; the EMA check still applies.
    reachable = 1.0 + cosine(g_asr, g_se) > 1e-9
    rule = get_rule("gradvac", beta=beta)
    rule.load_state_dict({"target_cos": torch.tensor([target], dtype=F64)})
    cos = cosine(g_asr, g_se)
    w = rule.weights(*gram(g_asr, g_se))
    if cos < target:
        assert bool(w.projected)
    if cos < target and reachable:
        se_new = g_se + (float(w.w_asr) - 1) * g_asr
        asr_new = g_asr + (float(w.w_se) - 1) * g_se
        assert cosine(se_new, g_asr) == pytest.approx(target, abs=1e-7)
        assert cosine(asr_new, g_se) == pytest.approx(target, abs=1e-7)
    elif cos >= target:
        assert w.w_asr.tolist() == [1.0] and w.w_se.tolist() == [1.0]
    new_target = float(rule.state_dict()["target_cos"])
    assert new_target == pytest.approx((1 - beta) * target + beta * cos, abs=1e-12)


def test_gradvac_keeps_one_target_per_block_and_skips_degenerate_blocks():
    """Per-block state: each block's EMA moves by its own cosine; a zero or
    non-finite block (a skipped AMP step) leaves its target where it was."""
    g_asr = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=F64)
    g_se = torch.tensor([1.0, 1.0, -1.0, 0.0, 1.0, 2.0, math.nan, 1.0], dtype=F64)
    rule = get_rule("gradvac", beta=0.5)
    start = torch.tensor([0.0, 0.0, 0.2, 0.3], dtype=F64)
    rule.load_state_dict({"target_cos": start})
    combined, _, w = combine_blocks(rule, g_asr, g_se, [2, 2, 2, 2])
    expected = torch.tensor([0.5 * math.sqrt(0.5), -0.5, 0.2, 0.3], dtype=F64)
    torch.testing.assert_close(rule.state_dict()["target_cos"], expected)
    assert w.projected.tolist() == [False, True, False, False]
    assert torch.equal(combined[4:6], g_asr[4:6] + g_se[4:6])


def test_gradvac_is_deterministic_and_resumes_exactly_from_its_state_dict():
    """A run interrupted after 3 steps and resumed from state_dict() gives the
    same 5 combined gradients, bit for bit, as the uninterrupted run (so every
    rank, seeing the same all-reduced gradients, holds the same state)."""
    gen = torch.Generator().manual_seed(3)
    steps = [(torch.randn(700, generator=gen), torch.randn(700, generator=gen) - 0.5)
             for _ in range(5)]  # fmt: skip
    sizes = [300, 0, 400]
    straight = get_rule("gradvac", beta=0.3)
    expected = [combine_blocks(straight, a, b, sizes)[0] for a, b in steps]
    first = get_rule("gradvac", beta=0.3)
    got = [combine_blocks(first, a, b, sizes)[0] for a, b in steps[:3]]
    resumed = get_rule("gradvac", beta=0.3)
    resumed.load_state_dict(first.state_dict())
    got += [combine_blocks(resumed, a, b, sizes)[0] for a, b in steps[3:]]
    assert all(torch.equal(x, y) for x, y in zip(got, expected))
    assert torch.equal(resumed.state_dict()["target_cos"], straight.state_dict()["target_cos"])
    assert any(bool((x != a + b).any()) for x, (a, b) in zip(expected, steps))


def test_gradvac_state_errors_name_the_problem():
    """A state for another block layout, unknown keys or non-cosines are refused."""
    rule = get_rule("gradvac")
    rule.load_state_dict({"target_cos": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"\(3,\) block targets but the gradients have \(2,\)"):
        combine_blocks(rule, torch.ones(4), torch.ones(4), [2, 2])
    with pytest.raises(ValueError, match=r"unknown state keys \['phi'\]"):
        rule.load_state_dict({"phi": torch.zeros(2)})
    with pytest.raises(ValueError, match="cosines in"):
        rule.load_state_dict({"target_cos": torch.tensor([1.5])})
    rule.load_state_dict({})
    assert rule.state_dict() == {}
    with pytest.raises(ValueError, match="'mgda' is stateless"):
        get_rule("mgda").load_state_dict({"target_cos": torch.zeros(2)})
    assert get_rule("mgda").state_dict() == {}


# --------------------------------------------------------------------------
# Guarantees shared with the other rules
# --------------------------------------------------------------------------


@PROPERTY
@given(blocked_pair(), st.floats(1e-3, 1e3), st.sampled_from(NEW_RULES))
def test_every_new_rule_is_positively_homogeneous(p, c, name):
    """rule(c a, c b) = c rule(a, b) for c > 0: all weights are functions of
    scale-free ratios (Nash-MTL thanks to its Frobenius-normalised Gram
    matrix, GradVac's state because it tracks cosines), so AMP loss scaling
    commutes with every rule. Near-(anti)parallel blocks are excluded: there
    Nash-MTL's weights diverge and Aligned-MTL's rank decision can flip."""
    g_asr, g_se, sizes = p
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for a, b in pieces))
    scaled = combine_blocks(make_rule(name), c * g_asr, c * g_se, sizes)[0]
    plain = combine_blocks(make_rule(name), g_asr, g_se, sizes)[0]
    for out_s, out, (a, b) in zip(blocks_of(scaled, sizes), blocks_of(plain, sizes), pieces):
        assert_block_close(out_s, c * out, c * a, c * b, rtol=1e-6)


@PROPERTY
@given(pair(), st.sampled_from(NEW_RULES), st.sampled_from(["asr", "se", "both"]))
def test_every_new_rule_is_finite_on_zero_gradients(p, name, which):
    """A zero task gradient gives a finite result: the plain sum (weights 1, 1,
    no flags) for the adaptive rules, G_ASR + w_se G_SE for fixed."""
    g_asr, g_se = p
    if which in ("asr", "both"):
        g_asr = torch.zeros_like(g_asr)
    if which in ("se", "both"):
        g_se = torch.zeros_like(g_se)
    combined, _, w = combine_blocks(make_rule(name), g_asr, g_se, [g_asr.numel()])
    assert torch.isfinite(combined).all()
    w_se = W_SE if name == "fixed" else 1.0
    assert torch.equal(combined, g_asr + w_se * g_se)
    assert w.w_asr.tolist() == [1.0] and not w.projected.any()


@PROPERTY
@given(blocked_pair(), st.sampled_from(NEW_RULES), st.sampled_from([math.inf, math.nan]), st.integers(0, 10**6))
def test_every_new_rule_passes_non_finite_blocks_through(p, name, bad, pos):
    """A non-finite block stays non-finite (the trainer then skips the step) and
    the other blocks get the same result as without it."""
    g_asr, g_se, sizes = p
    assume(g_asr.numel() > 0)
    pos %= g_asr.numel()
    clean = combine_blocks(make_rule(name), g_asr, g_se, sizes)[0]
    g_se = g_se.clone()
    g_se[pos] = bad
    combined = combine_blocks(make_rule(name), g_asr, g_se, sizes)[0]
    ends = torch.tensor(sizes).cumsum(0).tolist()
    bad_block = next(i for i, end in enumerate(ends) if pos < end)
    for i, (x, y) in enumerate(zip(blocks_of(combined, sizes), blocks_of(clean, sizes))):
        if i == bad_block:
            assert not torch.isfinite(x).all()
        else:
            assert torch.equal(x, y)


@PROPERTY
@given(large_blocked_pair(), st.integers(0, 4), st.sampled_from(NEW_RULES))
def test_every_new_rule_treats_blocks_independently(p, which, name):
    """New gradients in one block change no bit of the other blocks' output."""
    g_asr, g_se, sizes = p
    which %= len(sizes)
    before = combine_blocks(make_rule(name), g_asr, g_se, sizes)[0]
    start = sum(sizes[:which])
    g_se2 = g_se.clone()
    g_se2[start : start + sizes[which]] *= -7.0
    after = combine_blocks(make_rule(name), g_asr, g_se2, sizes)[0]
    for i, (x, y) in enumerate(zip(blocks_of(before, sizes), blocks_of(after, sizes))):
        if i != which:
            assert torch.equal(x, y)


@pytest.mark.parametrize("name", NEW_RULES)
def test_new_rules_never_read_tensor_values_on_host(name):
    """Every new rule (GradVac's first call, which creates its state, and a
    second one that updates it) runs with all tensor-to-host reads forbidden."""
    g_asr, g_se, sizes = sync_test_inputs()
    rule = make_rule(name)
    with host_reads_forbidden():
        first = combine_blocks(rule, g_asr, g_se, sizes)[0]
        second = combine_blocks(rule, g_asr, g_se, sizes)[0]
    assert torch.isfinite(first).all() and torch.isfinite(second).all()
    if name != "gradvac":
        assert torch.equal(first, second)


@pytest.mark.parametrize("name", NEW_RULES)
def test_new_rules_run_on_meta_device(name):
    """On the meta device no value exists: all decisions are tensor ops."""
    g = torch.empty(5000, device="meta")
    rule = make_rule(name)
    for _ in range(2):
        combined, _, w = combine_blocks(rule, g, g, [4000, 0, 1000])
    assert combined.device.type == "meta" and w.w_asr.shape == (3,)


# --------------------------------------------------------------------------
# Registry and configuration
# --------------------------------------------------------------------------


def test_registry_offers_the_new_rules_with_their_defaults():
    """The trainer's --grad_rule choices are sorted(RULES); defaults are the
    papers' (CAGrad c = 0.4, GradVac beta = 0.01)."""
    assert set(NEW_RULES) <= set(RULES)
    assert repr(get_rule("cagrad")) == "CAGrad(c=0.4)"
    assert repr(get_rule("gradvac")) == "GradVac(beta=0.01)"
    assert repr(get_rule("fixed", w_se=0.3)) == "FixedWeights(w_se=0.3)"
    assert repr(get_rule("mgda")) == "MGDA()"
    # The trainer persists the state of exactly the stateful rules.
    assert [name for name, cls in RULES.items() if cls.stateful] == ["gradvac"]


@pytest.mark.parametrize(
    "name, key, bad, message",
    [
        ("cagrad", "c", -0.1, "option c must be a finite number >= 0"),
        ("cagrad", "c", math.inf, "option c must be a finite number >= 0"),
        ("fixed", "w_se", -1, "option w_se must be a finite number >= 0"),
        ("fixed", "w_se", "0.3", "option w_se must be a finite number >= 0"),
        ("gradvac", "beta", 0.0, "option beta must be a finite number > 0"),
        ("gradvac", "beta", 1.5, r"option beta must be in \(0, 1\]"),
        ("gradvac", "beta", True, "option beta must be a finite number > 0"),
    ],
)
def test_bad_options_are_rejected_with_a_clear_error(name, key, bad, message):
    with pytest.raises(ValueError, match=f"'{name}': {message}"):
        get_rule(name, **{key: bad})


def test_options_of_other_rules_are_rejected():
    with pytest.raises(ValueError, match=r"'mgda' does not take option\(s\) \['c'\]"):
        get_rule("mgda", c=0.4)


# --------------------------------------------------------------------------
# Comparison with torchjd 0.18.0 (optional; skipped when not installed)
# --------------------------------------------------------------------------


def random_jacobians(count):
    """Seeded 2 x n Jacobians: conflicting, agreeing and unbalanced pairs."""
    gen = torch.Generator().manual_seed(11)
    for i in range(count):
        n = 2 + i % 7
        g_asr = torch.randn(n, generator=gen, dtype=F64)
        g_se = (torch.randn(n, generator=gen, dtype=F64) + (i % 5 - 2) * g_asr) * 10 ** (i % 3 - 1)
        yield g_asr, g_se


@pytest.mark.parametrize("name", ["mgda", "imtl_g", "aligned_mtl", "gradvac"])
def test_new_rules_match_torchjd(name):
    """Our closed forms equal torchjd's solvers on the same Gramian. torchjd's
    weights are the convex ones (ours are 2x for MGDA, IMTL-G, Aligned-MTL:
    the sum's scale); its GradVac is run with eps = 0 and the same beta."""
    aggregation = pytest.importorskip("torchjd.aggregation")
    if name == "gradvac":
        theirs = aggregation.GradVacWeighting(beta=0.3, eps=0.0)
        ours, factor = get_rule("gradvac", beta=0.3), 1.0
    else:
        theirs = {
            "mgda": lambda: aggregation.MGDAWeighting(epsilon=1e-12, max_iters=1000),
            "imtl_g": aggregation.IMTLGWeighting,
            "aligned_mtl": aggregation.AlignedMTLWeighting,
        }[name]()
        ours, factor = get_rule(name), 0.5
    for g_asr, g_se in random_jacobians(300):
        jac = torch.stack([g_asr, g_se])
        expected = theirs(jac @ jac.T)
        w = ours.weights(*gram(g_asr, g_se))
        got = factor * torch.cat([w.w_asr, w.w_se])
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
