"""Wilson intervals against the closed form, and the demo's claims on synthetic numbers."""

import math

import numpy as np
import pytest

from ztprune_jax.eval import intervals

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def _wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
  """Wilson score interval written from its formula (Wilson 1927), not from scipy."""
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
  return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (4490, 5000), (17, 64), (1, 3)])
def test_accuracy_interval_is_the_wilson_interval(k, n):
  lo, hi = intervals.accuracy_interval(k / n, n)
  want = _wilson(k, n)
  # scipy and the closed form agree to rounding (measured 1e-16); 1e-12 leaves margin.
  assert lo == pytest.approx(max(want[0], 0.0), abs=1e-12)
  assert hi == pytest.approx(min(want[1], 1.0), abs=1e-12)


def test_known_value_and_width_shrinks_with_n():
  # 0 of 10 correct: upper bound z²/(n + z²) = 0.2775 (textbook value).
  assert intervals.accuracy_interval(0.0, 10)[1] == pytest.approx(0.27753, abs=1e-5)
  widths = [hi - lo for lo, hi in (intervals.accuracy_interval(0.85, n) for n in (100, 1000))]
  assert widths[1] < widths[0] / 3  # ~1/sqrt(10)


@pytest.mark.parametrize(
  "kwargs,match",
  [(dict(accuracy=0.5, n=0), "n="), (dict(accuracy=1.5, n=10), "accuracy"),
   (dict(accuracy=0.5, n=10, level=1.0), "level")],
)  # fmt: skip
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    intervals.accuracy_interval(**kwargs)


def test_compare_only_orders_disjoint_intervals():
  assert intervals.compare((0.80, 0.82), (0.70, 0.79)) == intervals.ABOVE
  assert intervals.compare((0.70, 0.79), (0.80, 0.82)) == intervals.BELOW
  assert intervals.compare((0.70, 0.80), (0.79, 0.82)) == intervals.OVERLAP


LADDER = ["random", "wpr", "wpr_eir", "wpr_eir_vhf", "zero_tprune"]


def test_paper_claims_on_a_synthetic_summary():
  """The demo's claims from hand-made intervals whose verdicts are known."""
  ci = {
    "random": (0.83, 0.86),
    "tome": (0.88, 0.90),  # clearly above random
    "zero_tprune": (0.84, 0.87),  # clearly below ToMe
    "wpr": (0.82, 0.845),  # overlaps random: not below it
    "wpr_eir": (0.825, 0.85),
    "wpr_eir_vhf": (0.80, 0.823),  # clearly below wpr_eir: the ladder breaks here
  }
  claims = intervals.paper_claims(ci, LADDER)
  paper = claims["paper_order"]
  assert paper["claim"] == "zero_tprune >= tome > random"
  assert paper["steps"] == {"zero_tprune vs tome": "below", "tome vs random": "above"}
  assert paper["holds"] is False
  ladder = claims["ladder"]
  assert ladder["claim"] == "zero_tprune >= wpr_eir_vhf >= wpr_eir >= wpr >= random"
  assert ladder["steps"]["wpr_eir_vhf vs wpr_eir"] == "below"
  assert ladder["holds"] is False

  # Zero-TPrune level with ToMe (overlap) and ToMe above random: the paper's order holds.
  ci_ok = {**ci, "zero_tprune": (0.875, 0.895), "wpr_eir_vhf": (0.83, 0.86)}
  claims = intervals.paper_claims(ci_ok, LADDER)
  assert claims["paper_order"]["holds"] is True
  assert claims["ladder"]["holds"] is True
  # ToMe only overlapping random: "tome > random" is not established.
  ci_tie = {**ci_ok, "tome": (0.85, 0.87)}
  assert intervals.paper_claims(ci_tie, LADDER)["paper_order"]["holds"] is False


def test_claims_of_unmeasured_methods_are_none():
  claims = intervals.paper_claims({"random": (0.1, 0.2)}, LADDER)
  assert claims["paper_order"]["holds"] is None and claims["ladder"]["holds"] is None


def test_paired_difference_counts_discordant_images_and_tests_them_exactly():
  a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
  b = np.array([1, 0, 0, 0, 0, 0, 0, 1, 1, 0], bool)
  out = intervals.paired_difference(a, b)
  assert (out["a_only"], out["b_only"]) == (5, 1)
  assert out["diff"] == pytest.approx(0.4)
  # McNemar exact: two-sided binomial tail of 5 of 6 at p = 1/2 is 14/64.
  assert out["p"] == pytest.approx(14 / 64)
  d = a.astype(float) - b.astype(float)
  half = Z95 * d.std(ddof=1) / np.sqrt(10)
  assert (out["low"], out["high"]) == pytest.approx((0.4 - half, 0.4 + half))
  same = intervals.paired_difference(a, a)
  assert same["p"] == 1.0 and same["diff"] == 0.0 and same["low"] == same["high"] == 0.0
  with pytest.raises(ValueError, match="equal non-empty"):
    intervals.paired_difference(a, b[:5])


def test_mean_interval_is_the_normal_interval_of_the_mean():
  v = np.array([0.1, -0.2, 0.05, 0.3, 0.0])
  mean, half = intervals.mean_interval(v)
  assert mean == pytest.approx(0.05)
  assert half == pytest.approx(Z95 * v.std(ddof=1) / math.sqrt(5))
  assert intervals.mean_interval([0.7]) == (pytest.approx(0.7), 0.0)
  with pytest.raises(ValueError, match="non-empty"):
    intervals.mean_interval(np.zeros((2, 2)))
