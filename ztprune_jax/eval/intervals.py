"""95 % intervals for accuracies, and orderings of methods that respect them.

An accuracy measured on ``n`` images is a binomial proportion; its Wilson score interval
(scipy's `binomtest(...).proportion_ci(method="wilson")`) says how far it may move on
another draw of images of the same kind. Two methods are ordered ("above" / "below") only
when their intervals do not overlap; otherwise the data cannot tell them apart
("overlap"). This is deliberately conservative (non-overlapping 95 % intervals imply a
difference well beyond the 5 % level). Two methods evaluated on the *same* images are
compared pairwise instead (`paired_difference`): McNemar's exact test on the images where
exactly one of them is right, which sees far smaller differences than two intervals do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = [
  "ABOVE",
  "BELOW",
  "OVERLAP",
  "accuracy_interval",
  "compare",
  "mean_interval",
  "ordering_claims",
  "paired_difference",
  "paper_claims",
]

ABOVE, BELOW, OVERLAP = "above", "below", "overlap"


def accuracy_interval(accuracy: float, n: int, level: float = 0.95) -> tuple[float, float]:
  """Wilson score interval of an accuracy measured on ``n`` examples.

  Args:
    accuracy: fraction correct in ``[0, 1]`` (``correct / n``; rounded to a count).
    n: number of examples, ``>= 1``.
    level: confidence level in ``(0, 1)``.

  Returns:
    ``(low, high)`` in ``[0, 1]``.

  Raises:
    ValueError: ``n < 1``, an accuracy outside ``[0, 1]`` or a level outside ``(0, 1)``.
  """
  if isinstance(n, bool) or int(n) != n or n < 1:
    raise ValueError(f"n={n!r} must be an int >= 1")
  if not 0.0 <= accuracy <= 1.0:
    raise ValueError(f"accuracy={accuracy!r} must be in [0, 1]")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level={level!r} must be in (0, 1)")
  correct = int(round(accuracy * n))
  ci = stats.binomtest(correct, int(n)).proportion_ci(confidence_level=level, method="wilson")
  return float(ci.low), float(ci.high)


def compare(a: Sequence[float], b: Sequence[float]) -> str:
  """``"above"`` when interval ``a`` lies wholly above ``b``, ``"below"`` when wholly below,
  else ``"overlap"``.

  Args:
    a, b: ``(low, high)`` intervals.
  """
  (a_lo, a_hi), (b_lo, b_hi) = a, b
  if a_lo > b_hi:
    return ABOVE
  if a_hi < b_lo:
    return BELOW
  return OVERLAP


def ordering_claims(
  intervals: Mapping[str, Sequence[float]],
  ordering: Sequence[str],
  *,
  strict: Sequence[bool] | None = None,
) -> dict[str, object]:
  """Tests a claimed ordering ``ordering[0] ≥ ordering[1] ≥ …`` pair by adjacent pair.

  A ``≥`` step holds unless the left method is clearly *below* the right one; a strict
  ``>`` step (``strict[i]``) holds only when the left one is clearly *above*. Methods
  missing from ``intervals`` make the claim ``None`` (not measured).

  Args:
    intervals: ``{method: (low, high)}``.
    ordering: methods, best first, e.g. ``("zero_tprune", "tome", "random")``.
    strict: one bool per adjacent pair (default: all ``≥``).

  Returns:
    ``{"claim": "a >= b > c", "steps": {"a vs b": "above"|"below"|"overlap", ...},
    "holds": bool | None}``.
  """
  pairs = list(zip(ordering, ordering[1:], strict=False))
  strict = [False] * len(pairs) if strict is None else list(strict)
  if len(strict) != len(pairs):
    raise ValueError(f"strict has {len(strict)} entries for {len(pairs)} adjacent pairs")
  claim = str(ordering[0]) if ordering else ""
  for (_, right), s in zip(pairs, strict, strict=True):
    claim += (" > " if s else " >= ") + str(right)
  if any(m not in intervals for m in ordering):
    return {"claim": claim, "steps": {}, "holds": None}
  steps, holds = {}, True
  for (left, right), s in zip(pairs, strict, strict=True):
    verdict = compare(intervals[left], intervals[right])
    steps[f"{left} vs {right}"] = verdict
    holds &= verdict == ABOVE if s else verdict != BELOW
  return {"claim": claim, "steps": steps, "holds": bool(holds)}


def paper_claims(top1_ci: dict, ladder: list[str]) -> dict:
  """The paper's orderings at the ladder budget, judged with 95 % intervals.

  Args:
    top1_ci: ``{method: (low, high)}`` top-1 intervals at one budget.
    ladder: the ablation ladder's methods, weakest first (``random``, ``wpr``, …).

  Returns:
    ``{name: ordering_claims(...)}``: ``"zero_tprune >= tome > random"`` (the
    paper's Table 1 ordering: ToMe clearly above random, Zero-TPrune not below ToMe) and
    ``"ladder"`` (each rung not below the previous one).
  """
  paper = ordering_claims(top1_ci, ("zero_tprune", "tome", "random"), strict=(False, True))
  rungs = ordering_claims(top1_ci, tuple(reversed(ladder)))
  return {"paper_order": paper, "ladder": rungs}


def mean_interval(values, level: float = 0.95) -> tuple[float, float]:
  """Mean of ``values`` ``[M]`` and the half-width of its normal interval, ``z·sd/√M``.

  The half-width is 0 for a single value. Used for per-image paired differences (top-1
  hits, feature cosines).

  Raises:
    ValueError: ``values`` not 1-D or empty, or a level outside ``(0, 1)``.
  """
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"values must be a non-empty [M] array, got shape {v.shape}")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level={level!r} must be in (0, 1)")
  m = v.size
  half = float(stats.norm.ppf(0.5 + level / 2) * v.std(ddof=1) / np.sqrt(m)) if m > 1 else 0.0
  return float(v.mean()), half


def paired_difference(correct_a, correct_b, level: float = 0.95) -> dict[str, float]:
  """Accuracy difference of two methods on the same images, with its uncertainty.

  Args:
    correct_a, correct_b: ``[M]`` bool, each image's top-1 hit under method a and b.
    level: confidence level of the interval in ``(0, 1)``.

  Returns:
    ``{"diff": acc_a − acc_b, "low", "high"}`` (normal interval of the mean per-image
    difference, ``±z·sd/√M``), ``"a_only"``/``"b_only"`` (images only a / only b gets
    right) and ``"p"``, McNemar's exact two-sided p-value (a binomial test of ``a_only``
    among the discordant images; 1.0 when there are none).

  Raises:
    ValueError: arrays of different shapes, not 1-D, or empty.
  """
  a = np.asarray(correct_a, bool)
  b = np.asarray(correct_b, bool)
  if a.ndim != 1 or a.shape != b.shape or a.size == 0:
    raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must be equal non-empty [M]")
  diff, half = mean_interval(a.astype(np.float64) - b.astype(np.float64), level)
  a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
  p = stats.binomtest(a_only, a_only + b_only).pvalue if a_only + b_only else 1.0
  return {"diff": diff, "low": diff - half, "high": diff + half, "a_only": a_only,
          "b_only": b_only, "p": float(p)}  # fmt: skip
