"""Feature fidelity of a pruned ViT to its unpruned self, without labels.

A backbone such as DINOv2 has no classifier to score top-1 with, so pruning is judged
by how much it moves the features: per image, the cosine similarity of the pruned CLS
(and mean-patch) feature to the unpruned one; over a set of images, how often a k-NN
classifier built on the unpruned features gives a pruned query the label it gives the
unpruned query (labels: clusters of the unpruned features, see `kmeans`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ztprune_jax.models.vit import VisionTransformer

__all__ = [
  "Features",
  "cosine",
  "final_tokens",
  "kmeans",
  "knn_agreement",
  "knn_predict",
  "pooled_features",
]


def final_tokens(
  model: VisionTransformer,
  params: Any,
  images: jax.Array,
  transform_args: Any = None,
  return_state: bool = False,
):
  """The backbone's final normalised tokens ``[B, P + N', D]`` (after ``norm``).

  Args:
    model: a `VisionTransformer` with the pre-pooling ``norm`` (``fc_norm`` off), maybe
      wrapped by `prune` (then ``N'`` is the number of patches that survive).
    params: its params.
    images: ``[B, H, W, C]`` normalised NHWC.
    transform_args: traced inputs of the token transform (e.g. `PruneArgs`).
    return_state: also return the token transform's final state (kept positions).

  Returns:
    the tokens, and the transform state when ``return_state``.
  """
  if model.use_fc_norm:
    raise ValueError("final_tokens needs a model that normalises tokens before pooling")
  (_, state), inter = model.apply(
    {"params": params},
    images,
    return_state=True,
    transform_args=transform_args,
    capture_intermediates=lambda mdl, _: mdl.name == "norm",
    mutable=["intermediates"],
  )
  tokens = inter["intermediates"]["norm"]["__call__"][0]
  return (tokens, state) if return_state else tokens


class Features(NamedTuple):
  """Pooled features of a batch: ``cls`` and ``mean_patch``, each ``[B, D]``."""

  cls: jax.Array
  mean_patch: jax.Array


def pooled_features(tokens: jax.Array, num_prefix: int = 1) -> Features:
  """CLS and mean-of-patches features of final tokens ``[B, P + N, D]``."""
  return Features(tokens[:, 0], tokens[:, num_prefix:].mean(axis=1))


def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Row-wise cosine similarity of ``a, b`` ``[B, D]`` -> ``[B]``."""
  num = jnp.sum(a * b, axis=-1)
  return num / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), eps)


def _normalise(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_predict(
  queries: jax.Array,
  bank: jax.Array,
  bank_labels: jax.Array,
  *,
  k: int,
  num_classes: int,
  exclude_self: bool = False,
) -> jax.Array:
  """Majority vote of the ``k`` most cosine-similar bank entries.

  Args:
    queries: ``[Q, D]`` features.
    bank: ``[M, D]`` reference features.
    bank_labels: ``[M]`` int labels in ``[0, num_classes)``.
    k: neighbours (static).
    num_classes: label count (static).
    exclude_self: queries are the bank's own rows (``Q == M``, same order): row ``i``
      may not vote for query ``i`` (leave-one-out).

  Returns:
    ``[Q]`` int32 labels; ties go to the label of the nearest tied neighbour.
  """
  if k < 1 or k > bank.shape[0] - int(exclude_self):
    raise ValueError(f"k={k} must be in [1, {bank.shape[0] - int(exclude_self)}]")
  sim = _normalise(queries) @ _normalise(bank).T  # [Q, M]
  if exclude_self:
    if queries.shape[0] != bank.shape[0]:
      raise ValueError("exclude_self needs queries and bank of the same length")
    sim = jnp.where(jnp.eye(sim.shape[0], dtype=bool), -jnp.inf, sim)
  _, idx = jax.lax.top_k(sim, k)  # [Q, k], most similar first
  labels = bank_labels[idx]  # [Q, k]
  votes = jax.nn.one_hot(labels, num_classes).sum(axis=1)  # [Q, C]
  # tie-break: a tiny bonus for the nearest neighbour's label (rank 0)
  votes = votes + 1e-3 * jax.nn.one_hot(labels[:, 0], num_classes)
  return jnp.argmax(votes, axis=-1).astype(jnp.int32)


def knn_agreement(
  pruned: jax.Array, unpruned: jax.Array, labels: jax.Array, *, k: int, num_classes: int
) -> jax.Array:
  """Fraction of images whose pruned feature gets the k-NN label of its unpruned feature.

  The bank is the unpruned features with ``labels``; each image ``i`` is left out of
  the bank when it is the query (so the unpruned query cannot vote for itself).

  Args:
    pruned, unpruned: ``[M, D]`` features of the same images, same order.
    labels: ``[M]`` int labels of the unpruned features.
    k, num_classes: as in `knn_predict`.

  Returns:
    scalar float32 in ``[0, 1]``.
  """
  kw = dict(k=k, num_classes=num_classes, exclude_self=True)
  ref = knn_predict(unpruned, unpruned, labels, **kw)
  got = knn_predict(pruned, unpruned, labels, **kw)
  return jnp.mean((ref == got).astype(jnp.float32))


def kmeans(x: jax.Array, num_clusters: int, *, key: jax.Array, num_iters: int = 50) -> jax.Array:
  """Spherical k-means cluster ids ``[M]`` of features ``[M, D]``.

  Centres start at ``num_clusters`` distinct rows drawn with ``key``; then Lloyd steps
  on unit vectors (cosine). An empty cluster keeps its previous centre.
  """
  if not 1 <= num_clusters <= x.shape[0]:
    raise ValueError(f"num_clusters={num_clusters} must be in [1, {x.shape[0]}]")
  x = _normalise(x)
  init = jax.random.choice(key, x.shape[0], (num_clusters,), replace=False)
  centres = x[init]  # [C, D]

  def step(centres, _):
    assign = jnp.argmax(x @ centres.T, axis=-1)  # [M]
    onehot = jax.nn.one_hot(assign, num_clusters)  # [M, C]
    sums = onehot.T @ x  # [C, D]
    count = onehot.sum(axis=0)[:, None]  # [C, 1]
    new = jnp.where(count > 0, _normalise(sums), centres)
    return new, None

  centres, _ = jax.lax.scan(step, centres, None, length=num_iters)
  return jnp.argmax(x @ centres.T, axis=-1).astype(jnp.int32)
