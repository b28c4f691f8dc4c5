"""Synthetic labelled data for tests and benchmarks (real data sets: `eml_jax.datasets`)."""

from __future__ import annotations

import numpy as np


def make_classification(
  n: int, d: int, n_classes: int, *, informative: float = 0.5, sep: float = 2.0, seed: int = 0
):
  """Gaussian classes whose means differ on a random subset of features.

  Args:
    n: instances.
    d: features.
    n_classes: classes (labels ``0..C-1``, roughly balanced).
    informative: fraction of features whose class means differ.
    sep: spread of the class means on informative features.
    seed: NumPy seed.

  Returns:
    ``(X [n, d] float32, y [n] int32)``; features have random scales and offsets, so
    standardisation matters.
  """
  if n < 1 or d < 1 or n_classes < 2:
    raise ValueError(f"need n >= 1, d >= 1, n_classes >= 2; got {n}, {d}, {n_classes}")
  rng = np.random.default_rng(seed)
  y = rng.permutation(np.arange(n) % n_classes).astype(np.int32)
  n_inf = max(1, int(round(informative * d)))
  means = np.zeros((n_classes, d))
  cols = rng.choice(d, n_inf, replace=False)
  means[:, cols] = sep * rng.standard_normal((n_classes, n_inf))
  X = means[y] + rng.standard_normal((n, d))
  X = X * rng.uniform(0.5, 5.0, d) + rng.uniform(-3, 3, d)
  return X.astype(np.float32), y
