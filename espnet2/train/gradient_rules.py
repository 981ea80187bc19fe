"""Two-task gradient rules on the shared SE front-end parameters (pure torch).

A joint SE + ASR model trains the SE front-end with two gradients: ``G_ASR``
(of the weighted ASR loss) and ``G_SE`` (of the weighted SE loss). Plain
multi-task learning steps on ``G_ASR + G_SE``; a *gradient rule* replaces that
sum by ``w_asr * G_ASR + w_se * G_SE``. Every rule here is a *Gram weighting*:
the two weights are a function of the 2x2 Gram matrix of the two gradients,

    aa = |G_ASR|^2,   ss = |G_SE|^2,   as_ = G_ASR . G_SE,

so a rule is a small class with a ``name`` and a ``_weights(aa, ss, as_)``
method (see :class:`GradientRule`), registered in :data:`RULES` and built by
:func:`get_rule`. :func:`combine_blocks` applies a rule block-wise: one Gram
matrix per block of the flat gradient (per parameter tensor, as the released
Gradient Remedy code does, or one block for the whole vector, as the paper's
notation reads).

Rules (``shared/spec/gradient_remedy.md`` is the authoritative statement):

=================== ==========================================================
``sum``             plain multi-task sum (the paper's MTL baseline)
``gr``              Gradient Remedy (Hu et al., ICASSP 2023): project, rescale
``gr_project_only`` GR ablation: the projection step only
``gr_rescale_only`` GR ablation: the rescale step only
``pcgrad``          one-sided PCGrad: G_SE onto G_ASR's normal plane on conflict
``pcgrad_sym``      two-task PCGrad (Yu et al., NeurIPS 2020): each onto the
                    other's normal plane on conflict, then summed
``fixed``           fixed weights ``(1, w_se)`` (a tuned-weight MTL baseline)
``mgda``            MGDA min-norm point (Sener & Koltun, NeurIPS 2018)
``imtl_g``          IMTL-G equal projections (Liu et al., ICLR 2021)
``cagrad``          CAGrad conflict-averse step (Liu et al., NeurIPS 2021)
``nash_mtl``        Nash-MTL bargaining (Navon et al., ICML 2022)
``aligned_mtl``     Aligned-MTL (Senushkin et al., CVPR 2023)
``gradvac``         Gradient Vaccine, stateful EMA target (Wang et al., ICLR 2021)
=================== ==========================================================

The rules from ``fixed`` on are closed forms of the 2x2 problems their papers
solve with a solver for m tasks; ``docs/gradient_rules.md`` lists them.

Design rules shared by all of them:

- Decisions (conflict, ratio > K) are tensor ops (``torch.where``): no Python
  ``if`` on a tensor value, no ``.item()``, hence no host/device
  synchronisation; :func:`combine_blocks` computes all blocks' Gram entries in
  one vectorised pass.
- Degenerate blocks are left alone: ``|G_ASR| = 0`` or ``|G_SE| = 0`` gives the
  plain sum (``fixed`` keeps its weights ``(1, w_se)`` there), and a non-finite
  Gram matrix (inf/nan gradients, e.g. an AMP overflow) gives weights (1, 1),
  so the combined gradient stays non-finite and the trainer's skip-the-step
  logic sees it. No epsilon is added anywhere.
- Rules are stateless (the weights depend only on the current Gram matrix),
  except ``gradvac``, whose EMA target per block is explicit state with
  ``state_dict()``/``load_state_dict()`` (see :class:`GradVac`).
  All of them are positively homogeneous (``rule(c a, c b) = c rule(a, b)``
  for ``c > 0``), so AMP loss scaling commutes with them.
- GR is discontinuous by design: as ``G_SE . G_ASR`` goes from ``0+`` to
  ``0-`` the push adds a whole ``G_ASR`` (``G_SE' -> G_SE + G_ASR``), and the
  rescale switches on at ratio ``K``. Two correct implementations that round
  differently can therefore disagree on a pair that sits on such a tie.
- Accuracy: the Gram form computes ``sin(phi)`` as ``sqrt(1 - cos^2)``, whose
  absolute error is about ``sqrt(machine eps)`` when the two gradients are
  almost exactly (anti)parallel (1e-8 in float64, 3e-4 in float32); elsewhere
  it agrees with the vector form to rounding error. Gram entries are row-wise
  dot products summed over rows (relative error ~3e-6 in float32 on blocks of
  a million elements, 1e-15 in float64).
"""

from __future__ import annotations

import abc
import functools
import inspect
import math
import numbers
from typing import ClassVar, Dict, NamedTuple, Optional, Sequence, Tuple, Type

import torch

__all__ = [
    "BlockGram",
    "RuleWeights",
    "GradientRule",
    "SumRule",
    "GradientRemedy",
    "GradientRemedyProjectOnly",
    "GradientRemedyRescaleOnly",
    "PCGrad",
    "PCGradSymmetric",
    "FixedWeights",
    "MGDA",
    "IMTLG",
    "CAGrad",
    "NashMTL",
    "AlignedMTL",
    "GradVac",
    "RULES",
    "register_rule",
    "get_rule",
    "combine_blocks",
]


class BlockGram(NamedTuple):
    """Gram entries of the two gradients, one entry per block.

    Attributes:
        aa: ``|G_ASR|^2``, shape ``[n_blocks]`` (or any shape, elementwise).
        ss: ``|G_SE|^2``, same shape.
        as_: ``G_ASR . G_SE``, same shape.
    """

    aa: torch.Tensor
    ss: torch.Tensor
    as_: torch.Tensor


class RuleWeights(NamedTuple):
    """A rule's decision per block: ``combined = w_asr * G_ASR + w_se * G_SE``.

    Attributes:
        w_asr: weight of ``G_ASR``, same shape and dtype as the Gram entries.
        w_se: weight of ``G_SE``, same shape and dtype.
        projected: bool tensor, True where the rule removed a conflict
            (all False for rules without a projection step).
        rescaled: bool tensor, True where GR's rescale step acted
            (all False for rules without a rescale step).
    """

    w_asr: torch.Tensor
    w_se: torch.Tensor
    projected: torch.Tensor
    rescaled: torch.Tensor


class GradientRule(abc.ABC):
    """Base class: a two-task rule given by its Gram weighting.

    A subclass sets ``name`` (its key in :data:`RULES`), takes its
    configuration as keyword arguments of ``__init__`` (validated there, stored
    as attributes of the same names) and implements :meth:`_weights` with
    tensor ops only. The base class supplies the guard for non-finite Gram
    matrices, the call on two flat gradients and the ``repr``.
    """

    name: ClassVar[str]
    stateful: ClassVar[bool] = False
    """True for a rule with state to checkpoint (see :meth:`state_dict`)."""

    def weights(
        self, aa: torch.Tensor, ss: torch.Tensor, as_: torch.Tensor
    ) -> RuleWeights:
        """Weights from Gram entries of any (equal) shape, elementwise.

        Args:
            aa: ``|G_ASR|^2`` per block, floating point.
            ss: ``|G_SE|^2`` per block, same shape, dtype and device.
            as_: ``G_ASR . G_SE`` per block, same shape, dtype and device.

        Returns:
            :class:`RuleWeights` of the same shape. Where the Gram entries (or
            the weights they give) are not finite, the weights are (1, 1) and
            both flags False, i.e. the plain sum.
        """
        if not (aa.shape == ss.shape == as_.shape):
            raise ValueError(
                f"{self.name}: Gram entries must have equal shapes, got "
                f"aa {tuple(aa.shape)}, ss {tuple(ss.shape)}, as_ {tuple(as_.shape)}"
            )
        if not aa.is_floating_point() or not (aa.dtype == ss.dtype == as_.dtype):
            raise ValueError(
                f"{self.name}: Gram entries must share one floating dtype, got "
                f"{aa.dtype}, {ss.dtype}, {as_.dtype}"
            )
        w = self._weights(aa, ss, as_)
        ok = (
            torch.isfinite(aa)
            & torch.isfinite(ss)
            & torch.isfinite(as_)
            & torch.isfinite(w.w_asr)
            & torch.isfinite(w.w_se)
        )
        return RuleWeights(
            w_asr=torch.where(ok, w.w_asr, 1.0),
            w_se=torch.where(ok, w.w_se, 1.0),
            projected=w.projected & ok,
            rescaled=w.rescaled & ok,
        )

    @abc.abstractmethod
    def _weights(
        self, aa: torch.Tensor, ss: torch.Tensor, as_: torch.Tensor
    ) -> RuleWeights:
        """The rule itself (tensor ops only, no Python branch on values)."""

    def __call__(self, g_asr: torch.Tensor, g_se: torch.Tensor) -> torch.Tensor:
        """Combine two flat gradients treated as one block.

        Args:
            g_asr: ``G_ASR``, 1-D floating tensor ``[numel]``.
            g_se: ``G_SE``, same shape, dtype and device.

        Returns:
            The combined gradient ``[numel]`` (a new tensor).
        """
        return combine_blocks(self, g_asr, g_se, [g_asr.numel()])[0]

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The rule's state to checkpoint: empty for a stateless rule."""
        return {}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`; a stateless rule accepts only ``{}``."""
        if state:
            raise ValueError(
                f"gradient rule {self.name!r} is stateless, got state keys "
                f"{sorted(state)}"
            )

    def __repr__(self) -> str:
        conf = ", ".join(
            f"{key}={getattr(self, key)!r}" for key in _options(type(self))
        )
        return f"{type(self).__name__}({conf})"


RULES: Dict[str, Type[GradientRule]] = {}
"""Registered rules: ``name -> class``."""


def register_rule(cls: Type[GradientRule]) -> Type[GradientRule]:
    """Class decorator adding a :class:`GradientRule` subclass to :data:`RULES`."""
    if cls.name in RULES:
        raise ValueError(f"gradient rule name {cls.name!r} is already registered")
    RULES[cls.name] = cls
    return cls


def get_rule(name: str, **conf) -> GradientRule:
    """Build a registered rule from its name and configuration.

    Example:
        >>> get_rule("gr", K=5.0)
        GradientRemedy(K=5.0)
        >>> get_rule("sum")
        SumRule()

    Raises:
        ValueError: unknown name (the message lists the names), an option the
            rule does not take (the message lists its options), or a bad
            option value.
    """
    if name not in RULES:
        raise ValueError(
            f"unknown gradient rule {name!r}; choose one of {sorted(RULES)}"
        )
    cls = RULES[name]
    unknown = sorted(set(conf) - set(_options(cls)))
    if unknown:
        raise ValueError(
            f"gradient rule {name!r} does not take option(s) {unknown}; "
            f"its options are {list(_options(cls))}"
        )
    return cls(**conf)


def _options(cls: Type[GradientRule]) -> Tuple[str, ...]:
    """Names of the configuration options (keyword arguments of ``__init__``)."""
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in params if p.kind in keyword and p.name != "self")


def _positive_real(rule: str, key: str, value) -> float:
    """Validate a strictly positive, finite real option value."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"gradient rule {rule!r}: option {key} must be a finite number > 0, "
            f"got {value!r}"
        )
    return float(value)


def _angles(
    aa: torch.Tensor, ss: torch.Tensor, as_: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale-free quantities of a Gram matrix.

    Returns:
        ``(valid, r, cos, sin)``: ``valid`` is True where both norms are
        non-zero; there ``r = |G_SE| / |G_ASR|``, ``cos`` and ``sin`` are those
        of the angle phi between the two gradients (``sin >= 0``). Where
        ``valid`` is False, ``r = 1``, ``cos = 0``, ``sin = 1`` (no conflict).
    """
    valid = (aa > 0) & (ss > 0)
    norm_asr = torch.sqrt(torch.where(valid, aa, 1.0))
    norm_se = torch.sqrt(torch.where(valid, ss, 1.0))
    r = norm_se / norm_asr
    cos = torch.where(valid, as_ / norm_asr / norm_se, 0.0).clamp(-1.0, 1.0)
    sin = torch.sqrt(1.0 - cos * cos)
    return valid, r, cos, sin


@register_rule
class SumRule(GradientRule):
    """Plain multi-task learning: ``G_ASR + G_SE`` (weights 1, 1).

    Example:
        >>> rule = get_rule("sum")
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    name = "sum"

    def _weights(self, aa, ss, as_):
        one = torch.ones_like(aa)
        no = torch.zeros_like(aa, dtype=torch.bool)
        return RuleWeights(one, one, no, no)


@register_rule
class GradientRemedy(GradientRule):
    """Gradient Remedy (Hu et al., ICASSP 2023, arXiv 2302.11362).

    Step 1, projection, only when the two conflict (``G_SE . G_ASR < 0``):
    remove the conflict, ``G_perp = G_SE - (G_SE . G_ASR / |G_ASR|^2) G_ASR``,
    then push towards ASR so that the angle to ``G_ASR`` becomes
    ``theta = arctan(|G_SE| / |G_ASR|)``::

        G_SE' = G_perp + |G_perp| / tan(theta) * G_ASR / |G_ASR|

    Step 2, rescale, when SE wrongly dominates: with
    ``cos' = cos(G_SE', G_ASR)``, if ``|G_SE'| / |G_ASR| > K`` and
    ``cos' > 0``, then ``G_SE'' = cos' G_SE'`` and ``G_ASR'' = G_ASR / cos'``.
    The result is ``G_SE'' + G_ASR''``.

    As a Gram weighting, with ``r = |G_SE|/|G_ASR|`` and phi the angle between
    them: ``G_SE' = G_SE + c G_ASR`` with ``c = sin(phi) - r cos(phi)`` on
    conflict (else 0), ``|G_SE'|/|G_ASR| = sin(phi) sqrt(1 + r^2)`` and
    ``cos' = 1 / sqrt(1 + r^2)`` after a projection; the weights are
    ``(1/cos' + cos' c, cos')`` when rescaled, else ``(1 + c, 1)``.

    Args:
        K: rescale threshold on ``|G_SE'| / |G_ASR|`` (released code: 5;
            the paper asks for K > 1).

    Example (conflict, ratio below K: projection only; the projected
    ``G_SE' = [0.894, 2]`` makes ``arctan(2/0.894) = arctan(sqrt(5))``, the
    angle ``theta`` with ``G_ASR``):

        >>> rule = get_rule("gr", K=5.0)
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([1.8944, 2.0000])

    Example (no conflict, ``|G_SE| / |G_ASR| = sqrt(73) = 8.54 > 5``:
    rescale with ``cos' = 3/sqrt(73) = 0.351``, so ``G_SE'' = [1.053, 2.809]``
    and ``G_ASR'' = [2.848, 0]``):

        >>> w = rule.weights(torch.tensor([1.0]), torch.tensor([73.0]),
        ...                  torch.tensor([3.0]))
        >>> w.w_asr, w.w_se, w.projected, w.rescaled
        (tensor([2.8480]), tensor([0.3511]), tensor([False]), tensor([True]))
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 8.0]))
        tensor([3.9014, 2.8090])
    """

    name = "gr"
    _project: ClassVar[bool] = True
    _rescale: ClassVar[bool] = True

    def __init__(self, K: float = 5.0):
        self.K = _positive_real(self.name, "K", K)

    def _weights(self, aa, ss, as_):
        valid, r, cos, sin = _angles(aa, ss, as_)
        no = torch.zeros_like(valid)
        projected = valid & (as_ < 0) if self._project else no
        c = torch.where(projected, sin - r * cos, 0.0)  # G_SE' = G_SE + c G_ASR
        if not self._rescale:
            return RuleWeights(1.0 + c, torch.ones_like(c), projected, no)
        hyp = torch.hypot(r, torch.ones_like(r))
        ratio = torch.where(projected, sin * hyp, r)  # |G_SE'| / |G_ASR|
        cos_new = torch.where(projected, 1.0 / hyp, cos)  # cos(G_SE', G_ASR)
        rescaled = valid & (ratio > self.K) & (cos_new > 0)
        r_se = torch.where(rescaled, cos_new, 1.0)
        return RuleWeights(1.0 / r_se + r_se * c, r_se, projected, rescaled)


@register_rule
class GradientRemedyProjectOnly(GradientRemedy):
    """GR ablation: projection step only (no rescale), no options.

    Example (same conflict as :class:`GradientRemedy`'s first example):
        >>> rule = get_rule("gr_project_only")
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([1.8944, 2.0000])
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 8.0]))
        tensor([4., 8.])
    """

    name = "gr_project_only"
    _rescale = False

    def __init__(self):
        """No options: the rescale threshold K does not apply."""


@register_rule
class GradientRemedyRescaleOnly(GradientRemedy):
    """GR ablation: rescale step only (no projection).

    The rescale needs ``cos(G_SE, G_ASR) > 0``, so a conflicting pair is left
    as the plain sum instead of reversing ``G_ASR``.

    Args:
        K: rescale threshold on ``|G_SE| / |G_ASR|``.

    Example:
        >>> rule = get_rule("gr_rescale_only", K=5.0)
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 8.0]))
        tensor([3.9014, 2.8090])
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-3.0, 8.0]))
        tensor([-2.,  8.])
    """

    name = "gr_rescale_only"
    _project = False

    def __init__(self, K: float = 5.0):
        super().__init__(K=K)


@register_rule
class PCGrad(GradientRule):
    """One-sided PCGrad: on conflict, ``G_SE`` loses its component along ``G_ASR``.

    ``G_SE' = G_SE - (G_SE . G_ASR / |G_ASR|^2) G_ASR`` when
    ``G_SE . G_ASR < 0``; ``G_ASR`` is kept. Weights ``(1 - as_/aa, 1)`` on
    conflict. This is GR without push and rescale, the paper's closest
    competitor.

    Example (``G_SE' = [0, 2]`` is orthogonal to ``G_ASR``):
        >>> rule = get_rule("pcgrad")
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([1., 2.])
    """

    name = "pcgrad"

    def _weights(self, aa, ss, as_):
        conflict = (aa > 0) & (as_ < 0)
        w_asr = 1.0 - torch.where(conflict, as_ / torch.where(conflict, aa, 1.0), 0.0)
        no = torch.zeros_like(conflict)
        return RuleWeights(w_asr, torch.ones_like(aa), conflict, no)


@register_rule
class PCGradSymmetric(GradientRule):
    """Two-task PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning").

    On conflict (``G_SE . G_ASR < 0``) each gradient is projected onto the
    normal plane of the *original* other one, then the two are summed:
    ``(G_ASR - d/|G_SE|^2 G_SE) + (G_SE - d/|G_ASR|^2 G_ASR)``, ``d`` the dot
    product; weights ``(1 - d/aa, 1 - d/ss)``.

    Example (``G_ASR' = [0.8, 0.4]``, ``G_SE' = [0, 2]``):
        >>> rule = get_rule("pcgrad_sym")
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0.8000, 2.4000])
    """

    name = "pcgrad_sym"

    def _weights(self, aa, ss, as_):
        conflict = (aa > 0) & (ss > 0) & (as_ < 0)
        w_asr = 1.0 - torch.where(conflict, as_ / torch.where(conflict, aa, 1.0), 0.0)
        w_se = 1.0 - torch.where(conflict, as_ / torch.where(conflict, ss, 1.0), 0.0)
        no = torch.zeros_like(conflict)
        return RuleWeights(w_asr, w_se, conflict, no)


def _nonnegative_real(rule: str, key: str, value) -> float:
    """Validate a finite real option value >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"gradient rule {rule!r}: option {key} must be a finite number >= 0, "
            f"got {value!r}"
        )
    return float(value)


def _plain_sum_where_degenerate(
    valid: torch.Tensor, w_asr: torch.Tensor, w_se: torch.Tensor
) -> RuleWeights:
    """Weights ``(w_asr, w_se)`` where ``valid``, else (1, 1); no flags set."""
    no = torch.zeros_like(valid)
    return RuleWeights(
        torch.where(valid, w_asr, 1.0), torch.where(valid, w_se, 1.0), no, no
    )


def _safe(valid: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x`` where ``valid``, else 1 (a denominator that cannot be 0 or nan)."""
    return torch.where(valid, x, 1.0)


@register_rule
class FixedWeights(GradientRule):
    """Fixed weights: ``G_ASR + w_se * G_SE`` (``w_asr = 1``).

    The multi-task baseline with a tuned SE weight on top of the loss weights
    of the model's config. ``w_se = 1`` is the plain sum. The weights do not
    depend on the gradients, so a zero ``G_ASR`` still gets ``w_se * G_SE``.

    Args:
        w_se: weight of ``G_SE`` (finite, ``>= 0``; default 1).

    Example:
        >>> rule = get_rule("fixed", w_se=0.5)
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0.5000, 1.0000])
    """

    name = "fixed"

    def __init__(self, w_se: float = 1.0):
        self.w_se = _nonnegative_real(self.name, "w_se", w_se)

    def _weights(self, aa, ss, as_):
        no = torch.zeros_like(aa, dtype=torch.bool)
        return RuleWeights(torch.ones_like(aa), torch.full_like(aa, self.w_se), no, no)


@register_rule
class MGDA(GradientRule):
    """MGDA (Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018): the min-norm point of the convex hull.

    ``gamma* = argmin_{gamma in [0, 1]} |gamma G_ASR + (1 - gamma) G_SE|^2``
    has the two-task closed form (the paper's Algorithm 1 line for m = 2)::

        gamma* = clip((ss - as_) / (aa + ss - 2 as_), 0, 1)

    (1/2 when the two gradients are equal). The result is non-conflicting:
    its dot product with each task gradient is ``>= 0`` (both losses
    non-increasing to first order). Weights ``(2 gamma*, 2 (1 - gamma*))``:
    the convex weights times the number of tasks, so that two equal gradients
    give the plain sum's step (the sum rule's scale; the paper's update is
    half of it).

    Example (``gamma* = (5 + 1) / (1 + 5 + 2) = 0.75``; the min-norm point
    ``0.75 [1, 0] + 0.25 [-1, 2] = [0.5, 0.5]`` is orthogonal to
    ``G_ASR - G_SE``):

        >>> rule = get_rule("mgda")
        >>> rule.weights(torch.tensor([1.0]), torch.tensor([5.0]),
        ...              torch.tensor([-1.0]))[:2]
        (tensor([1.5000]), tensor([0.5000]))
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([1., 1.])
    """

    name = "mgda"

    def _weights(self, aa, ss, as_):
        valid = (aa > 0) & (ss > 0)
        diff = (aa + ss - 2.0 * as_).clamp(min=0.0)  # |G_ASR - G_SE|^2
        apart = valid & (diff > 0)
        gamma = ((ss - as_) / _safe(apart, diff)).clamp(0.0, 1.0)
        gamma = torch.where(apart, gamma, 0.5)
        return _plain_sum_where_degenerate(valid, 2.0 * gamma, 2.0 - 2.0 * gamma)


@register_rule
class IMTLG(GradientRule):
    """IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).

    The combined gradient ``g = a G_ASR + (1 - a) G_SE`` has equal
    projections on both unit gradients, ``g . u_ASR = g . u_SE``. For two
    tasks the paper's linear system reduces to
    ``a = |G_SE| / (|G_ASR| + |G_SE|)``, i.e. ``g`` is proportional to
    ``u_ASR + u_SE`` (the bisector). Weights ``(2 a, 2 (1 - a))``, the
    paper's weights times the number of tasks (equal gradients give the plain
    sum).

    Example (``|G_ASR| = 1``, ``|G_SE| = sqrt(5)``: ``a = sqrt(5)/(1 +
    sqrt(5)) = 0.691``; ``g = [0.764, 1.236]`` projects to 0.764 on
    ``u_ASR = [1, 0]`` and on ``u_SE = [-1, 2]/sqrt(5)``):

        >>> rule = get_rule("imtl_g")
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0.7639, 1.2361])
    """

    name = "imtl_g"

    def _weights(self, aa, ss, as_):
        valid = (aa > 0) & (ss > 0)
        norm_asr, norm_se = aa.sqrt(), ss.sqrt()
        total = _safe(valid, norm_asr + norm_se)
        return _plain_sum_where_degenerate(
            valid, 2.0 * norm_se / total, 2.0 * norm_asr / total
        )


@register_rule
class CAGrad(GradientRule):
    """CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task
    Learning", NeurIPS 2021).

    The update ``d`` maximises the worse task's improvement ``min_i G_i . d``
    within a ball ``|d - g0| <= c |g0|`` around the average gradient
    ``g0 = (G_ASR + G_SE) / 2``. Its dual is the 1-D convex problem

        x* = argmin_{x in [0, 1]} F(x),
        F(x) = g_x . g0 + c |g0| |g_x|,   g_x = x G_ASR + (1 - x) G_SE,

    and ``d = g0 + c |g0| g_x* / |g_x*|``. With ``A = |G_ASR - G_SE|^2``,
    ``p = (aa - ss) / 2``, ``k = c |g0|``, ``x0`` the MGDA point and
    ``m = (aa ss - as_^2) / A``, ``F' = 0`` gives the closed form
    ``x* = clip(x0 - p sqrt(m / (A (k^2 A - p^2))), 0, 1)`` when
    ``k^2 A > p^2``, else the end point ``x* = 0`` (``p > 0``) or 1. As in
    the released code the step is ``2 d`` (the sum loss's scale), without its
    optional ``1/(1 + c^2)`` rescale; weights
    ``(1 + 2 k x*/|g_x*|, 1 + 2 k (1 - x*)/|g_x*|)``; exactly opposite
    gradients (``cos(phi) = -1``) get ``2 max(0, 1 - c) g0``, the 1-D
    optimum (the general form is 0/0 there for ``c > 1``). Like GR, the Gram
    form loses accuracy for almost (anti)parallel pairs (``1 - |cos| <
    ~1e-9`` in float64).
    ``c = 0`` is the plain sum, as the paper notes; a large ``c`` approaches
    MGDA's direction.

    Args:
        c: radius of the ball relative to ``|g0|`` (finite, ``>= 0``; the
            paper's default 0.4).

    Example (``G_SE = [-0.5, 1]``: ``g0 = [0.25, 0.5]``, ``k = 0.4 |g0| =
    0.224``, ``x* = 0.639``, ``|g_x*| = 0.583``; the step ``d`` improves the
    worse task by ``min_i G_i . d = 0.426 = F(x*)``, against 0.25 for the
    average gradient ``g0``):

        >>> rule = get_rule("cagrad", c=0.4)
        >>> x, k = rule.dual_point(torch.tensor([1.0]), torch.tensor([1.25]),
        ...                        torch.tensor([-0.5]))
        >>> x, k
        (tensor([0.6388]), tensor([0.2236]))
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 1.0]))
        tensor([0.8512, 1.2768])
    """

    name = "cagrad"

    def __init__(self, c: float = 0.4):
        self.c = _nonnegative_real(self.name, "c", c)

    def dual_point(
        self, aa: torch.Tensor, ss: torch.Tensor, as_: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x*, k)``: the dual optimum and ``c |g0|``, elementwise."""
        _, _, _, sin = _angles(aa, ss, as_)
        diff = (aa + ss - 2.0 * as_).clamp(min=0.0)  # A = |G_ASR - G_SE|^2
        apart = diff > 0
        safe_diff = _safe(apart, diff)
        p = 0.5 * (aa - ss)
        k = 0.5 * self.c * (aa + ss + 2.0 * as_).clamp(min=0.0).sqrt()
        x0 = (ss - as_) / safe_diff
        m = (aa.sqrt() * ss.sqrt() * sin) ** 2 / safe_diff  # det / A, >= 0
        gap = k * k * diff - p * p
        interior = apart & (gap > 0)
        t = -p * torch.sqrt(m / (safe_diff * _safe(interior, gap)))
        end = torch.where(p > 0, 0.0, torch.where(p < 0, 1.0, 0.5))
        x = torch.where(interior, (x0 + t).clamp(0.0, 1.0), end)
        return x, k

    def _weights(self, aa, ss, as_):
        valid = (aa > 0) & (ss > 0)
        x, k = self.dual_point(aa, ss, as_)
        norm_gx = (x * x * aa + 2.0 * x * (1.0 - x) * as_ + (1.0 - x) ** 2 * ss)
        norm_gx = norm_gx.clamp(min=0.0).sqrt()
        # Exactly opposite gradients (e.g. any conflicting one-element block):
        # the problem is 1-D and d = max(0, 1 - c) g0 (for c > 1 the ball holds
        # d = 0, where g_x* = 0 and the general form is 0/0).
        _, _, cos, _ = _angles(aa, ss, as_)
        moved = (norm_gx > 0) & (cos > -1.0)
        lam = 2.0 * k / _safe(moved, norm_gx)
        still = torch.full_like(x, max(0.0, 1.0 - self.c))
        w_asr = torch.where(moved, 1.0 + lam * x, still)
        w_se = torch.where(moved, 1.0 + lam * (1.0 - x), still)
        return _plain_sum_where_degenerate(valid, w_asr, w_se)


@register_rule
class NashMTL(GradientRule):
    """Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game",
    ICML 2022).

    The weights ``alpha > 0`` solve the bargaining condition
    ``(G^T G / |G^T G|_F) alpha = 1 / alpha`` elementwise (the released code
    normalises the Gram matrix by its Frobenius norm before solving). For two
    tasks it has the closed form

        alpha_i = sqrt(|G^T G|_F) / (|G_i| sqrt(1 + cos(phi))),

    i.e. the step is proportional to ``u_ASR + u_SE``, like IMTL-G, with a
    scale that grows as the gradients conflict. The released code's cvxpy
    iterations approximate this solution; its ``clip_grad_norm_(1.0)`` after
    the step is the trainer's ``grad_clip``. Equal gradients give weights
    (1, 1). No solution exists for exactly opposite gradients
    (``cos(phi) = -1``): the weights are infinite and the base class falls
    back to the plain sum there.

    Example (``|G^T G|_F = sqrt(1 + 25 + 2) = 5.29``, ``cos = -1/sqrt(5)``,
    so ``alpha = (3.094, 1.384)``; check: ``M alpha / 5.29 = (0.323, 0.723)
    = 1 / alpha``):

        >>> rule = get_rule("nash_mtl")
        >>> w = rule.weights(torch.tensor([1.0]), torch.tensor([5.0]),
        ...                  torch.tensor([-1.0]))
        >>> w.w_asr, w.w_se
        (tensor([3.0939]), tensor([1.3836]))
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([1.7103, 2.7673])
    """

    name = "nash_mtl"

    def _weights(self, aa, ss, as_):
        valid, _, cos, _ = _angles(aa, ss, as_)
        big = _safe(valid, torch.maximum(aa, ss))  # scale to avoid overflow
        fro = big * torch.sqrt(
            (aa / big) ** 2 + (ss / big) ** 2 + 2.0 * (as_ / big) ** 2
        )
        inv = 1.0 / torch.sqrt(1.0 + cos)  # inf for opposite gradients
        return _plain_sum_where_degenerate(
            valid,
            torch.sqrt(fro / _safe(valid, aa)) * inv,
            torch.sqrt(fro / _safe(valid, ss)) * inv,
        )


@register_rule
class AlignedMTL(GradientRule):
    """Aligned-MTL (Senushkin et al., "Independent Component Alignment for
    Multi-Task Learning", CVPR 2023).

    With the Gram matrix ``M = G G^T = V diag(lambda) V^T``, the task
    gradients are aligned by ``W = sqrt(lambda_min) V diag(lambda)^-1/2 V^T``
    (the released code's ``scale_mode='min'``), so that the aligned Gram
    matrix ``W M W = lambda_min I`` has condition number 1; the step is the
    sum of the aligned gradients, i.e. weights ``W 1``. For 2x2 the
    eigendecomposition has a closed form: with ``delta = sqrt(det M)``,
    ``tau = sqrt(aa + ss + 2 delta)`` and ``lambda_max`` the larger
    eigenvalue, ``sqrt(M) = (M + delta I)/tau`` gives::

        W = [[ss + delta, -as_], [-as_, aa + delta]] / (tau sqrt(lambda_max)).

    A rank-one ``M`` (parallel gradients; ``lambda_min <= 2 eps lambda_max``,
    the released code's tolerance) keeps only the non-zero eigenvalue, as the
    released code does: ``W = M / (aa + ss)``. Orthogonal gradients of equal
    norm give weights (1, 1).

    Example (``M = [[1, -1], [-1, 5]]``, ``lambda = 3 +- sqrt(5)``,
    ``delta = 2``, ``tau = sqrt(10)``: ``W = [[7, 1], [1, 3]] / 7.236``; the
    aligned gradients ``[0.829, 0.276]`` and ``[-0.276, 0.829]`` are
    orthogonal with squared norm ``lambda_min = 0.764``):

        >>> rule = get_rule("aligned_mtl")
        >>> rule.alignment(torch.tensor([1.0]), torch.tensor([5.0]),
        ...                torch.tensor([-1.0]))
        (tensor([0.9674]), tensor([0.1382]), tensor([0.4146]))
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0.5528, 1.1056])
    """

    name = "aligned_mtl"

    def alignment(
        self, aa: torch.Tensor, ss: torch.Tensor, as_: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The symmetric 2x2 alignment ``W`` as ``(W_11, W_12, W_22)``, elementwise.

        Where either gradient is zero the entries are meaningless (the rule
        falls back to the plain sum there).
        """
        valid, _, _, sin = _angles(aa, ss, as_)
        trace = aa + ss
        lam_max = 0.5 * (trace + torch.hypot(aa - ss, 2.0 * as_))
        delta = aa.sqrt() * ss.sqrt() * sin  # sqrt(det M), no overflow
        eps = torch.finfo(aa.dtype).eps
        full_rank = valid & (delta * delta > 2.0 * eps * lam_max * lam_max)
        tau = torch.sqrt(trace + 2.0 * delta)
        scale = _safe(full_rank, tau * lam_max.sqrt())
        one_rank = _safe(valid, trace)
        w11 = torch.where(full_rank, (ss + delta) / scale, aa / one_rank)
        w12 = torch.where(full_rank, -as_ / scale, as_ / one_rank)
        w22 = torch.where(full_rank, (aa + delta) / scale, ss / one_rank)
        return w11, w12, w22

    def _weights(self, aa, ss, as_):
        valid = (aa > 0) & (ss > 0)
        w11, w12, w22 = self.alignment(aa, ss, as_)
        return _plain_sum_where_degenerate(valid, w11 + w12, w12 + w22)


@register_rule
class GradVac(GradientRule):
    """Gradient Vaccine (Wang et al., "Gradient Vaccine: Investigating and
    Improving Multi-task Optimization in Massively Multilingual Models",
    ICLR 2021), two tasks, one EMA target per block.

    Each block keeps a target cosine ``t`` (an exponential moving average of
    the observed cosine ``cos(phi)``, starting at 0 as in the paper). When
    ``cos(phi) < t``, each gradient gets a multiple of the *original* other
    one so that its cosine with it becomes ``t``::

        G_SE' = G_SE + |G_SE| (t sin(phi) - cos(phi) sqrt(1 - t^2))
                       / (|G_ASR| sqrt(1 - t^2)) G_ASR

    and symmetrically ``G_ASR'``; the step is ``G_ASR' + G_SE'`` (with two
    tasks the paper's random task order does not matter). Then
    ``t <- (1 - beta) t + beta cos(phi)`` for every block whose gradients are
    finite and non-zero (the EMA is not moved by a skipped, non-finite step).
    ``projected`` flags the adjusted blocks.

    State: ``[n_blocks]`` targets, created at the first call with the Gram
    entries' dtype and device, so the trainer must keep one rule object for
    the whole run and checkpoint :meth:`state_dict`. Computed from the
    gradients the trainer passes (all-reduced ones in its step mode), the
    state is identical on every rank and deterministic.

    Args:
        beta: EMA rate in (0, 1] (the paper's 0.01).

    Example (first call, target 0: the conflicting pair ``cos = -0.447`` is
    made orthogonal on both sides, ``G_SE' = [0, 2]``,
    ``G_ASR' = [0.8, 0.4]``; the target moves to ``-0.0045``):

        >>> rule = get_rule("gradvac", beta=0.01)
        >>> rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0]))
        tensor([0.8000, 2.4000])
        >>> rule.state_dict()
        {'target_cos': tensor([-0.0045])}
    """

    name = "gradvac"
    stateful = True

    def __init__(self, beta: float = 0.01):
        self.beta = _positive_real(self.name, "beta", beta)
        if self.beta > 1.0:
            raise ValueError(
                f"gradient rule {self.name!r}: option beta must be in (0, 1], "
                f"got {beta!r}"
            )
        self._target: Optional[torch.Tensor] = None

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """``{"target_cos": [n_blocks]}`` (a copy); ``{}`` before the first call."""
        return {} if self._target is None else {"target_cos": self._target.clone()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (``{}`` resets to the initial state).

        Raises:
            ValueError: unknown keys, or a target that is not a 1-D floating
                tensor of cosines in [-1, 1].
        """
        if set(state) - {"target_cos"}:
            raise ValueError(
                f"gradient rule {self.name!r}: unknown state keys "
                f"{sorted(set(state) - {'target_cos'})}; expected ['target_cos']"
            )
        target = state.get("target_cos")
        if target is not None and (
            not isinstance(target, torch.Tensor)
            or target.dim() != 1
            or not target.is_floating_point()
            or not bool(((target >= -1.0) & (target <= 1.0)).all())
        ):
            raise ValueError(
                f"gradient rule {self.name!r}: target_cos must be a 1-D floating "
                f"tensor of cosines in [-1, 1], got {target!r}"
            )
        self._target = None if target is None else target.detach().clone()

    def _current_target(self, aa: torch.Tensor) -> torch.Tensor:
        if self._target is None:
            return torch.zeros_like(aa)
        if self._target.shape != aa.shape:
            raise ValueError(
                f"gradient rule {self.name!r}: its state has "
                f"{tuple(self._target.shape)} block targets but the gradients "
                f"have {tuple(aa.shape)} blocks (one rule object per block "
                "layout; changed granularity or shared parameters?)"
            )
        return self._target.to(aa)

    def _weights(self, aa, ss, as_):
        valid, r, cos, sin = _angles(aa, ss, as_)
        target = self._current_target(aa)
        finite = torch.isfinite(aa) & torch.isfinite(ss) & torch.isfinite(as_)
        sin_t = torch.sqrt(1.0 - target * target)
        below = valid & finite & (cos < target) & (sin_t > 0)
        coef = (target * sin - cos * sin_t) / _safe(below, sin_t)
        coef = torch.where(below, coef, 0.0)
        # G_SE' = G_SE + r coef G_ASR and G_ASR' = G_ASR + coef / r G_SE
        w_asr = 1.0 + coef * r
        w_se = 1.0 + coef / r
        observed = valid & finite
        self._target = torch.where(
            observed, (1.0 - self.beta) * target + self.beta * cos, target
        )
        no = torch.zeros_like(valid)
        return RuleWeights(w_asr, w_se, below, no)


# ---------------------------------------------------------------------------
# Block-wise application
# ---------------------------------------------------------------------------

_ROW = 512
"""Row length of the segment sums (see :class:`_BlockLayout`)."""


class _BlockLayout(NamedTuple):
    """Precomputed indices for per-block reductions and weightings.

    The first ``n_rows * _ROW`` elements of a flat gradient are viewed as
    ``[n_rows, _ROW]`` (no copy). A row whose elements all belong to one block
    is a *pure* row: it is reduced with one row-wise dot product and weighted
    with one broadcast weight. The *loose* elements (those of rows that
    straddle a block boundary, at most ``n_blocks - 1`` rows, plus the tail
    after the last full row) are gathered and handled element by element.
    Row sums are accurate pairwise sums; the cached indices have
    ``O(numel / _ROW + n_blocks * _ROW)`` entries.
    """

    n_rows: int
    row_block: torch.Tensor  # int64 [n_rows], block of each row's first element
    pure_rows: torch.Tensor  # int64 [n_pure], ids of the pure rows
    pure_block: torch.Tensor  # int64 [n_pure], block of each pure row
    loose_pos: torch.Tensor  # int64 [n_loose], flat positions of loose elements
    loose_block: torch.Tensor  # int64 [n_loose], block of each loose element


@functools.lru_cache(maxsize=16)
def _block_layout(sizes: Tuple[int, ...], device: torch.device) -> _BlockLayout:
    """Build a layout's indices on the host, once per block sizes and device.

    Moving them to the device is the only host-to-device transfer, and it
    happens once: the trainer calls with the same sizes every step.
    """
    ends = torch.tensor(sizes, dtype=torch.long).cumsum(0)
    numel = sum(sizes)
    n_rows = numel // _ROW

    def block_of(position: torch.Tensor) -> torch.Tensor:
        # The first block ending after the position (skips empty blocks).
        return torch.searchsorted(ends, position, right=True)

    row_start = torch.arange(n_rows) * _ROW
    row_block = block_of(row_start)
    pure = row_block == block_of(row_start + _ROW - 1)
    mixed_rows = torch.nonzero(~pure).flatten()
    loose_pos = torch.cat(
        [
            (mixed_rows.unsqueeze(1) * _ROW + torch.arange(_ROW)).flatten(),
            torch.arange(n_rows * _ROW, numel),
        ]
    )
    return _BlockLayout(
        n_rows=n_rows,
        row_block=row_block.to(device),
        pure_rows=torch.nonzero(pure).flatten().to(device),
        pure_block=row_block[pure].to(device),
        loose_pos=loose_pos.to(device),
        loose_block=block_of(loose_pos).to(device),
    )


def _check_flat_pair(g_asr: torch.Tensor, g_se: torch.Tensor) -> None:
    if g_asr.dim() != 1 or g_se.dim() != 1 or g_asr.shape != g_se.shape:
        raise ValueError(
            "g_asr and g_se must be flat 1-D tensors of equal size, got shapes "
            f"{tuple(g_asr.shape)} and {tuple(g_se.shape)}"
        )
    if not g_asr.is_floating_point() or g_asr.dtype != g_se.dtype:
        raise ValueError(
            "g_asr and g_se must share one floating dtype, got "
            f"{g_asr.dtype} and {g_se.dtype}"
        )
    if g_asr.device != g_se.device:
        raise ValueError(
            f"g_asr and g_se must be on one device, got {g_asr.device} and "
            f"{g_se.device}"
        )


def _block_gram(
    rows: Tuple[torch.Tensor, torch.Tensor],
    loose: Tuple[torch.Tensor, torch.Tensor],
    layout: _BlockLayout,
    n_blocks: int,
) -> BlockGram:
    """Per-block Gram entries ``[n_blocks]`` from the row views and loose elements."""
    entries = []
    for (x_rows, y_rows), (x_loose, y_loose) in (
        ((rows[0], rows[0]), (loose[0], loose[0])),
        ((rows[1], rows[1]), (loose[1], loose[1])),
        ((rows[0], rows[1]), (loose[0], loose[1])),
    ):
        row_sums = torch.linalg.vecdot(x_rows, y_rows)
        entry = x_loose.new_zeros(n_blocks)
        entry.index_add_(0, layout.pure_block, row_sums[layout.pure_rows])
        entry.index_add_(0, layout.loose_block, x_loose * y_loose)
        entries.append(entry)
    return BlockGram(*entries)


def combine_blocks(
    rule: GradientRule,
    g_asr: torch.Tensor,
    g_se: torch.Tensor,
    block_sizes: Sequence[int],
) -> Tuple[torch.Tensor, BlockGram, RuleWeights]:
    """Apply a rule independently to consecutive blocks of flat gradients.

    Args:
        rule: the gradient rule.
        g_asr: ``G_ASR``, 1-D floating tensor ``[numel]``: the concatenation
            of all shared parameters' gradients.
        g_se: ``G_SE``, same shape, dtype and device.
        block_sizes: positive or zero ints summing to ``numel``: one block per
            parameter tensor (per-tensor granularity, the released code's
            choice) or ``[numel]`` (whole-vector granularity).

    Returns:
        ``(combined, gram, weights)``: the combined gradient ``[numel]`` (a new
        tensor), the :class:`BlockGram` with entries ``[n_blocks]`` and the
        :class:`RuleWeights` ``[n_blocks]``.

    Example (two blocks: the first conflicts, the second does not):
        >>> rule = get_rule("pcgrad")
        >>> g_asr = torch.tensor([1.0, 0.0, 1.0])
        >>> g_se = torch.tensor([-1.0, 2.0, 3.0])
        >>> combined, gram, w = combine_blocks(rule, g_asr, g_se, [2, 1])
        >>> combined
        tensor([1., 2., 4.])
        >>> gram.as_, w.projected
        (tensor([-1.,  3.]), tensor([ True, False]))
    """
    _check_flat_pair(g_asr, g_se)
    sizes = tuple(block_sizes)
    if (
        not sizes
        or any(
            isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0
            for s in sizes
        )
        or sum(sizes) != g_asr.numel()
    ):
        shown = f"{list(sizes[:8])}{'...' if len(sizes) > 8 else ''}"
        raise ValueError(
            "block_sizes must be a non-empty sequence of ints >= 0 summing to "
            f"the gradient size {g_asr.numel()}, got {len(sizes)} sizes {shown}"
        )
    layout = _block_layout(tuple(map(int, sizes)), g_asr.device)
    full = layout.n_rows * _ROW
    rows = (g_asr[:full].view(-1, _ROW), g_se[:full].view(-1, _ROW))
    loose = (g_asr[layout.loose_pos], g_se[layout.loose_pos])
    gram = _block_gram(rows, loose, layout, len(sizes))
    weights = rule.weights(*gram)

    combined = torch.empty_like(g_asr)
    combined_rows = combined[:full].view(-1, _ROW)
    torch.mul(rows[0], weights.w_asr[layout.row_block].unsqueeze(1), out=combined_rows)
    combined_rows.addcmul_(rows[1], weights.w_se[layout.row_block].unsqueeze(1))
    loose_combined = loose[0] * weights.w_asr[layout.loose_block]
    loose_combined.addcmul_(loose[1], weights.w_se[layout.loose_block])
    combined.index_copy_(0, layout.loose_pos, loose_combined)
    return combined, gram, weights
