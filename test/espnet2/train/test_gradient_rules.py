"""Tests of espnet2.train.gradient_rules (the two-task gradient rules).

The reference for every expected value is shared/spec/gradient_remedy.md. The
rules under test are computed from the 2x2 Gram matrix; the tests compare them
with *literal* vector-form implementations written here from the spec (the
released per-tensor algorithm: project, push, rescale, with the spec's edge
case guards), and check the geometric properties the spec lists.

Floating-point ties: GR is discontinuous where a decision flips (at
``G_SE . G_ASR = 0`` the push adds a whole ``G_ASR``; at ratio ``= K`` the
rescale switches on), so two correct implementations that round differently
may legitimately disagree right at a tie. Property tests therefore skip
examples within a relative 1e-9 of the conflict tie or 1e-6 of the ratio tie;
exact ties (orthogonal gradients) have their own deterministic tests.
"""

import contextlib
import doctest
import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from espnet2.train import gradient_rules
from espnet2.train.gradient_rules import (
    RULES,
    BlockGram,
    GradientRule,
    RuleWeights,
    combine_blocks,
    get_rule,
)

PROPERTY = settings(max_examples=1000, deadline=None, derandomize=True)
F64 = torch.float64
K = 5.0
ALL_RULES = ("sum", "gr", "gr_project_only", "gr_rescale_only", "pcgrad", "pcgrad_sym")


def make_rule(name: str) -> GradientRule:
    """A rule with its default configuration (K = 5 for the K-taking rules)."""
    return get_rule(name, K=K) if name in ("gr", "gr_rescale_only") else get_rule(name)


# --------------------------------------------------------------------------
# Literal vector-form references, written from the spec (may loop, may branch)
# --------------------------------------------------------------------------


def norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x)


def literal_gr(g_asr, g_se, K=K, project=True, rescale=True):
    """The released per-tensor GR on one block, plus the spec's guards.

    Returns ``(combined, cos, ratio)`` where ``cos`` is the original cosine
    and ``ratio`` the post-projection ``|G_SE'| / |G_ASR|`` (for tie checks).
    """
    if not (torch.isfinite(g_asr).all() and torch.isfinite(g_se).all()):
        return g_asr + g_se, math.nan, math.nan
    n_asr, n_se = norm(g_asr), norm(g_se)
    if n_asr == 0 or n_se == 0:
        return g_asr + g_se, math.nan, math.nan
    dot = torch.dot(g_se, g_asr)
    cos = float(dot / (n_asr * n_se))
    if project and dot < 0:
        g_perp = g_se - dot / n_asr**2 * g_asr
        tan_theta = n_se / n_asr
        g_se = g_perp + norm(g_perp) / tan_theta * g_asr / n_asr
    ratio = float(norm(g_se) / n_asr)
    if rescale and ratio > K:
        cos_new = torch.dot(g_se, g_asr) / (norm(g_se) * n_asr)
        if cos_new > 0:
            g_se = cos_new * g_se
            g_asr = g_asr / cos_new
    return g_se + g_asr, cos, ratio


def literal_pcgrad(g_asr, g_se, symmetric):
    """PCGrad on one block: G_SE (and, if symmetric, G_ASR) projected on conflict."""
    if not (torch.isfinite(g_asr).all() and torch.isfinite(g_se).all()):
        return g_asr + g_se
    dot = torch.dot(g_se, g_asr)
    if dot < 0:
        se_new = g_se - dot / norm(g_asr) ** 2 * g_asr
        asr_new = g_asr - dot / norm(g_se) ** 2 * g_se if symmetric else g_asr
        return asr_new + se_new
    return g_asr + g_se


def literal(name, g_asr, g_se):
    """Literal result of rule ``name`` on one block."""
    if name == "sum":
        return g_asr + g_se
    if name in ("pcgrad", "pcgrad_sym"):
        return literal_pcgrad(g_asr, g_se, symmetric=name == "pcgrad_sym")
    project = name != "gr_rescale_only"
    rescale = name != "gr_project_only"
    return literal_gr(g_asr, g_se, project=project, rescale=rescale)[0]


def clear_of_ties(g_asr, g_se, K=K, project=True):
    """False when a decision of the rule sits on a floating-point tie."""
    n_asr, n_se = norm(g_asr), norm(g_se)
    if n_asr == 0 or n_se == 0:
        return True
    _, cos, ratio = literal_gr(g_asr, g_se, K, project=project)
    return abs(cos) > 1e-9 and abs(ratio - K) > 1e-6 * K


def angle(u, v):
    """Angle between two vectors (Kahan's formula, accurate near 0 and pi)."""
    u, v = u / norm(u), v / norm(v)
    return float(2 * torch.atan2(norm(u - v), norm(u + v)))


def assert_block_close(actual, expected, g_asr, g_se, rtol=1e-7):
    """Equal up to ``rtol`` times the block's scale (inputs and output)."""
    scale = float(norm(expected) + norm(g_asr) + norm(g_se))
    torch.testing.assert_close(actual, expected, rtol=0, atol=rtol * scale + 1e-300)


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

SCALES = (1e-3, 0.1, 1.0, 3.0, 10.0, 1e3)
MIXES = (0.0, -3.0, -1.0, -0.3, 0.3, 1.0, 3.0)
N_STYLES = 2 * 2 * len(MIXES) * len(SCALES)
SEED = st.integers(0, 2**32 - 1)


def block_pair(gen, n, style):
    """Two float64 vectors of size ``n``; ``style`` in [0, N_STYLES) picks the structure.

    Small-integer or Gaussian values (integers give exact ties, zeros and
    exactly parallel or antiparallel pairs); G_SE = noise + mix * G_ASR, with
    or without noise (conflicting, agreeing or unrelated pairs); G_SE scaled
    so that a ratio |G_SE|/|G_ASR| > K is common.
    """
    integer, style = style % 2, style // 2
    noiseless, style = style % 2, style // 2
    mix, scale = MIXES[style % len(MIXES)], SCALES[style // len(MIXES)]
    g_asr, noise = torch.randn(2, n, generator=gen, dtype=F64)
    if integer:
        g_asr, noise = (2 * g_asr).round(), (2 * noise).round()
    if noiseless:
        noise = torch.zeros_like(noise)
    return g_asr, (noise + mix * g_asr) * scale


@st.composite
def pair(draw, max_size=8):
    """One block: two float64 vectors of one drawn size and drawn structure."""
    n = draw(st.integers(1, max_size))
    gen = torch.Generator().manual_seed(draw(SEED))
    return block_pair(gen, n, draw(st.integers(0, N_STYLES - 1)))


@st.composite
def blocked_pair(draw):
    """Flat float64 vectors cut into blocks of small, drawn sizes (some empty);
    each block's structure is drawn from the seeded generator."""
    sizes = draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))
    gen = torch.Generator().manual_seed(draw(SEED))
    styles = torch.randint(N_STYLES, (len(sizes),), generator=gen).tolist()
    blocks = [block_pair(gen, n, style) for n, style in zip(sizes, styles)]
    g_asr = torch.cat([a for a, _ in blocks])
    g_se = torch.cat([b for _, b in blocks])
    return g_asr, g_se, sizes


# Sizes around the row length of combine_blocks' segment sums (blocks that
# start exactly on a row edge or one element off, span several rows, or are
# empty), and arbitrary ones.
ROW = gradient_rules._ROW
LARGE_SIZE = st.one_of(
    st.integers(0, 9),
    st.integers(ROW - 8, ROW + 8),
    st.integers(4 * ROW - 5, 4 * ROW + 5),
    st.integers(0, 14 * ROW),
)


@st.composite
def large_blocked_pair(draw, dtype=F64):
    """Random Gaussian blocks (sizes up to thousands), per-block scales."""
    sizes = draw(st.lists(LARGE_SIZE, min_size=1, max_size=5))
    gen = torch.Generator().manual_seed(draw(SEED))
    numel = sum(sizes)
    g_asr = torch.randn(numel, generator=gen, dtype=F64)
    g_se = torch.randn(numel, generator=gen, dtype=F64)
    # Correlate (or anti-correlate) and scale each block so that conflicts,
    # agreements and large ratios all occur.
    start = 0
    for size in sizes:
        mix = float(torch.rand(1, generator=gen)) * 2 - 1
        scale = 10 ** (float(torch.rand(1, generator=gen)) * 4 - 2)
        block = slice(start, start + size)
        g_se[block] = scale * (g_se[block] + 3 * mix * g_asr[block])
        start += size
    return g_asr.to(dtype), g_se.to(dtype), sizes


def blocks_of(x, sizes):
    return torch.split(x, sizes)


# --------------------------------------------------------------------------
# GR geometry (spec, Step 1 "Properties to test")
# --------------------------------------------------------------------------


def projected_se(g_asr, g_se):
    """G_SE' of GR's projection step, read off the project-only rule."""
    return get_rule("gr_project_only")(g_asr, g_se) - g_asr


def conflicting(g_asr, g_se):
    """The pair made conflicting by flipping G_SE when needed (None if orthogonal)."""
    dot = torch.dot(g_asr, g_se)
    if dot == 0:
        return None
    return g_asr, g_se if dot < 0 else -g_se


@PROPERTY
@given(pair())
def test_gr_projection_lands_at_arctan_of_norm_ratio(p):
    """After projection the angle to G_ASR is theta = arctan(|G_SE| / |G_ASR|).

    Examples within 1e-3 of antiparallel are skipped: there the Gram form's
    sin(phi) = sqrt(1 - cos^2) is only accurate to sqrt(eps) ~ 1e-8 absolute,
    which is a large relative error on a tiny G_perp (the module says so).
    """
    pc = conflicting(*p)
    assume(pc is not None)
    g_asr, g_se = pc
    assume(clear_of_ties(g_asr, g_se) and angle(g_asr, g_se) < math.pi - 1e-3)
    theta = math.atan(float(norm(g_se) / norm(g_asr)))
    assert angle(projected_se(g_asr, g_se), g_asr) == pytest.approx(theta, abs=1e-7)


@PROPERTY
@given(pair())
def test_gr_projection_norm_is_sin_phi_times_hypot_of_norms(p):
    """|G_SE'| = sin(phi) * sqrt(|G_SE|^2 + |G_ASR|^2), phi the original angle."""
    pc = conflicting(*p)
    assume(pc is not None)
    g_asr, g_se = pc
    assume(clear_of_ties(g_asr, g_se))
    phi = angle(g_asr, g_se)
    expected = math.sin(phi) * math.hypot(float(norm(g_se)), float(norm(g_asr)))
    scale = float(norm(g_se) + norm(g_asr))
    assert float(norm(projected_se(g_asr, g_se))) == pytest.approx(expected, abs=1e-7 * scale)


@PROPERTY
@given(pair())
def test_gr_leaves_agreeing_pair_with_ratio_at_most_k_unchanged(p):
    """No conflict and |G_SE|/|G_ASR| <= K: GR is exactly the plain sum."""
    g_asr, g_se = p
    dot = torch.dot(g_asr, g_se)
    if dot < 0:
        g_se = -g_se
    assume(clear_of_ties(g_asr, g_se))
    assume(norm(g_asr) > 0 and norm(g_se) / norm(g_asr) <= K)
    combined, _, w = combine_blocks(get_rule("gr", K=K), g_asr, g_se, [g_asr.numel()])
    assert torch.equal(combined, g_asr + g_se)
    assert not w.projected.any() and not w.rescaled.any()


def test_gr_leaves_exactly_orthogonal_pair_unchanged():
    """The conflict test is strict (dot < 0): orthogonal gradients are no conflict."""
    g_asr = torch.tensor([3.0, 4.0, 0.0], dtype=F64)
    g_se = torch.tensor([4.0, -3.0, 1.0], dtype=F64)
    for name in ALL_RULES:
        combined, _, w = combine_blocks(make_rule(name), g_asr, g_se, [3])
        assert torch.equal(combined, g_asr + g_se), name
        assert not w.projected.any() and not w.rescaled.any(), name


def test_gr_projection_then_rescale_matches_spec_numbers():
    """Conflict with |G_SE| >> |G_ASR|: both steps act.

    G_ASR = [1, 0], G_SE = [-1, 10]: G_perp = [0, 10], tan(theta) = sqrt(101),
    so G_SE' = [0, 10] + 10/sqrt(101) * [1, 0]. Then |G_SE'|/|G_ASR| =
    10 sqrt(102/101) = 10.05 > 5 and cos' = 1/sqrt(102): the rescale
    compresses G_SE' by cos' and stretches G_ASR to norm
    sqrt(|G_SE|^2 + |G_ASR|^2) = sqrt(102) (reference, section 2.5).
    """
    g_asr = torch.tensor([1.0, 0.0], dtype=F64)
    g_se = torch.tensor([-1.0, 10.0], dtype=F64)
    combined, _, w = combine_blocks(get_rule("gr", K=5.0), g_asr, g_se, [2])
    assert w.projected.tolist() == [True] and w.rescaled.tolist() == [True]
    g_se_proj = torch.tensor([10 / math.sqrt(101), 10.0], dtype=F64)
    cos_new = 1 / math.sqrt(102)
    expected = cos_new * g_se_proj + g_asr / cos_new
    torch.testing.assert_close(combined, expected, rtol=1e-12, atol=0)
    assert float(norm(g_asr / cos_new)) == pytest.approx(math.sqrt(102))
    torch.testing.assert_close(combined, literal_gr(g_asr, g_se)[0], rtol=1e-12, atol=0)


def test_gr_rescale_without_conflict_matches_spec_numbers():
    """No conflict, |G_SE|/|G_ASR| = sqrt(73) > 5: G_SE'' = cos G_SE, G_ASR'' = G_ASR/cos."""
    g_asr = torch.tensor([1.0, 0.0], dtype=F64)
    g_se = torch.tensor([3.0, 8.0], dtype=F64)
    cos = 3 / math.sqrt(73)
    for name in ("gr", "gr_rescale_only"):
        combined, _, w = combine_blocks(make_rule(name), g_asr, g_se, [2])
        assert w.rescaled.tolist() == [True] and w.projected.tolist() == [False]
        torch.testing.assert_close(combined, cos * g_se + g_asr / cos, rtol=1e-12, atol=0)
    # gr_project_only never rescales; with K = 9 > sqrt(73) gr does not either.
    assert torch.equal(get_rule("gr_project_only")(g_asr, g_se), g_asr + g_se)
    assert torch.equal(get_rule("gr", K=9.0)(g_asr, g_se), g_asr + g_se)


def test_gr_rescale_only_leaves_conflicting_dominant_pair_as_plain_sum():
    """Without projection, cos < 0 must not rescale (it would reverse G_ASR)."""
    g_asr = torch.tensor([1.0, 0.0], dtype=F64)
    g_se = torch.tensor([-3.0, 8.0], dtype=F64)
    combined, _, w = combine_blocks(get_rule("gr_rescale_only", K=5.0), g_asr, g_se, [2])
    assert torch.equal(combined, g_asr + g_se)
    assert not w.rescaled.any()


def test_gr_exactly_antiparallel_se_is_projected_to_zero():
    """G_SE = -3 G_ASR: G_perp = 0, so G_SE' = 0 and only G_ASR remains (no rescale).

    Up to the Gram form's documented accuracy here: sin(phi) = sqrt(1 - cos^2)
    is 0 only to about sqrt(eps) = 1.5e-8, which leaves a push of that size.
    """
    g_asr = torch.tensor([1.0, 2.0], dtype=F64)
    combined, _, w = combine_blocks(get_rule("gr"), g_asr, -3 * g_asr, [2])
    torch.testing.assert_close(combined, g_asr, rtol=0, atol=3e-8 * float(norm(g_asr)))
    assert w.projected.tolist() == [True] and w.rescaled.tolist() == [False]


# --------------------------------------------------------------------------
# Equality with the literal released algorithm, per tensor
# --------------------------------------------------------------------------


@PROPERTY
@given(pair())
def test_gr_call_equals_literal_released_algorithm(p):
    """rule(G_ASR, G_SE) on one block == the vector-form GR written from the spec."""
    g_asr, g_se = p
    assume(clear_of_ties(g_asr, g_se))
    rule = get_rule("gr", K=K)
    expected = literal_gr(g_asr, g_se)[0]
    actual = rule(g_asr, g_se)
    assert_block_close(actual, expected, g_asr, g_se)
    # One block through combine_blocks is the same computation as __call__.
    assert torch.equal(combine_blocks(rule, g_asr, g_se, [g_asr.numel()])[0], actual)


@PROPERTY
@given(blocked_pair())
def test_gr_per_tensor_blocks_equal_literal_loop_over_tensors(p):
    """combine_blocks with per-tensor blocks == the literal algorithm looped per tensor."""
    g_asr, g_se, sizes = p
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for a, b in pieces))
    combined, _, _ = combine_blocks(get_rule("gr", K=K), g_asr, g_se, sizes)
    for out, (a, b) in zip(blocks_of(combined, sizes), pieces):
        assert_block_close(out, literal_gr(a, b)[0], a, b)


@PROPERTY
@given(large_blocked_pair(), st.sampled_from(ALL_RULES))
def test_every_rule_on_large_blocks_equals_literal_and_exact_gram(p, name):
    """Blocks of up to thousands of elements (spanning several rows of the
    segment sums, starting on and next to row edges): per-block Gram entries
    equal the dot products, and every rule equals its literal form."""
    g_asr, g_se, sizes = p
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for a, b in pieces))
    combined, gram, w = combine_blocks(make_rule(name), g_asr, g_se, sizes)
    assert isinstance(gram, BlockGram) and isinstance(w, RuleWeights)
    assert gram.aa.shape == (len(sizes),) and w.w_asr.shape == (len(sizes),)
    for i, (a, b) in enumerate(pieces):
        scale = float(norm(a) * norm(b))
        assert float(gram.aa[i]) == pytest.approx(float(torch.dot(a, a)), rel=1e-12)
        assert float(gram.ss[i]) == pytest.approx(float(torch.dot(b, b)), rel=1e-12)
        assert float(gram.as_[i]) == pytest.approx(float(torch.dot(a, b)), abs=1e-12 * scale)
    for out, (a, b) in zip(blocks_of(combined, sizes), pieces):
        assert_block_close(out, literal(name, a, b), a, b)


@PROPERTY
@given(large_blocked_pair(dtype=torch.float32))
def test_gr_float32_matches_float64_literal(p):
    """float32 gradients: dtype kept, result within float32 accuracy of the
    float64 literal (skipping ties at float32 resolution and near-antiparallel
    pairs, where sin(phi) from the Gram form is good to sqrt(eps32) ~ 3e-4)."""
    g_asr, g_se, sizes = p
    pieces = [
        (a.double(), b.double())
        for a, b in zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes))
    ]
    for a, b in pieces:
        if norm(a) > 0 and norm(b) > 0:
            _, cos, ratio = literal_gr(a, b)
            assume(1e-4 < abs(cos) < 1 - 1e-4 and abs(ratio - K) > 1e-3 * K)
    combined, gram, w = combine_blocks(get_rule("gr", K=K), g_asr, g_se, sizes)
    assert combined.dtype == gram.aa.dtype == w.w_asr.dtype == torch.float32
    for out, (a, b) in zip(blocks_of(combined.double(), sizes), pieces):
        assert_block_close(out, literal_gr(a, b)[0], a, b, rtol=1e-4)


# --------------------------------------------------------------------------
# PCGrad
# --------------------------------------------------------------------------


@PROPERTY
@given(pair())
def test_pcgrad_result_is_orthogonal_to_asr_when_conflicting(p):
    """One-sided PCGrad: on conflict G_SE' = combined - G_ASR is orthogonal to G_ASR."""
    pc = conflicting(*p)
    assume(pc is not None)
    g_asr, g_se = pc
    assume(clear_of_ties(g_asr, g_se))
    combined, _, w = combine_blocks(get_rule("pcgrad"), g_asr, g_se, [g_asr.numel()])
    assert w.projected.tolist() == [True]
    g_se_new = combined - g_asr
    assert abs(float(torch.dot(g_se_new, g_asr))) <= 1e-9 * float(norm(g_se) * norm(g_asr))
    assert_block_close(combined, literal_pcgrad(g_asr, g_se, symmetric=False), g_asr, g_se)


@PROPERTY
@given(blocked_pair())
def test_pcgrad_sym_equals_literal_two_task_pcgrad(p):
    """Two-task PCGrad: each projected onto the ORIGINAL other's normal plane, summed."""
    g_asr, g_se, sizes = p
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for a, b in pieces))
    combined, _, _ = combine_blocks(get_rule("pcgrad_sym"), g_asr, g_se, sizes)
    for out, (a, b) in zip(blocks_of(combined, sizes), pieces):
        assert_block_close(out, literal_pcgrad(a, b, symmetric=True), a, b)


# --------------------------------------------------------------------------
# Properties of every rule
# --------------------------------------------------------------------------


@PROPERTY
@given(blocked_pair(), st.floats(1e-3, 1e3), st.sampled_from(ALL_RULES))
def test_every_rule_is_positively_homogeneous(p, c, name):
    """rule(c a, c b) = c rule(a, b) for c > 0: every weight depends on the Gram
    matrix only through scale-free ratios, so AMP loss scaling commutes with
    the rule (spec reference 1.2)."""
    g_asr, g_se, sizes = p
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for a, b in pieces))
    rule = make_rule(name)
    scaled = combine_blocks(rule, c * g_asr, c * g_se, sizes)[0]
    plain = combine_blocks(rule, g_asr, g_se, sizes)[0]
    for out_s, out, (a, b) in zip(blocks_of(scaled, sizes), blocks_of(plain, sizes), pieces):
        assert_block_close(out_s, c * out, c * a, c * b)


@PROPERTY
@given(pair(), st.sampled_from(ALL_RULES), st.sampled_from(["asr", "se", "both"]))
def test_every_rule_gives_plain_finite_sum_for_zero_gradients(p, name, which):
    """|G_ASR| = 0 (no reference direction) or |G_SE| = 0 (nothing to remedy):
    weights (1, 1), no flags, finite output equal to the plain sum."""
    g_asr, g_se = p
    if which in ("asr", "both"):
        g_asr = torch.zeros_like(g_asr)
    if which in ("se", "both"):
        g_se = torch.zeros_like(g_se)
    combined, _, w = combine_blocks(make_rule(name), g_asr, g_se, [g_asr.numel()])
    assert torch.isfinite(combined).all()
    assert torch.equal(combined, g_asr + g_se)
    assert w.w_asr.tolist() == [1.0] and w.w_se.tolist() == [1.0]
    assert not w.projected.any() and not w.rescaled.any()


@PROPERTY
@given(
    blocked_pair(),
    st.sampled_from(ALL_RULES),
    st.sampled_from([math.inf, -math.inf, math.nan]),
    st.booleans(),
    st.integers(0, 10**6),
)
def test_every_rule_passes_non_finite_blocks_through_as_plain_sum(p, name, bad, in_asr, pos):
    """A non-finite element makes its block's Gram non-finite: that block is
    the plain sum (so it stays non-finite and the trainer skips the step);
    the other blocks are remedied as usual."""
    g_asr, g_se, sizes = p
    assume(g_asr.numel() > 0)
    pos %= g_asr.numel()
    target = g_asr if in_asr else g_se
    target[pos] = bad
    bounds = torch.tensor(sizes).cumsum(0).tolist()
    bad_block = next(i for i, end in enumerate(bounds) if pos < end)
    pieces = list(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes)))
    assume(all(clear_of_ties(a, b) for i, (a, b) in enumerate(pieces) if i != bad_block))
    combined, _, w = combine_blocks(make_rule(name), g_asr, g_se, sizes)
    out_blocks = blocks_of(combined, sizes)
    a, b = pieces[bad_block]
    torch.testing.assert_close(out_blocks[bad_block], a + b, rtol=0, atol=0, equal_nan=True)
    assert not torch.isfinite(out_blocks[bad_block]).all()
    assert float(w.w_asr[bad_block]) == float(w.w_se[bad_block]) == 1.0
    assert not w.projected[bad_block] and not w.rescaled[bad_block]
    for i, (out, (a, b)) in enumerate(zip(out_blocks, pieces)):
        if i != bad_block:
            assert_block_close(out, literal(name, a, b), a, b)


@PROPERTY
@given(large_blocked_pair(), st.integers(0, 4), SEED, st.sampled_from(ALL_RULES))
def test_changing_one_block_leaves_other_blocks_bitwise_unchanged(p, which, seed, name):
    """Blocks are independent: new gradients in one block (even non-finite
    ones) do not change a single bit of any other block's output."""
    g_asr, g_se, sizes = p
    which %= len(sizes)
    rule = make_rule(name)
    before = combine_blocks(rule, g_asr, g_se, sizes)
    start = sum(sizes[:which])
    block = slice(start, start + sizes[which])
    gen = torch.Generator().manual_seed(seed)
    g_asr2, g_se2 = g_asr.clone(), g_se.clone()
    g_asr2[block] = torch.randn(sizes[which], generator=gen, dtype=F64) * 7
    g_se2[block] = -torch.randn(sizes[which], generator=gen, dtype=F64) * 50
    if sizes[which] and seed % 3 == 0:
        g_se2[start] = math.nan
    after = combine_blocks(rule, g_asr2, g_se2, sizes)
    keep = [i for i in range(len(sizes)) if i != which]
    for i, (x, y) in enumerate(zip(blocks_of(before[0], sizes), blocks_of(after[0], sizes))):
        if i != which:
            assert torch.equal(x, y)
    for field_before, field_after in zip((*before[1], *before[2]), (*after[1], *after[2])):
        assert torch.equal(field_before[keep], field_after[keep])


def test_weights_accept_any_equal_shape_elementwise():
    """weights() is elementwise over Gram entries of any shape (here [2, 2])."""
    aa = torch.tensor([[1.0, 1.0], [0.0, 4.0]], dtype=F64)
    ss = torch.tensor([[5.0, 73.0], [2.0, 1.0]], dtype=F64)
    as_ = torch.tensor([[-1.0, 3.0], [0.0, 2.0]], dtype=F64)
    w = get_rule("gr").weights(aa, ss, as_)
    assert isinstance(w, RuleWeights)
    assert all(t.shape == (2, 2) for t in w)
    assert w.w_asr.dtype == F64 and w.projected.dtype == torch.bool
    for i in range(2):
        for j in range(2):
            one = get_rule("gr").weights(aa[i, j : j + 1], ss[i, j : j + 1], as_[i, j : j + 1])
            assert float(w.w_asr[i, j]) == float(one.w_asr)
            assert float(w.w_se[i, j]) == float(one.w_se)
    assert w.projected.tolist() == [[True, False], [False, False]]
    assert w.rescaled.tolist() == [[False, True], [False, False]]


# --------------------------------------------------------------------------
# No host/device synchronisation
# --------------------------------------------------------------------------

SYNCING_METHODS = (
    "item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"
)


@contextlib.contextmanager
def host_reads_forbidden():
    """Make every Tensor -> Python value conversion raise inside the block.

    On a GPU each of these would block the host until the device catches up;
    an ``if dot < 0:`` on a tensor goes through ``__bool__``.
    """

    def refuse(*args, **kwargs):
        raise AssertionError("host/device synchronisation: a tensor value was read on the host")

    with pytest.MonkeyPatch.context() as patch:
        for method in SYNCING_METHODS:
            patch.setattr(torch.Tensor, method, refuse)
        yield


def sync_test_inputs():
    """Three blocks: a conflict with rescale, one element, and an agreement."""
    gen = torch.Generator().manual_seed(0)
    g_asr = torch.randn(6000, generator=gen, dtype=F64)
    g_se = torch.randn(6000, generator=gen, dtype=F64)
    g_se[:2999] = 40 * g_se[:2999] - 30 * g_asr[:2999]
    g_asr[2999], g_se[2999] = 1.0, 2.0
    g_se[3000:] += g_asr[3000:]
    return g_asr, g_se, [2999, 1, 3000]  # a layout no other test builds: cold cache


@pytest.mark.parametrize("name", ALL_RULES)
def test_combine_blocks_never_reads_tensor_values_on_host(name):
    """Every rule, combine_blocks and __call__ run with all host reads of
    tensors forbidden (building a fresh block layout included), and the
    inputs really take the projection and rescale branches."""
    g_asr, g_se, sizes = sync_test_inputs()
    rule = make_rule(name)
    with host_reads_forbidden():
        combined, _, w = combine_blocks(rule, g_asr, g_se, sizes)
        called = rule(g_asr, g_se)
    for i, (a, b) in enumerate(zip(blocks_of(g_asr, sizes), blocks_of(g_se, sizes))):
        assert_block_close(blocks_of(combined, sizes)[i], literal(name, a, b), a, b)
    assert_block_close(called, literal(name, g_asr, g_se), g_asr, g_se)
    if name in ("gr", "pcgrad", "pcgrad_sym", "gr_project_only"):
        assert w.projected.tolist() == [True, False, False]
    if name in ("gr", "gr_rescale_only"):
        assert w.rescaled.tolist()[0] is (name == "gr")


def test_host_read_guard_catches_a_python_branch_on_a_tensor():
    """The guard above can fail: a rule branching with ``if`` on a tensor raises."""

    class Branching(GradientRule):
        name = "branching"

        def _weights(self, aa, ss, as_):
            if (as_ < 0).any():  # the mistake the module must never make
                pass
            one = torch.ones_like(aa)
            return RuleWeights(one, one, one > 2, one > 2)

    g_asr, g_se, sizes = sync_test_inputs()
    with host_reads_forbidden(), pytest.raises(AssertionError, match="host/device synchronisation"):
        combine_blocks(Branching(), g_asr, g_se, sizes)


@pytest.mark.parametrize("name", ALL_RULES)
def test_combine_blocks_runs_on_meta_device(name):
    """On the meta device tensors have no values at all, so any data-dependent
    Python step would raise: the whole computation is decided on the device."""
    g_asr = torch.empty(5000, dtype=torch.float32, device="meta")
    g_se = torch.empty(5000, dtype=torch.float32, device="meta")
    combined, gram, w = combine_blocks(make_rule(name), g_asr, g_se, [4000, 0, 1000])
    assert combined.device.type == "meta" and combined.shape == (5000,)
    assert gram.aa.shape == (3,) and w.projected.dtype == torch.bool


# --------------------------------------------------------------------------
# Registry, configuration and input validation
# --------------------------------------------------------------------------


# The Gram-weighting baselines, tested in test_gradient_rules_more.py.
MORE_RULES = ("fixed", "mgda", "imtl_g", "cagrad", "nash_mtl", "aligned_mtl", "gradvac")


def test_registry_lists_the_rules_with_their_options():
    """The trainer offers sorted(RULES) as --grad_rule choices and builds rules
    with get_rule; K defaults to the released code's 5."""
    assert sorted(RULES) == sorted(ALL_RULES + MORE_RULES)
    assert repr(get_rule("gr", K=3)) == "GradientRemedy(K=3.0)"
    assert get_rule("gr").K == 5.0  # the released code's default
    assert repr(get_rule("gr_rescale_only")) == "GradientRemedyRescaleOnly(K=5.0)"
    for name in ALL_RULES:
        rule = make_rule(name)
        assert isinstance(rule, GradientRule) and rule.name == name


def test_unknown_rule_name_error_lists_the_names():
    """A typo in the config must say which names exist."""
    with pytest.raises(ValueError, match="unknown gradient rule 'gradnorm'.*'gr'.*'pcgrad_sym'"):
        get_rule("gradnorm")


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, True, "5", None])
def test_bad_k_is_rejected_with_a_clear_error(bad):
    """K <= 0, non-finite or non-numeric K would make the rescale meaningless."""
    for name in ("gr", "gr_rescale_only"):
        with pytest.raises(ValueError, match=f"'{name}': option K must be a finite number > 0"):
            get_rule(name, K=bad)


def test_unknown_option_error_names_the_rule_and_its_options():
    """A misspelt or inapplicable option (K for a rule without rescale) is an
    error, not silently ignored."""
    message = r"'gr' does not take option\(s\) \['k'\]; its options are \['K'\]"
    with pytest.raises(ValueError, match=message):
        get_rule("gr", k=5)
    message = r"'pcgrad' does not take option\(s\) \['K'\]; its options are \[\]"
    with pytest.raises(ValueError, match=message):
        get_rule("pcgrad", K=5)


@pytest.mark.parametrize(
    "g_asr, g_se, sizes, message",
    [
        (torch.zeros(4), torch.zeros(4), [2, 1], "summing to the gradient size 4"),
        (torch.zeros(4), torch.zeros(4), [5, -1], "ints >= 0"),
        (torch.zeros(4), torch.zeros(4), [2.0, 2.0], "ints >= 0"),
        (torch.zeros(4), torch.zeros(4), [], "non-empty"),
        (torch.zeros(4), torch.zeros(3), [4], "equal size"),
        (torch.zeros(2, 2), torch.zeros(2, 2), [4], "flat 1-D"),
        (torch.zeros(4), torch.zeros(4, dtype=F64), [4], "one floating dtype"),
        (torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), [4], "floating"),
    ],
)
def test_combine_blocks_rejects_bad_input_with_a_clear_error(g_asr, g_se, sizes, message):
    """Mismatched gradients or block sizes are caller bugs; say what is wrong."""
    with pytest.raises(ValueError, match=message):
        combine_blocks(get_rule("gr"), g_asr, g_se, sizes)


def test_weights_reject_mismatched_gram_entries():
    """Gram entries of different shapes or dtypes cannot be one Gram matrix per block."""
    rule = get_rule("gr")
    with pytest.raises(ValueError, match="equal shapes"):
        rule.weights(torch.ones(2), torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="one floating dtype"):
        rule.weights(torch.ones(2), torch.ones(2, dtype=F64), torch.ones(2))


def test_block_sizes_accept_any_integral_type():
    """Sizes may come from numpy (e.g. np.cumsum of shapes); they are ints."""
    import numpy as np

    g_asr = torch.tensor([1.0, 0.0, 1.0])
    g_se = torch.tensor([-1.0, 2.0, 3.0])
    rule = get_rule("pcgrad")
    by_numpy = combine_blocks(rule, g_asr, g_se, np.array([2, 1]))[0]
    assert torch.equal(by_numpy, combine_blocks(rule, g_asr, g_se, [2, 1])[0])


def test_module_docstring_examples_run():
    """The worked numeric examples in the docstrings are doctests and pass."""
    result = doctest.testmod(gradient_rules, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 20 and result.failed == 0
