"""S-stage: similarity-based pruning with an importance-guided partition (Zero-TPrune).

Patch tokens are split into a source set ``A`` (may be pruned) and a destination set
``B`` (never pruned by this stage). Every ``a ∈ A`` gets ``m_a = max_{b ∈ B} sim(a, b)``
and the ``r`` sources with the highest ``m_a`` (the best-matched near-duplicates) are
dropped. Nothing is merged. The paper's best partition, Sequential-U (``"seq_u"``),
sorts tokens by I′ importance and makes the *less* important half the source set, so a
large group of similar, unimportant tokens (background) is thinned before the I-stage
can let its members vote each other up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ztprune_jax.zero_tprune import keep

__all__ = [
  "FEATURES",
  "PARTITIONS",
  "SIMILARITIES",
  "max_removable",
  "s_stage",
  "select_feature",
  "similarity",
  "split_tokens",
]

PARTITIONS = ("seq_u", "seq_i", "alternate", "random", "full")
FEATURES = ("key", "key_concat", "query", "value", "x_in", "x_out")
SIMILARITIES = ("cosine", "dot", "l1", "l2", "linf")

_COSINE_EPS = 1e-6


# Field names a block's outputs may use for each feature, first match wins. The plural
# names are those of `ztprune_jax.models.hooks.BlockOutput`.
_FIELDS = {
  "x_in": ("x_in",),
  "x_out": ("x_out",),
  "query": ("queries", "query"),
  "key": ("keys", "key"),
  "key_concat": ("keys", "key"),
  "value": ("values", "value"),
}


def select_feature(block_outputs: Any, name: str = "key", *, head_axis: int = 1) -> jax.Array:
  """Picks the per-token S-stage feature ``name`` from a block's outputs.

  The paper uses the block's keys averaged over heads (``"key"``, default). Whether the
  average or the concatenation over heads is meant is not settled (spec: open);
  ``"key_concat"`` is the other reading. ``"query"`` and ``"value"`` are head means too.

  Args:
    block_outputs: a mapping or NamedTuple such as ``models.hooks.BlockOutput`` with
      fields ``x_in``, ``x_out`` (``[B, N, D]``) and ``queries``, ``keys``, ``values``
      (``[B, H, N, dh]``; the singular names are accepted too). Only the field the
      feature needs must be present.
    name: one of ``FEATURES``.
    head_axis: the head axis of the per-head arrays: 1 for ``[B, H, N, dh]`` (default),
      2 for Flax's ``[B, N, H, dh]`` layout.

  Returns:
    ``[B, N, C]`` with ``C = dh`` (head means), ``H · dh`` (``key_concat``) or ``D``.

  Raises:
    ValueError: naming ``feature`` when ``name`` is unknown or missing from the outputs.
  """
  if name not in FEATURES:
    raise ValueError(f"Unknown feature {name!r}; valid: {list(FEATURES)}")
  value = None
  for field in _FIELDS[name]:
    if isinstance(block_outputs, Mapping):
      value = block_outputs.get(field)
    else:
      value = getattr(block_outputs, field, None)
    if value is not None:
      break
  if value is None:
    raise ValueError(
      f"feature {name!r} needs a field named {' or '.join(_FIELDS[name])}, which the block "
      "outputs lack"
    )
  if name in ("x_in", "x_out"):
    if value.ndim != 3:
      raise ValueError(f"feature {name!r} must be [B, N, D], got shape {value.shape}")
    return value
  if value.ndim != 4 or head_axis not in (1, 2):
    raise ValueError(f"feature {name!r} must be 4-D with heads on axis 1 or 2, got {value.shape}")
  if head_axis == 2:
    value = jnp.swapaxes(value, 1, 2)  # [B, H, N, dh]
  if name == "key_concat":
    B, H, N, dh = value.shape
    return jnp.swapaxes(value, 1, 2).reshape(B, N, H * dh)  # [B, N, H·dh]
  return value.mean(axis=1)  # [B, N, dh]


def similarity(a: jax.Array, b: jax.Array, metric: str = "cosine") -> jax.Array:
  """Pairwise similarity between two token sets (higher is more similar).

  Distances enter negated: ``"l1"``, ``"l2"`` and ``"linf"`` return ``−‖a − b‖``.
  ``"l1"`` and ``"linf"`` materialise ``[B, Na, Nb, C]``; they are for ablations.

  Args:
    a: ``[B, Na, C]``.
    b: ``[B, Nb, C]``.
    metric: one of ``SIMILARITIES``; cosine is the paper's default.

  Returns:
    ``[B, Na, Nb]`` float32.

  Raises:
    ValueError: naming ``similarity`` when ``metric`` is unknown.
  """
  if metric not in SIMILARITIES:
    raise ValueError(f"Unknown similarity {metric!r}; valid: {list(SIMILARITIES)}")
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  hi = lax.Precision.HIGHEST
  if metric == "cosine":
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), _COSINE_EPS)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), _COSINE_EPS)
  if metric in ("cosine", "dot"):
    return jnp.einsum("bic,bjc->bij", a, b, precision=hi)
  if metric == "l2":
    aa = jnp.sum(a * a, axis=-1)[:, :, None]  # [B, Na, 1]
    bb = jnp.sum(b * b, axis=-1)[:, None, :]  # [B, 1, Nb]
    d2 = aa + bb - 2.0 * jnp.einsum("bic,bjc->bij", a, b, precision=hi)
    return -jnp.sqrt(jnp.maximum(d2, 0.0))
  diff = jnp.abs(a[:, :, None, :] - b[:, None, :, :])  # [B, Na, Nb, C]
  return -(diff.sum(-1) if metric == "l1" else diff.max(-1))


def max_removable(num_patches: int, partition: str = "seq_u") -> int:
  """The most patch tokens one S-stage can drop: the source-set size.

  Bipartite partitions use ``|A| = ⌈M/2⌉`` sources and need ``|B| ≥ 1``; ``"full"``
  may drop any token that has another to match.

  Args:
    num_patches: ``M``, the number of patch (non-prefix) tokens entering the stage.
    partition: one of ``PARTITIONS``.

  Returns:
    A Python int.

  Raises:
    ValueError: naming ``partition`` when unknown.
  """
  if partition not in PARTITIONS:
    raise ValueError(f"Unknown partition {partition!r}; valid: {list(PARTITIONS)}")
  if num_patches < 2:
    return 0
  return num_patches if partition == "full" else -(-num_patches // 2)


def split_tokens(
  scores: jax.Array, partition: str = "seq_u", *, rng: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Splits patch tokens into sources ``A`` and destinations ``B`` (Zero-TPrune, S-stage).

  * ``"seq_u"``: the ``⌈M/2⌉`` *least* important tokens are sources (paper's best).
  * ``"seq_i"``: the ``⌈M/2⌉`` *most* important tokens are sources.
  * ``"alternate"``: even positions are sources, odd ones destinations (ToMe's split).
  * ``"random"``: a uniformly random half per image, from ``rng``.
  * ``"full"``: every token is both source and destination (self-matches excluded by
    :func:`s_stage`).

  Args:
    scores: ``[B, M]`` I′ importance of the patch tokens (prefix already removed).
    partition: one of ``PARTITIONS``.
    rng: PRNG key, required for ``"random"`` only.

  Returns:
    ``(src [B, Ma], dst [B, Mb])`` int32 positions into ``M``.

  Raises:
    ValueError: naming ``partition`` or ``rng``.
  """
  if partition not in PARTITIONS:
    raise ValueError(f"Unknown partition {partition!r}; valid: {list(PARTITIONS)}")
  if (partition == "random") != (rng is not None):
    raise ValueError(f"rng must be given for partition='random' only (partition={partition!r})")
  B, M = scores.shape
  Ma = -(-M // 2)
  if partition == "full":
    idx = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32), (B, M))
    return idx, idx
  if partition == "alternate":
    pos = jnp.arange(M, dtype=jnp.int32)
    return (jnp.broadcast_to(pos[0::2], (B, Ma)), jnp.broadcast_to(pos[1::2], (B, M - Ma)))
  if partition == "random":
    order = jnp.argsort(jax.random.uniform(rng, (B, M)), axis=-1).astype(jnp.int32)
    return order[:, :Ma], order[:, Ma:]
  s = jnp.where(jnp.isnan(scores), -jnp.inf, scores.astype(jnp.float32))
  _, order = lax.top_k(s, M)  # [B, M], most important first
  order = order.astype(jnp.int32)
  if partition == "seq_u":
    return order[:, M - Ma :], order[:, : M - Ma]
  return order[:, :Ma], order[:, Ma:]  # seq_i


def s_stage(
  scores: jax.Array,
  feature: jax.Array,
  num_remove: int,
  *,
  partition: str = "seq_u",
  similarity_metric: str = "cosine",
  num_prefix: int = 1,
  rng: jax.Array | None = None,
) -> jax.Array:
  """Drops the ``num_remove`` best-matched source tokens (Zero-TPrune, S-stage).

  Args:
    scores: ``[B, N]`` I′ importance of every token (prefix entries ignored).
    feature: ``[B, N, C]`` per-token feature (see :func:`select_feature`).
    num_remove: ``r_S``, patch tokens to drop, ``0 ≤ r_S ≤ max_removable(M, partition)``.
    partition: one of ``PARTITIONS``; ``"seq_u"`` is the paper's default.
    similarity_metric: one of ``SIMILARITIES``; ``"cosine"`` is the paper's default.
    num_prefix: number of leading prefix tokens; they are never dropped.
    rng: PRNG key for ``partition="random"``.

  Returns:
    ``[B, N − num_remove]`` int32 indices of kept tokens, sorted (original order),
    prefix tokens first.

  Raises:
    ValueError: naming ``num_remove``, ``partition``, ``similarity``, ``feature`` or
      ``rng`` when invalid.
  """
  B, N = scores.shape
  if feature.shape[:2] != (B, N):
    raise ValueError(f"feature must be [B, N, C] = [{B}, {N}, C], got {feature.shape}")
  M = N - num_prefix
  if not 0 <= num_prefix <= N:
    raise ValueError(f"num_prefix={num_prefix} must lie in [0, {N}]")
  cap = max_removable(M, partition)
  if similarity_metric not in SIMILARITIES:
    raise ValueError(f"Unknown similarity {similarity_metric!r}; valid: {list(SIMILARITIES)}")
  if not isinstance(num_remove, int) or not 0 <= num_remove <= cap:
    raise ValueError(
      f"num_remove={num_remove!r} must be a Python int in [0, {cap}] "
      f"for partition={partition!r} with {M} patch tokens"
    )
  src, dst = split_tokens(scores[:, num_prefix:], partition, rng=rng)  # [B, Ma], [B, Mb]
  if num_remove == 0:
    return jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (B, N))
  f = feature[:, num_prefix:]  # [B, M, C]
  fa = keep.gather_tokens(f, src)  # [B, Ma, C]
  fb = keep.gather_tokens(f, dst)  # [B, Mb, C]
  sim = similarity(fa, fb, similarity_metric)  # [B, Ma, Mb]
  if partition == "full":
    sim = jnp.where(jnp.eye(M, dtype=bool), -jnp.inf, sim)
  m = sim.max(axis=-1)  # [B, Ma]
  m = jnp.where(jnp.isnan(m), -jnp.inf, m)
  # Keep priority: destinations first (+inf), then sources with the weakest match.
  prio = jnp.full((B, M), jnp.inf, jnp.float32)
  prio = prio.at[jnp.arange(B)[:, None], src].set(-m)  # [B, M]
  return keep.topk_keep(
    jnp.concatenate([jnp.zeros((B, num_prefix), jnp.float32), prio], axis=-1),
    M - num_remove,
    num_prefix=num_prefix,
  )
