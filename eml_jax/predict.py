"""k-NN prediction with the learned distance, batched, jitted and chunked.

Our reconstruction of EML (spec §2): embed gallery and queries with the current ``L``
and vote among the k nearest (k = 5). Two paths: the fast Mahalanobis path
(``‖L(x − z)‖²``, squared distances in the embedding) and the smoothed Wasserstein path
(reading A's feature-bin OT per query-gallery pair). Queries are processed in chunks of
fixed size with `lax.map`, so memory is ``O(chunk × gallery)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from eml_jax import distance
from eml_jax import learner as learner_lib
from eml_jax import stream as stream_lib


def _vote(d2, gy, valid, k, n_classes):
  """Majority vote of the k nearest; ties go to the class of the nearer neighbours."""
  d2 = jnp.where(valid[None, :], d2, jnp.inf)  # [c, g]
  negd, idx = jax.lax.top_k(-d2, k)  # [c, k]
  rank_w = 1.0 + 1e-3 * (k - jnp.arange(k)) / k  # [k]
  w = jnp.isfinite(negd) * rank_w  # [c, k]
  votes = jnp.sum(jax.nn.one_hot(gy[idx], n_classes) * w[..., None], axis=1)  # [c, C]
  return jnp.argmax(votes, axis=-1)


def _chunked(fn, Q, chunk):
  n = Q.shape[0]
  n_pad = -n % chunk
  Qp = jnp.concatenate([Q, jnp.zeros((n_pad,) + Q.shape[1:], Q.dtype)])
  out = jax.lax.map(fn, Qp.reshape((-1, chunk) + Q.shape[1:]))
  return out.reshape((-1,) + out.shape[2:])[:n]


@functools.partial(jax.jit, static_argnames=("k", "n_classes", "chunk"))
def knn_predict(gallery, gallery_y, queries, *, k=5, n_classes, chunk=512, gallery_valid=None):
  """k-NN in an embedding (Euclidean there = Mahalanobis with ``LᵀL`` in input space).

  Args:
    gallery: ``[g, k_emb]`` embedded gallery.
    gallery_y: ``[g]`` int labels.
    queries: ``[q, k_emb]`` embedded queries.
    k: neighbours (clipped to ``g``).
    n_classes: number of classes.
    chunk: queries per chunk.
    gallery_valid: ``[g]`` bool mask for padded galleries, or None.

  Returns:
    ``[q]`` int32 predicted labels.
  """
  g = gallery.shape[0]
  valid = jnp.ones(g, bool) if gallery_valid is None else gallery_valid
  kk = min(k, g)
  gn = jnp.sum(jnp.square(gallery), -1)  # [g]

  def one(Qc):  # [c, k_emb]
    d2 = jnp.sum(jnp.square(Qc), -1)[:, None] + gn[None, :] - 2.0 * Qc @ gallery.T  # [c, g]
    return _vote(jnp.maximum(d2, 0.0), gallery_y, valid, kk, n_classes)

  return _chunked(one, queries, chunk)


@functools.partial(jax.jit, static_argnames=("k", "n_classes", "chunk", "solver"))
def knn_predict_wasserstein(
  L, gallery, gallery_y, queries, *, solver, eps_scale=0.05, temp=1.0, k=5, n_classes, chunk=16
):
  """k-NN with reading A's feature-bin smoothed Wasserstein distance (ground cost from ``L``).

  Args:
    L: ``[k_emb, d]`` metric factor.
    gallery: ``[g, d]`` standardised gallery samples.
    gallery_y: ``[g]`` int labels.
    queries: ``[q, d]`` standardised queries.
    solver: Sinkhorn from `distance.make_sinkhorn`.
    eps_scale: ε in units of the mean ground cost.
    temp: histogram inverse temperature.
    k: neighbours.
    n_classes: number of classes.
    chunk: queries per chunk (each chunk solves ``chunk × g`` OT problems).

  Returns:
    ``[q]`` int32 predicted labels.
  """
  Hg = distance.feature_hist(gallery, temp)  # [g, d]
  valid = jnp.ones(gallery.shape[0], bool)

  def one(Qc):
    Hq = distance.feature_hist(Qc, temp)
    d2 = distance.feature_ot_pairwise(L, Hq, Hg, solver=solver, eps_scale=eps_scale).cost
    return _vote(d2, gallery_y, valid, min(k, gallery.shape[0]), n_classes)

  return _chunked(one, queries, chunk)


def predict_knn(
  learner: learner_lib.Learner,
  state: learner_lib.EMLState,
  X_gallery,
  y_gallery,
  X_query,
  *,
  k: int = 5,
  distance_name: str = "mahalanobis",
  hp: learner_lib.HParams | None = None,
  chunk: int = 512,
):
  """Predicts labels of raw queries from a raw gallery with the state's metric.

  Args:
    learner: supplies the spec (classes, standardisation) and the Sinkhorn solver.
    state: current `EMLState` (``L`` ``[k_emb, d]``).
    X_gallery: ``[g, d]`` raw gallery (e.g. the I-stage instances seen so far).
    y_gallery: ``[g]`` int labels.
    X_query: ``[q, d]`` raw queries.
    k: neighbours (default 5).
    distance_name: "mahalanobis" (fast path) or "wasserstein" (reading A OT per pair).
    hp: `HParams` for ε and histogram temperature of the Wasserstein path.
    chunk: queries per chunk.

  Returns:
    ``[q]`` int32 predictions.

  Raises:
    ValueError: dimension mismatch, NaN, labels out of range, empty gallery, bad name.
  """
  spec = learner.spec
  if np.asarray(X_gallery).shape[0] == 0:
    raise ValueError("gallery is empty")
  stream_lib.validate_xy(X_gallery, y_gallery, spec.n_classes, d=state.d, name="gallery")
  Xq = np.asarray(X_query)
  stream_lib.validate_xy(
    Xq, np.zeros(Xq.shape[0], np.int32), spec.n_classes, d=state.d, name="queries"
  )
  Gs = learner_lib.standardize(state, jnp.asarray(X_gallery, jnp.float32), spec.standardize)
  Qs = learner_lib.standardize(state, jnp.asarray(Xq, jnp.float32), spec.standardize)
  gy = jnp.asarray(y_gallery, jnp.int32)
  if distance_name == "mahalanobis":
    return knn_predict(
      Gs @ state.L.T, gy, Qs @ state.L.T, k=k, n_classes=spec.n_classes, chunk=chunk
    )
  if distance_name == "wasserstein":
    hp = learner_lib.HParams.create() if hp is None else hp
    return knn_predict_wasserstein(
      state.L,
      Gs,
      gy,
      Qs,
      solver=learner.solver,
      eps_scale=hp.eps_scale,
      temp=hp.hist_temp,
      k=k,
      n_classes=spec.n_classes,
      chunk=min(chunk, 16),
    )
  raise ValueError(f"distance_name must be 'mahalanobis' or 'wasserstein', got {distance_name!r}")


def knn_error(learner, state, X_gallery, y_gallery, X_test, y_test, **kw) -> float:
  """Test error (fraction) of `predict_knn`; ``kw`` as in `predict_knn`."""
  pred = predict_knn(learner, state, X_gallery, y_gallery, X_test, **kw)
  return float(np.mean(np.asarray(pred) != np.asarray(y_test)))
