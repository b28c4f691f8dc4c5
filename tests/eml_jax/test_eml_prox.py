"""Prox operators against NumPy: ℓ2,1 group shrinkage and singular-value thresholding."""

import numpy as np
import pytest

import eml_jax as eml


def np_l21(W, tau, mask):
  out = W.copy()
  for j in range(W.shape[1]):
    if mask[j]:
      n = np.linalg.norm(W[:, j])
      out[:, j] = 0 if n <= tau else (1 - tau / n) * W[:, j]
  return out


def np_svt(W, tau):
  U, s, Vt = np.linalg.svd(W, full_matrices=False)
  return U @ np.diag(np.maximum(s - tau, 0)) @ Vt


@pytest.mark.parametrize("tau", [0.0, 0.5, 2.0])
def test_l21_prox_matches_numpy(tau):
  rng = np.random.default_rng(0)
  W = rng.normal(size=(4, 7)).astype(np.float32)
  W[:, 2] = 0.0  # zero column stays zero, no NaN
  mask = np.array([1, 1, 1, 0, 1, 0, 1], np.float32)
  got = np.asarray(eml.l21_prox(W, tau, mask))
  np.testing.assert_allclose(got, np_l21(W, tau, mask), rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got[:, mask == 0], W[:, mask == 0])


@pytest.mark.parametrize("shape", [(4, 7), (7, 4)])
@pytest.mark.parametrize("tau", [0.0, 0.7, 100.0])
def test_svt_matches_numpy(shape, tau):
  W = np.random.default_rng(1).normal(size=shape).astype(np.float32)
  np.testing.assert_allclose(np.asarray(eml.svt(W, tau)), np_svt(W, tau), rtol=1e-4, atol=1e-5)


def test_prox_of_zero_and_norms():
  Z = np.zeros((3, 5), np.float32)
  assert np.all(np.asarray(eml.svt(Z, 0.1)) == 0)
  assert np.all(np.asarray(eml.l21_prox(Z, 0.1)) == 0)
  W = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
  np.testing.assert_allclose(
    float(eml.nuclear_norm(W)), np.linalg.svd(W, compute_uv=False).sum(), rtol=1e-5
  )
  np.testing.assert_allclose(float(eml.l21_norm(W)), np.linalg.norm(W, axis=0).sum(), rtol=1e-5)


def test_prox_is_the_argmin():
  """prox_τf(W) minimises ½‖X − W‖² + τ f(X): random perturbations never do better."""
  rng = np.random.default_rng(3)
  W, tau = rng.normal(size=(3, 4)), 0.8
  for prox, f in ((eml.svt, eml.nuclear_norm), (eml.l21_prox, eml.l21_norm)):
    X = np.asarray(prox(W.astype(np.float32), tau), np.float64)
    obj = lambda X, f=f: 0.5 * np.sum((X - W) ** 2) + tau * float(f(X.astype(np.float32)))  # noqa: E731
    best = obj(X)
    for _ in range(50):
      assert obj(X + 0.05 * rng.normal(size=X.shape)) >= best - 1e-5
