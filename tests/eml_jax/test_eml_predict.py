"""k-NN prediction: brute-force equality, chunking invariance, both distance paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eml_jax as eml


def np_knn(G, gy, Q, k, n_classes):
  d2 = ((Q[:, None] - G[None]) ** 2).sum(-1)
  out = []
  for row in d2:
    idx = np.argsort(row, kind="stable")[:k]
    votes = np.zeros(n_classes)
    for r, i in enumerate(idx):
      votes[gy[i]] += 1 + 1e-3 * (k - r) / k
    out.append(int(np.argmax(votes)))
  return np.array(out)


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
  # Wasserstein path = brute force over the pairwise feature-OT distances.
  hp = eml.HParams.create()
  got = eml.predict_knn(lrn, st, Xg, yg, Xq, k=3, distance_name="wasserstein", hp=hp, chunk=4)
  H = lambda X: eml.feature_hist(eml.standardize(st, jnp.asarray(X)))  # noqa: E731
  D = np.asarray(eml.feature_ot_pairwise(st.L, H(Xq), H(Xg), solver=lrn.solver).cost)
  want = []
  for row in D:
    idx = np.argsort(row, kind="stable")[:3]
    votes = np.zeros(2)
    for r, i in enumerate(idx):
      votes[yg[i]] += 1 + 1e-3 * (3 - r) / 3
    want.append(int(np.argmax(votes)))
  np.testing.assert_array_equal(np.asarray(got), want)
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
