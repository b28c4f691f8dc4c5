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
_AUTO_CHUNK_BYTES = 4 << 20  # attention bytes per WPR chunk with batch_chunk="auto"
_MIN_LEVEL_HEADS = 8  # compaction levels hold at least this many heads
_LEVEL_SHRINK = 4  # each compaction level holds 1/_LEVEL_SHRINK of the previous one's heads
_MIN_COMPACT_ITERS = 8  # fewer steps than this: no compaction (little to save, more to compile)


def normalize_rows(A: jax.Array) -> jax.Array:
  """Makes every row of ``A`` sum to one, in float32.

  Used for explicit attention sub-graphs (``keep.restrict_attention``); WPR itself
  normalises rows implicitly. A row with no mass at all (a dangling node, which softmax
  never produces) becomes uniform, as in classic PageRank; this choice is ours.

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
  s0 = _prefix_weighted(
    num_tokens, num_tokens, cls_init=cls_init, cls_value=cls_value, num_prefix=num_prefix
  )
  return s0 / s0.sum()


def _prefix_weighted(
  num_tokens: int,
  num_alive,
  *,
  cls_init: str,
  cls_value,
  num_prefix: int,
) -> jax.Array:
  """Unnormalised ``s_0`` weights ``[N]``: prefix tokens ``w``, the others 1."""
  if cls_init == "uniform" or num_prefix == 0:
    return jnp.ones((num_tokens,), jnp.float32)
  if cls_init == "sqrt_n":
    w = jnp.sqrt(jnp.asarray(num_alive, jnp.float32))
  else:
    w = jnp.maximum(jnp.asarray(cls_value, jnp.float32), 0.0)
  is_prefix = jnp.arange(num_tokens) < num_prefix  # [N]
  return jnp.where(is_prefix, w, 1.0)


def weighted_pagerank(
  attn: jax.Array,
  num_iters: int,
  *,
  cls_init: str = "uniform",
  cls_value: float | jax.Array | None = None,
  num_prefix: int = 1,
  tol: float | jax.Array | None = None,
  token_mask: jax.Array | None = None,
  batch_chunk: int | str | None = "auto",
  init: jax.Array | None = None,
  snapshot_iter: int | None = None,
  compact: bool = True,
  return_converged: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Weighted PageRank scores of every token, per head (Zero-TPrune, I-stage).

  ``s_0`` from :func:`initial_scores`, then ``s_{t+1} = Aᵀ s_t`` with no damping and no
  per-step ``1/N`` factor. Each row of ``A`` is divided by its sum inside the vote
  (``s_{t+1}[j] = Σ_i A[i, j] s_t[i] / Σ_j' A[i, j']``; a no-op for softmax rows up to
  rounding, and it removes the drift of a bfloat16 cast without materialising a
  normalised copy of ``A``), so ``s ≥ 0`` and ``Σ_j s[j] = 1`` for every head. A row
  with no mass (a dangling node, which softmax never produces) spreads its vote
  uniformly, as in classic PageRank; that choice is ours. Computed in float32 whatever
  the input dtype.

  ``init`` replaces ``s_0`` (restricted to ``token_mask`` and renormalised per head;
  a head with no mass on the alive tokens starts from the default ``s_0``): the
  pruning layer's warm-started I-stage passes an I′ iterate here. ``snapshot_iter``
  also returns the iterate after that many steps, at no extra cost (the I′ run hands
  it to the warm-started I-stage).

  ``token_mask`` runs WPR on the sub-graph of surviving tokens without gathering it:
  the result equals WPR on ``keep.restrict_attention(attn, survivors)`` scattered back
  to ``N`` positions, with zeros at removed tokens. This is how the I-stage re-runs
  WPR after the S-stage.

  With ``tol=None`` exactly ``num_iters`` steps run (``lax.fori_loop``). With a ``tol``
  each head ``(b, h)`` is frozen after the first step with
  ``max_j |s_t[j] − s_{t−1}[j]| < tol`` (at most ``num_iters`` steps, ``lax.while_loop``),
  so its result does not depend on the rest of the batch beyond float rounding; with
  ``compact`` the heads still moving continue as smaller gathered problems, so converged
  heads stop costing steps (static shapes: each level a quarter of the previous one, see
  ``_converge``).

  Args:
    attn: ``[B, H, N, N]`` non-negative post-softmax attention, ``attn[b, h, i, j]`` is
      what query ``i`` gives key ``j``. Any float dtype.
    num_iters: number of WPR steps (static), or the cap when ``tol`` is given. ``0``
      returns ``s_0``.
    cls_init: starting weight of prefix tokens, see :func:`initial_scores`.
    cls_value: prefix weight for ``cls_init="value"`` (may be traced).
    num_prefix: number of prefix tokens (CLS, distillation) at the front; with a
      ``token_mask`` they must be alive.
    tol: optional convergence tolerance (may be traced); its presence is static.
    token_mask: optional ``[B, N]`` bool/0-1 array, true for surviving tokens
      (``cls_init="sqrt_n"`` then weighs prefix tokens by √K for K survivors).
    batch_chunk: how many examples iterate together (static). ``"auto"`` (default): on
      CPU, with more than two iterations, chunks of about 4 MiB of attention, so each
      chunk stays in cache across iterations (about 2.5x faster for DeiT-S at batch 32
      and 30 iterations on our 2-core CPU); elsewhere the whole batch. ``None``: the
      whole batch. An int: the largest divisor of ``B`` not above it. Results do not
      depend on it beyond float rounding.
    init: optional ``[B, H, N]`` non-negative starting scores (any scale).
    snapshot_iter: optional static step ``t`` in ``[0, num_iters]``; then the result is
      ``(s_final, s_t)``. Not with ``tol``.
    compact: with ``tol`` and at least 8 steps, once at most a quarter of the heads of a
      level still move, continue with those heads alone (gathered; a level holds at least
      8 heads): the same arithmetic per head, and steps are only paid by heads that have
      not converged. ``False`` steps the whole chunk until its last head converges.
    return_converged: with ``tol``, also return ``[B, H]`` bool, true where the head
      stopped at the tolerance before the cap.

  Returns:
    ``[B, H, N]`` float32 scores, non-negative, summing to one over ``N`` (zero at
    masked-out tokens); with ``snapshot_iter`` the pair ``(s_final, s_t)``, both so;
    with ``return_converged`` the pair ``(scores, converged)``.

  Raises:
    ValueError: naming ``attn`` (bad shape), ``num_iters`` (negative), ``token_mask``
      or ``init`` (bad shape), ``batch_chunk`` or ``snapshot_iter``, or as
      :func:`initial_scores`.
  """
  if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
    raise ValueError(f"attn must be [B, H, N, N], got shape {attn.shape}")
  if not isinstance(num_iters, int) or isinstance(num_iters, bool) or num_iters < 0:
    raise ValueError(f"num_iters must be a non-negative Python int, got {num_iters!r}")
  B, H, N, _ = attn.shape
  initial_scores(N, cls_init=cls_init, cls_value=cls_value, num_prefix=num_prefix)  # validates
  if token_mask is not None and token_mask.shape != (B, N):
    raise ValueError(f"token_mask must be [B, N] = [{B}, {N}], got {token_mask.shape}")
  if init is not None and init.shape != (B, H, N):
    raise ValueError(f"init must be [B, H, N] = [{B}, {H}, {N}], got {init.shape}")
  if snapshot_iter is not None:
    if not isinstance(snapshot_iter, int) or not 0 <= snapshot_iter <= num_iters:
      raise ValueError(f"snapshot_iter={snapshot_iter!r} must be a Python int in [0, {num_iters}]")
    if tol is not None:
      raise ValueError("snapshot_iter is not available with tol (the stop step is traced)")
  if return_converged and tol is None:
    raise ValueError("return_converged needs tol (without it every head runs num_iters steps)")
  chunk = _resolve_chunk(batch_chunk, B, H * N * N * 4, num_iters)
  kwargs = dict(
    cls_init=cls_init,
    cls_value=cls_value,
    num_prefix=num_prefix,
    tol=tol,
    snapshot=snapshot_iter,
    compact=compact,
    return_converged=return_converged,
  )
  if chunk == B:
    return _wpr(attn, num_iters, token_mask=token_mask, init=init, **kwargs)
  # Serial over chunks of the batch, so that one chunk's graph stays in cache for all
  # iterations instead of the whole batch streaming through memory at every step.
  n_chunks = B // chunk
  operands = (
    attn.reshape(n_chunks, chunk, H, N, N),
    None if token_mask is None else token_mask.reshape(n_chunks, chunk, N),
    None if init is None else init.reshape(n_chunks, chunk, H, N),
  )
  out = lax.map(lambda o: _wpr(o[0], num_iters, token_mask=o[1], init=o[2], **kwargs), operands)
  return jax.tree.map(lambda a: a.reshape((B, *a.shape[2:])), out)


def _resolve_chunk(batch_chunk, batch: int, bytes_per_example: int, num_iters: int) -> int:
  """The static number of examples per WPR chunk (a divisor of ``batch``)."""
  if batch_chunk is None or batch_chunk == 0:
    return batch
  if batch_chunk == "auto":
    if jax.default_backend() != "cpu" or num_iters <= 2:
      return batch
    target = max(1, _AUTO_CHUNK_BYTES // max(bytes_per_example, 1))
  elif isinstance(batch_chunk, int) and not isinstance(batch_chunk, bool) and batch_chunk > 0:
    target = batch_chunk
  else:
    raise ValueError(f"batch_chunk must be 'auto', None or a positive int, got {batch_chunk!r}")
  # The largest divisor of the batch not above the target keeps shapes static.
  return max(d for d in range(1, min(target, batch) + 1) if batch % d == 0)


def _wpr(
  attn: jax.Array,
  num_iters: int,
  *,
  cls_init: str,
  cls_value,
  num_prefix: int,
  tol,
  token_mask: jax.Array | None,
  init: jax.Array | None = None,
  snapshot: int | None = None,
  compact: bool = True,
  return_converged: bool = False,
):
  """The WPR iteration itself, on already validated arguments: ``[B, H, N, N] -> [B, H, N]``."""
  B, H, N, _ = attn.shape
  A = attn.astype(jnp.float32)  # [B, H, N, N]; a no-op for float32 input
  hi = lax.Precision.HIGHEST
  if token_mask is None:
    m = None
    num_alive = N
    row_sum = A.sum(axis=-1)  # [B, H, N]
  else:
    m = token_mask.astype(jnp.float32)[:, None, :]  # [B, 1, N]
    num_alive = m.sum(axis=-1, keepdims=True)  # [B, 1, 1]
    row_sum = jnp.einsum("bhij,bxj->bhi", A, m, precision=hi)  # [B, H, N]
  has_mass = row_sum > 0
  inv_row = jnp.where(has_mass, 1.0 / jnp.where(has_mass, row_sum, 1.0), 0.0)  # [B, H, N]
  dangling = (~has_mass).astype(jnp.float32)  # [B, H, N]
  spread = (1.0 / N) if m is None else m / jnp.maximum(num_alive, 1.0)  # uniform over alive

  s = _prefix_weighted(N, num_alive, cls_init=cls_init, cls_value=cls_value, num_prefix=num_prefix)
  s = jnp.broadcast_to(s if m is None else s * m, (B, H, N))  # [B, H, N]
  tiny = jnp.finfo(jnp.float32).tiny
  s = s / jnp.maximum(s.sum(axis=-1, keepdims=True), tiny)
  if init is not None:  # warm start; a head without mass on alive tokens keeps s_0
    w = jnp.maximum(init.astype(jnp.float32), 0.0)
    w = w if m is None else w * m  # [B, H, N]
    mass = w.sum(axis=-1, keepdims=True)  # [B, H, 1]
    s = jnp.where(mass > 0, w / jnp.maximum(mass, tiny), s)

  # Every head's graph on its own: flattened to G = B·H heads.
  G = B * H
  parts = (
    A.reshape(G, N, N),
    inv_row.reshape(G, N),
    dangling.reshape(G, N),
    None if m is None else jnp.broadcast_to(m, (B, H, N)).reshape(G, N),
    spread if m is None else jnp.broadcast_to(spread, (B, H, N)).reshape(G, N),
  )
  s = s.reshape(G, N)

  def vote(_, s):
    return _vote_heads(parts, s)

  if tol is None or (num_iters <= 1 and not return_converged):  # one step: nothing to stop
    if snapshot is None:
      return lax.fori_loop(0, num_iters, vote, s).reshape(B, H, N)
    s_snap = lax.fori_loop(0, snapshot, vote, s)
    s = lax.fori_loop(snapshot, num_iters, vote, s_snap)
    return s.reshape(B, H, N), s_snap.reshape(B, H, N)

  # Until converged, with converged heads compacted away.
  tol = jnp.asarray(tol, jnp.float32)
  sizes = _level_sizes(G, compact, num_iters)
  done0 = jnp.zeros((G,), bool)
  s, done = _converge(parts, s, done0, jnp.int32(0), num_iters, tol, sizes)
  s = s.reshape(B, H, N)
  return (s, done.reshape(B, H)) if return_converged else s


def _level_sizes(num_heads: int, compact: bool, num_iters: int) -> tuple[int, ...]:
  """Static head counts of the compaction levels after the first (shrinking, at least 8)."""
  sizes, g = [], num_heads
  if not compact or num_iters < _MIN_COMPACT_ITERS:
    return ()
  while g >= _LEVEL_SHRINK * _MIN_LEVEL_HEADS:
    g = -(-g // _LEVEL_SHRINK)
    sizes.append(g)
  return tuple(sizes)


def _vote_heads(parts, s):
  """One WPR step on flattened heads: ``[G, N, N]`` graphs, ``[G, N]`` scores.

  ``s'[j] = Σ_i A[i, j] s[i] / rowsum_i``, plus the dangling rows' mass spread uniformly
  over the alive tokens.
  """
  A, inv_row, dangling, m, spread = parts
  hi = lax.Precision.HIGHEST
  out = jnp.einsum("gij,gi->gj", A, s * inv_row, precision=hi)  # [G, N]
  lost = jnp.sum(s * dangling, axis=-1, keepdims=True)  # [G, 1]
  if m is not None:
    out = out * m
  return out + lost * spread


def _converge(parts, s, done, t, num_iters: int, tol, sizes: tuple[int, ...]):
  """Steps every head until it moves less than ``tol`` (then frozen) or ``t = num_iters``.

  Compaction, same arithmetic per head: once at most ``sizes[0]`` heads are still moving,
  those heads (topped up with frozen ones) are gathered into a ``sizes[0]``-head problem
  that continues alone, and so on down ``sizes``; results are scattered back. A frozen
  head's scores never change, so which level it finishes in does not matter.

  Args:
    parts: ``(A [G, N, N], inv_row [G, N], dangling [G, N], mask [G, N] | None,
      spread [G, N] | float)``.
    s: ``[G, N]`` current scores; ``done``: ``[G]`` frozen heads; ``t``: steps taken.
    num_iters: the step cap (static); ``tol``: traced float32 tolerance.
    sizes: static head counts of the next levels, decreasing.

  Returns:
    ``([G, N] scores, [G] bool: stopped by the tolerance before the cap)``.
  """
  next_size = sizes[0] if sizes else 0

  def cond(carry):
    t, _, done = carry
    return (t < num_iters) & (jnp.sum(~done) > next_size)

  def body(carry):
    t, s, done = carry
    s_next = _vote_heads(parts, s)  # [G, N]
    delta = jnp.max(jnp.abs(s_next - s), axis=-1)  # [G]
    s_next = jnp.where(done[:, None], s, s_next)
    return t + 1, s_next, done | (delta < tol)

  t, s, done = lax.while_loop(cond, body, (t, s, done))
  if not sizes:
    return s, done

  def descend(s, done):
    _, idx = lax.top_k((~done).astype(jnp.float32), next_size)  # moving heads first
    sub = tuple(p[idx] if getattr(p, "ndim", 0) else p for p in parts)
    s_sub, done_sub = _converge(sub, s[idx], done[idx], t, num_iters, tol, sizes[1:])
    return s.at[idx].set(s_sub), done.at[idx].set(done_sub)

  return lax.cond((t < num_iters) & jnp.any(~done), descend, lambda *c: c, s, done)
