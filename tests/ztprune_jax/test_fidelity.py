"""Feature-fidelity kernels: final tokens, cosine, k-NN agreement, k-means."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.eval import fidelity


@pytest.fixture(scope="module")
def tiny():
  m = zt.create_model(
    "deit_tiny_patch16_224",
    depth=2,
    image_size=32,
    patch_size=8,
    num_classes=0,
    width=32,
    num_heads=2,
    mlp_dim=64,
  )
  x = np.asarray(jax.random.normal(jax.random.key(0), (3, 32, 32, 3)))
  return m, m.init(jax.random.key(1), x)["params"], x


def test_final_tokens_cls_row_is_the_pooled_feature(tiny):
  m, params, x = tiny
  tokens = fidelity.final_tokens(m, params, x)
  assert tokens.shape == (3, 1 + 16, 32)
  np.testing.assert_allclose(tokens[:, 0], m.apply({"params": params}, x), rtol=1e-6, atol=1e-6)


def test_final_tokens_of_a_pruned_model(tiny):
  m, params, x = tiny
  pruned = zt.prune(m, "topk_cls_attn", [(0, 0.5)])
  tokens, state = fidelity.final_tokens(pruned, params, x, return_state=True)
  assert tokens.shape == (3, 1 + 8, 32)
  assert state.kept[-1].shape == (3, 1 + 8)


def test_final_tokens_rejects_fc_norm_models():
  m = zt.create_model("deit_tiny_patch16_224", global_pool="avg", num_classes=0)
  with pytest.raises(ValueError, match="normalises tokens before pooling"):
    fidelity.final_tokens(m, {}, np.zeros((1, 224, 224, 3), np.float32))


def test_cosine():
  a = jnp.array([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
  b = jnp.array([[0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
  np.testing.assert_allclose(fidelity.cosine(a, b), [0.0, 1.0, -1.0], atol=1e-6)


def _two_blobs(rng, n=20, d=8, noise=0.05):
  centres = np.eye(d, dtype=np.float32)[:2] * 5
  labels = np.arange(n) % 2
  x = centres[labels] + noise * rng.standard_normal((n, d)).astype(np.float32)
  return jnp.asarray(x), labels


def test_kmeans_recovers_separated_clusters():
  x, labels = _two_blobs(np.random.default_rng(0))
  got = np.asarray(fidelity.kmeans(x, 2, key=jax.random.key(0)))
  # cluster ids are arbitrary: the partition must match up to relabelling
  assert len(set(zip(got.tolist(), labels.tolist(), strict=True))) == 2


def test_knn_agreement_identity_and_swap():
  x, labels = _two_blobs(np.random.default_rng(1))
  labels = jnp.asarray(labels)
  assert float(fidelity.knn_agreement(x, x, labels, k=3, num_classes=2)) == 1.0
  # features moved onto the other blob get the other label: agreement drops to 0
  swapped = jnp.roll(x, 1, axis=0)
  assert float(fidelity.knn_agreement(swapped, x, labels, k=3, num_classes=2)) == 0.0


def test_knn_predict_leave_one_out():
  bank = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
  labels = jnp.array([0, 1, 1])
  # without exclusion, each point's 1-NN is itself
  np.testing.assert_array_equal(
    fidelity.knn_predict(bank, bank, labels, k=1, num_classes=2), labels
  )
  loo = fidelity.knn_predict(bank, bank, labels, k=1, num_classes=2, exclude_self=True)
  np.testing.assert_array_equal(loo, [1, 0, 1])
  with pytest.raises(ValueError, match="k=3"):
    fidelity.knn_predict(bank, bank, labels, k=3, num_classes=2, exclude_self=True)
