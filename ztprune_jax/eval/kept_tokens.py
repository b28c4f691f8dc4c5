"""Properties of the token sets a pruning method keeps, per image (numpy, host side).

Spatial properties are read on the patch grid (``g × g`` patches, row-major; original
position ``P + i·g + j`` for the patch in row ``i``, column ``j`` after ``P`` prefix
tokens). An image's *object* patches are those with any non-zero pixel in the raw image
(Fashion-MNIST: the garment; the rest is the all-zero background). Redundancy is read on
token features. `fit_logistic` is the small Newton fit the analysis links properties to
correctness with (no scikit-learn / statsmodels dependency).

Every per-image function returns ``[B]`` float64; NaN where the property is undefined
(an image without object patches, or with fewer than two kept tokens).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
  "block_indices",
  "boundary_mask",
  "boundary_share",
  "centroid_offset",
  "coverage",
  "distance_to_kept",
  "fit_logistic",
  "kept_grid",
  "neighbour_coverage",
  "object_mask",
  "object_share",
  "redundancy",
  "top_rows",
]


def object_mask(raw: np.ndarray, patch_size: int) -> np.ndarray:
  """Patches holding any non-zero pixel.

  Args:
    raw: ``[B, H, W]`` (or ``[B, H, W, C]``) raw images, 0 = background.
    patch_size: ``p``; ``H`` and ``W`` must be multiples of it.

  Returns:
    ``[B, H/p, W/p]`` bool.
  """
  raw = np.asarray(raw)
  if raw.ndim == 4:
    raw = np.any(raw != 0, axis=-1)
  b, h, w = raw.shape
  if h % patch_size or w % patch_size:
    raise ValueError(f"image {h}x{w} is not divisible by patch_size={patch_size}")
  blocks = (raw != 0).reshape(b, h // patch_size, patch_size, w // patch_size, patch_size)
  return blocks.any(axis=(2, 4))


def kept_grid(positions: np.ndarray, grid: int, num_prefix: int = 1) -> np.ndarray:
  """Kept-patch mask from kept original positions (`PruneState.kept` entries).

  Args:
    positions: ``[B, P + K]`` int original positions (prefix tokens ``< num_prefix``).
    grid: ``g`` patches per side.
    num_prefix: ``P``.

  Returns:
    ``[B, g, g]`` bool, True where the patch is kept.
  """
  pos = np.asarray(positions)
  b = pos.shape[0]
  m = np.zeros((b, num_prefix + grid * grid), bool)
  np.put_along_axis(m, pos, True, axis=1)
  return m[:, num_prefix:].reshape(b, grid, grid)


def _nan_div(num, den):
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  out = np.full(np.broadcast(num, den).shape, np.nan)
  np.divide(num, den, out=out, where=den > 0)
  return out


def object_share(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Share of the kept patches that are object patches (1 − the blank share).

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]``.
  """
  return _nan_div((kept & obj).sum(axis=(1, 2)), kept.sum(axis=(1, 2)))


def coverage(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Share of the object patches that are kept.

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]`` (NaN: no object patch).
  """
  return _nan_div((kept & obj).sum(axis=(1, 2)), obj.sum(axis=(1, 2)))


def _dilate4(m: np.ndarray) -> np.ndarray:
  """``m`` or any of its 4-neighbours, for ``m [B, g, g]`` bool (no wrap-around)."""
  out = m.copy()
  out[:, 1:, :] |= m[:, :-1, :]
  out[:, :-1, :] |= m[:, 1:, :]
  out[:, :, 1:] |= m[:, :, :-1]
  out[:, :, :-1] |= m[:, :, 1:]
  return out


def neighbour_coverage(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Share of the object patches that are kept or have a kept 4-neighbour.

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]`` (NaN: no object patch).
  """
  return _nan_div((_dilate4(kept) & obj).sum(axis=(1, 2)), obj.sum(axis=(1, 2)))


def _grid_xy(g: int) -> np.ndarray:
  """``[g·g, 2]`` (row, column) of every patch, row-major."""
  r, c = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
  return np.stack([r.ravel(), c.ravel()], axis=1).astype(np.float64)


def top_rows(obj: np.ndarray, rows: int = 2) -> np.ndarray:
  """The object patches in the object's first ``rows`` occupied grid rows (its top).

  Args: ``obj`` ``[B, g, g]`` bool; ``rows`` >= 1. Returns ``[B, g, g]`` bool.
  """
  b, g, _ = obj.shape
  occupied = obj.any(axis=2)  # [B, g]
  first = np.where(occupied.any(axis=1), occupied.argmax(axis=1), g)  # [B]
  r = np.arange(g)[None, :]
  band = (r >= first[:, None]) & (r < first[:, None] + rows)  # [B, g]
  return obj & band[:, :, None]


def distance_to_kept(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Mean over object patches of the Euclidean distance (in patches) to the nearest kept
  patch (0 for a kept one).

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]`` (NaN: no object patch or
  nothing kept).
  """
  b, g, _ = kept.shape
  xy = _grid_xy(g)
  d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)  # [g², g²]
  k = kept.reshape(b, 1, g * g)
  nearest = np.where(k, d[None], np.inf).min(axis=-1)  # [B, g²]
  o = obj.reshape(b, g * g)
  total = np.where(o & np.isfinite(nearest), nearest, 0.0).sum(axis=-1)
  valid = kept.reshape(b, -1).any(axis=-1)
  return np.where(valid, _nan_div(total, o.sum(axis=-1)), np.nan)


def boundary_mask(obj: np.ndarray) -> np.ndarray:
  """Object patches on the object's outline: a 4-neighbour outside the object or the grid.

  Args: ``obj`` ``[B, g, g]`` bool. Returns ``[B, g, g]`` bool.
  """
  padded = np.pad(obj, ((0, 0), (1, 1), (1, 1)), constant_values=False)
  interior = padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
  return obj & ~interior


def boundary_share(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Share of the kept object patches that lie on the object's outline (`boundary_mask`).

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]`` (NaN: no kept object patch).
  """
  ko = kept & obj
  return _nan_div((ko & boundary_mask(obj)).sum(axis=(1, 2)), ko.sum(axis=(1, 2)))


def centroid_offset(kept: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """Distance (in patches) between the centroid of the kept patches and the object's.

  Args: ``kept``, ``obj`` ``[B, g, g]`` bool. Returns ``[B]`` (NaN: either is empty).
  """
  b, g, _ = kept.shape
  xy = _grid_xy(g)

  def centroid(m):
    w = m.reshape(b, g * g).astype(np.float64)
    n = w.sum(axis=-1, keepdims=True)
    return _nan_div(w @ xy, n)  # [B, 2]

  return np.linalg.norm(centroid(kept) - centroid(obj), axis=-1)


def block_indices(block_positions: np.ndarray, kept_positions: np.ndarray) -> np.ndarray:
  """Where each kept token sits among the tokens a block processed.

  Args:
    block_positions: ``[B, N]`` original positions of the block's tokens.
    kept_positions: ``[B, K]`` original positions of the tokens kept (a subset).

  Returns:
    ``[B, K]`` int indices into the block's ``N`` tokens.

  Raises:
    ValueError: a kept position is not among the block's tokens.
  """
  eq = np.asarray(block_positions)[:, :, None] == np.asarray(kept_positions)[:, None, :]
  if not eq.any(axis=1).all():
    raise ValueError("kept_positions holds a position the block did not process")
  return eq.argmax(axis=1)


def redundancy(features: np.ndarray) -> np.ndarray:
  """Mean over tokens of the largest cosine similarity to another token of the set.

  Args:
    features: ``[B, K, D]`` one feature vector per kept token.

  Returns:
    ``[B]`` in ``[-1, 1]`` (NaN when ``K < 2``).
  """
  f = np.asarray(features, np.float64)
  b, k, _ = f.shape
  if k < 2:
    return np.full(b, np.nan)
  f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
  sim = np.einsum("bkd,bjd->bkj", f, f)  # [B, K, K]
  sim[:, np.arange(k), np.arange(k)] = -np.inf
  return sim.max(axis=-1).mean(axis=-1)


def fit_logistic(x: np.ndarray, y: np.ndarray, level: float = 0.95, iters: int = 50) -> dict:
  """Logistic regression ``P(y=1) = σ(x·β)`` by Newton's method, with Wald intervals.

  Args:
    x: ``[M, p]`` design (add a column of ones for an intercept).
    y: ``[M]`` bool / 0-1 outcomes.
    level: confidence level of the intervals.
    iters: Newton steps (stops early at convergence).

  Returns:
    ``{"coef": [p], "se": [p], "low": [p], "high": [p], "p": [p], "n": M,
    "converged": bool}`` (lists of floats; ``p`` two-sided Wald p-values).
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  beta = np.zeros(x.shape[1])
  converged = False
  for _ in range(iters):
    mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
    w = mu * (1.0 - mu)
    hess = x.T @ (x * w[:, None])
    step = np.linalg.solve(hess + 1e-12 * np.eye(len(beta)), x.T @ (y - mu))
    beta = beta + step
    if np.max(np.abs(step)) < 1e-10:
      converged = True
      break
  mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
  cov = np.linalg.inv(x.T @ (x * (mu * (1.0 - mu))[:, None]))
  se = np.sqrt(np.diag(cov))
  z = stats.norm.ppf(0.5 + level / 2)
  return {
    "coef": beta.tolist(),
    "se": se.tolist(),
    "low": (beta - z * se).tolist(),
    "high": (beta + z * se).tolist(),
    "p": (2 * stats.norm.sf(np.abs(beta / se))).tolist(),
    "n": int(len(y)),
    "converged": converged,
  }
