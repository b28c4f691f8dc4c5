"""Position-embedding resampling that matches PyTorch's bicubic interpolation.

`jax.image.resize` uses a different cubic kernel and edge handling than
`torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`, which is what
timm and Hugging Face use to resize position embeddings. Here both of torch's variants
are written as small interpolation matrices (separable, so a 2-D resize is two matmuls):

* ``antialias=False``: Keys cubic convolution with ``a = -0.75``, source coordinate
  ``(i + 0.5) * in / out - 0.5``, indices clamped at the border.
* ``antialias=True`` (timm's default for `resample_abs_pos_embed`): the separable
  antialiased filter with ``a = -0.5``, widened by the scale when downsampling, and
  weights normalised to sum to one.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic convolution kernel evaluated at ``t`` (any shape)."""
  t = np.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = (((t - 5) * t + 8) * t - 4) * a
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
  """Returns ``M`` ``[out_size, in_size]`` so that ``M @ v`` resizes ``v`` like torch.

  Args:
    in_size: source length.
    out_size: target length.
    antialias: match ``F.interpolate(..., antialias=True)`` instead of the plain kernel.
  """
  if in_size < 1 or out_size < 1:
    raise ValueError(f"bicubic_matrix needs positive sizes, got {in_size} -> {out_size}")
  scale = in_size / out_size
  m = np.zeros((out_size, in_size), np.float64)
  if not antialias:
    src = (np.arange(out_size) + 0.5) * scale - 0.5  # [out]
    x0 = np.floor(src)
    t = src - x0
    for k in range(-1, 3):  # the four taps of the cubic kernel
      w = _cubic(t - k, a=-0.75)
      idx = np.clip(x0 + k, 0, in_size - 1).astype(int)
      np.add.at(m, (np.arange(out_size), idx), w)
    return m
  support = 2.0 * max(scale, 1.0)
  inv = 1.0 / max(scale, 1.0)
  for i in range(out_size):
    center = scale * (i + 0.5)
    lo = max(int(center - support + 0.5), 0)
    hi = min(int(center + support + 0.5), in_size)
    j = np.arange(lo, hi)
    w = _cubic((j - center + 0.5) * inv, a=-0.5)
    m[i, lo:hi] = w / w.sum()
  return m


def grid_size(num_patches: int) -> tuple[int, int]:
  """Returns the square grid ``(n, n)`` holding ``num_patches`` tokens."""
  n = math.isqrt(num_patches)
  if n * n != num_patches:
    raise ValueError(f"Cannot infer a square grid from {num_patches} position embeddings")
  return n, n


def resample_pos_embed(
  pos_embed,
  new_grid: tuple[int, int],
  num_prefix: int,
  old_grid: tuple[int, int] | None = None,
  antialias: bool = False,
):
  """Resizes a learned position embedding to a new patch grid (bicubic, torch-exact).

  Works on numpy arrays (checkpoint loading) and inside `jax.jit` (shapes are static).

  Args:
    pos_embed: ``[1, num_prefix + h*w, D]`` embedding; prefix (CLS/dist) rows are kept.
    new_grid: target ``(h', w')``.
    num_prefix: number of leading rows that are not on the grid.
    old_grid: source ``(h, w)``; inferred as square when None.
    antialias: match torch's ``antialias=True`` (timm's default when resizing).

  Returns:
    ``[1, num_prefix + h'*w', D]`` with the input's dtype.
  """
  if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
    raise ValueError(f"pos_embed must be [1, N, D], got shape {tuple(pos_embed.shape)}")
  prefix, grid = pos_embed[:, :num_prefix], pos_embed[0, num_prefix:]
  h, w = old_grid or grid_size(grid.shape[0])
  if h * w != grid.shape[0]:
    raise ValueError(f"old_grid {(h, w)} does not hold {grid.shape[0]} position embeddings")
  if (h, w) == tuple(new_grid):
    return pos_embed
  mh = bicubic_matrix(h, new_grid[0], antialias).astype(np.float32)  # [h', h]
  mw = bicubic_matrix(w, new_grid[1], antialias).astype(np.float32)  # [w', w]
  xp = np if isinstance(pos_embed, np.ndarray) else jnp
  grid = grid.reshape(h, w, -1).astype(np.float32)
  out = xp.einsum("ih,hwd,jw->ijd", mh, grid, mw)  # [h', w', D]
  out = out.reshape(1, new_grid[0] * new_grid[1], -1).astype(pos_embed.dtype)
  return xp.concatenate([prefix, out], axis=1)
