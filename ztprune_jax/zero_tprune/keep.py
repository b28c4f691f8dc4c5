"""Static-shape token selection: I-stage top-k, gathers, and attention sub-graphs.

Every count here is a Python int fixed at trace time. Selection is ``lax.top_k`` on
scores, then ``jnp.sort`` of the chosen indices so tokens keep their original order,
then ``take_along_axis``; nothing builds a shape from data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ztprune_jax.zero_tprune import wpr

__all__ = [
  "gather_scores",
  "gather_tokens",
  "prefix_indices",
  "restrict_attention",
  "topk_keep",
]


def prefix_indices(batch: int, num_prefix: int) -> jax.Array:
  """``[B, P]`` int32 indices ``0 … P−1`` of the prefix tokens (CLS, distillation)."""
  return jnp.broadcast_to(jnp.arange(num_prefix, dtype=jnp.int32), (batch, num_prefix))


def topk_keep(scores: jax.Array, num_keep: int, *, num_prefix: int = 1) -> jax.Array:
  """Indices of the prefix tokens and the ``num_keep`` best patch tokens (Zero-TPrune, I-stage).

  Prefix tokens are always kept and never ranked. Ties go to the lower index
  (``lax.top_k``'s rule). The result is sorted, so gathering with it preserves token order.

  Args:
    scores: ``[B, N]`` token importance (higher is kept); prefix entries are ignored.
    num_keep: number of *patch* tokens to keep, ``0 ≤ num_keep ≤ N − num_prefix``.
    num_prefix: number of leading prefix tokens.

  Returns:
    ``[B, num_prefix + num_keep]`` int32 sorted indices into ``N``.

  Raises:
    ValueError: naming ``num_keep`` or ``num_prefix`` when out of range.
  """
  B, N = scores.shape
  if not 0 <= num_prefix <= N:
    raise ValueError(f"num_prefix={num_prefix} must lie in [0, {N}]")
  M = N - num_prefix
  if not isinstance(num_keep, int) or not 0 <= num_keep <= M:
    raise ValueError(f"num_keep={num_keep!r} must be a Python int in [0, {M}] (patch tokens)")
  patch = scores[:, num_prefix:].astype(jnp.float32)  # [B, M]
  patch = jnp.where(jnp.isnan(patch), -jnp.inf, patch)
  _, idx = lax.top_k(patch, num_keep)  # [B, num_keep]
  idx = jnp.sort(idx, axis=-1).astype(jnp.int32) + num_prefix
  return jnp.concatenate([prefix_indices(B, num_prefix), idx], axis=-1)


def gather_tokens(x: jax.Array, idx: jax.Array) -> jax.Array:
  """Tokens at ``idx``: ``x [B, N, D], idx [B, K] -> [B, K, D]`` (same dtype, exact)."""
  return jnp.take_along_axis(x, idx[..., None], axis=1)


def gather_scores(s: jax.Array, idx: jax.Array) -> jax.Array:
  """Scores at ``idx`` along the last axis: ``[..., N], idx [B, K] -> [..., K]``.

  ``s`` is ``[B, N]`` or ``[B, H, N]``.
  """
  if s.ndim == 3:
    return jnp.take_along_axis(s, idx[:, None, :], axis=-1)
  return jnp.take_along_axis(s, idx, axis=-1)


def restrict_attention(attn: jax.Array, idx: jax.Array, *, renormalize: bool = True) -> jax.Array:
  """The attention sub-graph among surviving tokens (Zero-TPrune, I-stage re-run).

  Keeps rows and columns ``idx`` of every head, then (by default) renormalises each row
  to sum to one, so WPR on the sub-graph sees a row-stochastic matrix. A row whose whole
  mass went to removed tokens becomes uniform (our choice). This is the explicit form;
  ``wpr.weighted_pagerank(attn, ..., token_mask=...)`` computes the same scores without
  gathering, and is what the pruning layer uses.

  Args:
    attn: ``[B, H, N, N]`` attention, rows are queries.
    idx: ``[B, K]`` int indices of survivors.
    renormalize: renormalise rows of the sub-graph to sum to one.

  Returns:
    ``[B, H, K, K]``; float32 when renormalised, else ``attn.dtype``.
  """
  rows = jnp.take_along_axis(attn, idx[:, None, :, None], axis=2)  # [B, H, K, N]
  sub = jnp.take_along_axis(rows, idx[:, None, None, :], axis=3)  # [B, H, K, K]
  if not renormalize:
    return sub
  return wpr.normalize_rows(sub)
