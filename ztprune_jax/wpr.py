"""Weighted PageRank (WPR) on the attention graph: Zero-TPrune, I-stage.

Each head's post-softmax attention matrix ``A[b, h]`` is read as the adjacency matrix of
a complete directed graph in which query token ``i`` votes for key token ``j`` with
weight ``A[i, j]``. A token's importance is its stationary vote mass, found by power
iteration without damping: ``s_{t+1} = Aᵀ s_t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["CLS_INITS", "initial_scores", "normalize_rows", "weighted_pagerank"]

CLS_INITS = ("uniform", "sqrt_n", "value")


def normalize_rows(A: jax.Array) -> jax.Array:
  """Makes every row of ``A`` sum to one, in float32.

  Softmax rows already sum to one up to rounding; renormalising once removes the drift a
  bfloat16 cast adds, so that ``Σ s = 1`` holds through many iterations. A row with no
  mass at all (a dangling node, which softmax never produces) becomes uniform, as in
  classic PageRank; this choice is ours, not the paper's.

  Args:
    A: ``[..., N, N]`` non-negative attention weights, rows are queries.

  Returns:
    ``[..., N, N]`` float32, each row summing to one.
  """
  A = jnp.maximum(A.astype(jnp.float32), 0.0)
  row_sum = A.sum(axis=-1, keepdims=True)  # [..., N, 1]
  n = A.shape[-1]
  safe = jnp.where(row_sum > 0, row_sum, 1.0)
  return jnp.where(row_sum > 0, A / safe, 1.0 / n)


def initial_scores(
  num_tokens: int,
  *,
  cls_init: str = "uniform",
  cls_value: float | jax.Array | None = None,
  num_prefix: int = 1,
) -> jax.Array:
  """The WPR starting distribution ``s_0``.

  Zero-TPrune, I-stage, starts from ``s_0 = 1/N``. Whether the CLS token starts
  heavier is not settled by the paper (spec: open), so three choices are offered:

  * ``"uniform"`` (default): ``s_0 = 1/N``, the paper's stated rule;
  * ``"sqrt_n"``: ``s_0 ∝ [√N, …, √N, 1, …, 1]`` (prefix tokens √N times heavier);
  * ``"value"``: ``s_0 ∝ [c, …, c, 1, …, 1]`` with ``c = cls_value`` (may be traced).

  Args:
    num_tokens: N, including prefix tokens.
    cls_init: one of ``CLS_INITS``.
    cls_value: prefix-token weight relative to a patch token, for ``"value"`` only.
    num_prefix: number of leading prefix tokens (CLS, distillation) given the weight.

  Returns:
    ``[N]`` float32 summing to one.

  Raises:
    ValueError: naming ``cls_init``, ``cls_value`` or ``num_prefix`` when invalid.
  """
  if cls_init not in CLS_INITS:
    raise ValueError(f"Unknown cls_init {cls_init!r}; valid: {list(CLS_INITS)}")
  if not 0 <= num_prefix <= num_tokens:
    raise ValueError(f"num_prefix={num_prefix} must lie in [0, {num_tokens}]")
  if cls_init == "value" and cls_value is None:
    raise ValueError("cls_init='value' needs cls_value")
  if cls_init != "value" and cls_value is not None:
    raise ValueError(f"cls_value is only used with cls_init='value', not {cls_init!r}")
  if cls_init == "uniform" or num_prefix == 0:
    return jnp.full((num_tokens,), 1.0 / num_tokens, jnp.float32)
  if cls_init == "sqrt_n":
    w = jnp.asarray(num_tokens**0.5, jnp.float32)
  else:
    w = jnp.maximum(jnp.asarray(cls_value, jnp.float32), 0.0)
  is_prefix = jnp.arange(num_tokens) < num_prefix  # [N]
  s0 = jnp.where(is_prefix, w, 1.0)
  return s0 / s0.sum()


def _vote(A: jax.Array, s: jax.Array) -> jax.Array:
  """One WPR step ``s'[j] = Σ_i A[i, j] s[i]``: ``[B, H, N, N], [B, H, N] -> [B, H, N]``."""
  return jnp.einsum("bhij,bhi->bhj", A, s, precision=lax.Precision.HIGHEST)


def weighted_pagerank(
  attn: jax.Array,
  num_iters: int,
  *,
  cls_init: str = "uniform",
  cls_value: float | jax.Array | None = None,
  num_prefix: int = 1,
  tol: float | jax.Array | None = None,
) -> jax.Array:
  """Weighted PageRank scores of every token, per head (Zero-TPrune, I-stage).

  ``s_0`` from :func:`initial_scores`, then ``s_{t+1} = Aᵀ s_t`` with no damping and no
  per-step ``1/N`` factor. Rows of ``A`` are renormalised once (:func:`normalize_rows`),
  so ``s ≥ 0`` and ``Σ_j s[j] = 1`` for every head. Computed in float32 whatever the
  input dtype.

  With ``tol=None`` exactly ``num_iters`` steps run (``lax.fori_loop``). With a ``tol``
  the iteration stops once ``max_j |s_t[j] − s_{t−1}[j]| < tol`` for every ``(b, h)``, at
  most ``num_iters`` steps (``lax.while_loop``); a head that has converged is frozen, so
  its result does not depend on the rest of the batch.

  Args:
    attn: ``[B, H, N, N]`` post-softmax attention, ``attn[b, h, i, j]`` is what query
      ``i`` gives key ``j``. Any float dtype.
    num_iters: number of WPR steps (static), or the cap when ``tol`` is given. ``0``
      returns ``s_0``.
    cls_init: starting weight of prefix tokens, see :func:`initial_scores`.
    cls_value: prefix weight for ``cls_init="value"`` (may be traced).
    num_prefix: number of prefix tokens (CLS, distillation) at the front.
    tol: optional convergence tolerance (may be traced); its presence is static.

  Returns:
    ``[B, H, N]`` float32 scores, non-negative, summing to one over ``N``.

  Raises:
    ValueError: naming ``attn`` (bad shape) or ``num_iters`` (negative), or as
      :func:`initial_scores`.
  """
  if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
    raise ValueError(f"attn must be [B, H, N, N], got shape {attn.shape}")
  if not isinstance(num_iters, int) or num_iters < 0:
    raise ValueError(f"num_iters must be a non-negative Python int, got {num_iters!r}")
  B, H, N, _ = attn.shape
  A = normalize_rows(attn)  # [B, H, N, N] float32
  s0 = initial_scores(N, cls_init=cls_init, cls_value=cls_value, num_prefix=num_prefix)
  s = jnp.broadcast_to(s0, (B, H, N))  # [B, H, N]

  if tol is None:
    return lax.fori_loop(0, num_iters, lambda _, s: _vote(A, s), s)

  tol = jnp.asarray(tol, jnp.float32)

  def cond(carry):
    t, _, done = carry
    return (t < num_iters) & ~jnp.all(done)

  def body(carry):
    t, s, done = carry
    s_next = _vote(A, s)  # [B, H, N]
    delta = jnp.max(jnp.abs(s_next - s), axis=-1)  # [B, H]
    s_next = jnp.where(done[..., None], s, s_next)
    return t + 1, s_next, done | (delta < tol)

  done0 = jnp.zeros((B, H), bool)
  _, s, _ = lax.while_loop(cond, body, (jnp.int32(0), s, done0))
  return s
