"""k-NN prediction: brute-force equality, chunking invariance, both distance paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import eml_jax as eml


def np_knn(G, gy, Q, k, n_classes):
  """Euclidean k-NN vote of queries ``Q`` [q, d] against gallery ``G`` [g, d]."""
  return np_knn_from_dists(((Q[:, None] - G[None]) ** 2).sum(-1), gy, k, n_classes)


def np_knn_from_dists(D, gy, k, n_classes):
  """Vote of the k nearest rows of ``D`` [q, g]; nearer neighbours break ties."""
  out = []
  for row in D:
    idx = np.argsort(row, kind="stable")[:k]
    votes = np.zeros(n_classes)
    for r, i in enumerate(idx):
      votes[gy[i]] += 1 + 1e-3 * (k - r) / k
    out.append(int(np.argmax(votes)))
  return np.array(out)


def np_softmax(X):
  X = np.asarray(X, np.float64)
  e = np.exp(X - X.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def np_entropic_ot(a, b, cost, eps):
  """``min_P ⟨P, C⟩ + ε KL(P ‖ abᵀ)`` for histogram pairs ``a[i], b[i]`` ``[n, d]`` with one
  ground cost ``[d, d]``, by log-domain Sinkhorn in float64; returns ``[n]``."""
  la, lb = np.log(a)[:, :, None], np.log(b)[:, None, :]  # [n, d, 1], [n, 1, d]
  f, g = np.zeros(a.shape), np.zeros(b.shape)
  for it in range(1, 20_001):
    f = -eps * logsumexp((g[:, None, :] - cost) / eps + lb, axis=2)
    g = -eps * logsumexp((f[:, :, None] - cost) / eps + la, axis=1)
    if it % 20 == 0:
      P = np.exp(la + lb + (f[:, :, None] + g[:, None, :] - cost) / eps)  # [n, d, d]
      if np.abs(P.sum(2) - a).sum(1).max() < 1e-12:
        break
  return np.sum(P * cost, (1, 2)) + eps * np.sum(P * (np.log(P) - la - lb), (1, 2))


def np_wasserstein_dists(L, Xq, Xg):
  """Reading A's distances ``[q, g]`` from scratch: inputs scaled by 1/√d (no statistics
  seen yet), histograms softmax(x), ground cost ‖L e_p − L e_q‖², ε = 0.05·mean cost."""
  L = np.asarray(L, np.float64)
  d = L.shape[1]
  cost = np.sum((L.T[:, None] - L.T[None]) ** 2, -1)  # [d, d]
  Hq, Hg = np_softmax(Xq / np.sqrt(d)), np_softmax(Xg / np.sqrt(d))
  a = np.repeat(Hq, len(Hg), axis=0)
  b = np.tile(Hg, (len(Hq), 1))
  return np_entropic_ot(a, b, cost, 0.05 * cost.mean()).reshape(len(Hq), len(Hg))


# The library's float32 Sinkhorn (threshold 1e-4) is off by up to 7.1e-4 on the reading-A
# distances of these tests (measured against `np_wasserstein_dists`); a neighbour ranking
# is compared only where the decisive gap exceeds 10x that.
WASSERSTEIN_GAP = 7.1e-3


@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_brute_force_and_chunking(k):
  rng = np.random.default_rng(0)
  G = rng.normal(size=(50, 4)).astype(np.float32)
  gy = rng.integers(0, 3, 50).astype(np.int32)
  Q = rng.normal(size=(23, 4)).astype(np.float32)
  want = np_knn(G, gy, Q, k, 3)
  for chunk in (1, 7, 512):
    got = eml.knn_predict(G, gy, Q, k=k, n_classes=3, chunk=chunk)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_knn_ignores_invalid_gallery_slots():
  G = np.array([[0.0], [10.0], [0.1]], np.float32)
  gy = np.array([0, 1, 1], np.int32)
  valid = jnp.array([False, True, True])
  got = eml.knn_predict(G, gy, np.array([[0.0]], np.float32), k=1, n_classes=2,
                        gallery_valid=valid)  # fmt: skip
  assert int(got[0]) == 1


def test_predict_paths_and_errors():
  rng = np.random.default_rng(1)
  spec = eml.LearnerSpec(n_classes=2, rank=3)
  lrn = eml.make_learner(spec, eml.make_sinkhorn(threshold=1e-4, max_iterations=500))
  st = eml.init_state(jax.random.key(0), spec, 5)
  Xg = rng.normal(size=(12, 5)).astype(np.float32)
  yg = (Xg[:, 0] > 0).astype(np.int32)
  Xq = rng.normal(size=(6, 5)).astype(np.float32)
  # Mahalanobis path = brute force in the embedding.
  Gs = np.asarray(eml.standardize(st, jnp.asarray(Xg))) @ np.asarray(st.L).T
  Qs = np.asarray(eml.standardize(st, jnp.asarray(Xq))) @ np.asarray(st.L).T
  np.testing.assert_array_equal(
    np.asarray(eml.predict_knn(lrn, st, Xg, yg, Xq, k=3)), np_knn(Gs, yg, Qs, 3, 2)
  )
  # Wasserstein path = 3-NN over reading A's distances computed here in float64 numpy.
  hp = eml.HParams.create()
  got = np.asarray(
    eml.predict_knn(lrn, st, Xg, yg, Xq, k=3, distance_name="wasserstein", hp=hp, chunk=4)
  )
  D = np_wasserstein_dists(st.L, Xq, Xg)
  ranked = np.sort(D, axis=1)
  clear = ranked[:, 3] - ranked[:, 2] > WASSERSTEIN_GAP  # 4 of the 6 queries here
  assert clear.sum() >= 4
  np.testing.assert_array_equal(got[clear], np_knn_from_dists(D, yg, 3, 2)[clear])
  with pytest.raises(ValueError, match="features but the current stage has"):
    eml.predict_knn(lrn, st, Xg[:, :4], yg, Xq)
  with pytest.raises(ValueError, match="NaN"):
    eml.predict_knn(lrn, st, Xg, yg, np.full((2, 5), np.nan, np.float32))
  with pytest.raises(ValueError, match="labels outside"):
    eml.predict_knn(lrn, st, Xg, yg + 2, Xq)
  with pytest.raises(ValueError, match="distance_name"):
    eml.predict_knn(lrn, st, Xg, yg, Xq, distance_name="cosine")
  with pytest.raises(ValueError, match="empty"):
    eml.predict_knn(lrn, st, Xg[:0], yg[:0], Xq)


def test_nearest_neighbour_paths_match_numpy():
  """1-NN with one class per gallery item: the prediction is the index of the nearest
  gallery sample, so a change to the histograms, ground cost or OT shows. Inputs are
  scaled by 3 so the histograms are far from uniform (near uniform ones make the
  distances nearly symmetric under x -> -x, which hid a sign error of the histogram)."""
  rng = np.random.default_rng(1)
  Xg = rng.normal(size=(12, 5)).astype(np.float32) * 3
  Xq = rng.normal(size=(6, 5)).astype(np.float32) * 3
  spec = eml.LearnerSpec(n_classes=12, rank=3)
  lrn = eml.make_learner(spec, eml.make_sinkhorn(threshold=1e-6, max_iterations=5000))
  st = eml.init_state(jax.random.key(0), spec, 5)
  yg = np.arange(12, dtype=np.int32)
  got = np.asarray(eml.predict_knn(lrn, st, Xg, yg, Xq, k=1, distance_name="wasserstein"))
  D = np_wasserstein_dists(st.L, Xq, Xg)
  # With this solver the library's distances are within 2.8e-7 of the oracle's
  # (measured); every query's nearest and second nearest are > 10x that apart (the
  # smallest gap here is 2.4e-2), so the nearest index is determined.
  ranked = np.sort(D, axis=1)
  assert np.all(ranked[:, 1] - ranked[:, 0] > 2.8e-6)
  np.testing.assert_array_equal(got, np.argmin(D, axis=1))
  # Mahalanobis path, same check: no statistics seen yet, so x -> x/√d, then ‖L(q − g)‖².
  L = np.asarray(st.L, np.float64)
  Dm = np.sum((((Xq[:, None] - Xg[None]) / np.sqrt(5)) @ L.T) ** 2, -1)  # [q, g]
  ranked = np.sort(Dm, axis=1)
  assert np.all(ranked[:, 1] - ranked[:, 0] > 1e-3 * ranked[:, 0])  # float32 is ~1e-7
  got = np.asarray(eml.predict_knn(lrn, st, Xg, yg, Xq, k=1))
  np.testing.assert_array_equal(got, np.argmin(Dm, axis=1))
