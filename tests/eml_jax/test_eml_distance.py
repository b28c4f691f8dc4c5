"""OT pieces: ott-jax values against POT / a hand Sinkhorn, envelope gradients, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from scipy.special import logsumexp

import eml_jax as eml


def np_sinkhorn(a, b, C, eps, iters=5000):
  """Hand log-domain Sinkhorn in float64; returns the coupling P."""
  f, g = np.zeros(len(a)), np.zeros(len(b))
  for _ in range(iters):
    f = -eps * logsumexp((g[None] - C) / eps + np.log(b)[None], axis=1)
    g = -eps * logsumexp((f[:, None] - C) / eps + np.log(a)[:, None], axis=0)
  return a[:, None] * b[None] * np.exp((f[:, None] + g[None] - C) / eps)


def reg_cost(P, a, b, C, eps):
  """⟨P, C⟩ + ε KL(P ‖ abᵀ): the entropic objective ott's reg_ot_cost reports."""
  nz = P > 0
  kl = np.sum(P[nz] * np.log(P[nz] / np.outer(a, b)[nz]))
  return float(np.sum(P * C) + eps * kl)


TIGHT = dict(threshold=1e-10, max_iterations=20000)


def test_feature_ot_matches_pot_and_hand_sinkhorn(x64):
  with x64():
    rng = np.random.default_rng(0)
    k, d = 3, 6
    L = jnp.asarray(rng.normal(size=(k, d)))
    h1 = eml.feature_hist(jnp.asarray(rng.normal(size=d)))
    h2 = eml.feature_hist(jnp.asarray(rng.normal(size=d)))
    C = np.asarray(eml.feature_cost(L, L))
    eps = 0.05 * C.mean()
    solver = eml.make_sinkhorn(**TIGHT)
    res = jax.jit(lambda L: eml.feature_ot(L, h1, L, h2, solver=solver, eps_scale=0.05))(L)
    a, b = np.asarray(h1), np.asarray(h2)
    P_pot = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=100000)
    P_hand = np_sinkhorn(a, b, C, eps)
    assert bool(res.converged)
    np.testing.assert_allclose(float(res.cost), reg_cost(P_hand, a, b, C, eps), rtol=1e-5)
    np.testing.assert_allclose(float(res.cost), reg_cost(P_pot, a, b, C, eps), rtol=1e-5)
    # POT's sinkhorn2 is ⟨P, C⟩ of the same coupling.
    np.testing.assert_allclose(
      np.sum(P_hand * C), ot.sinkhorn2(a, b, C, eps, stopThr=1e-13, numItermax=100000), rtol=1e-5
    )


def _embedding_problem(rng, n=6, m=5, k=3, d=4, C=3):
  E = jnp.asarray(rng.normal(size=(n, k)))
  Z = jnp.asarray(rng.normal(size=(m, d)))
  L = jnp.asarray(rng.normal(size=(k, d)))
  ye = jnp.asarray(rng.integers(0, C, n))
  yz = jnp.asarray(rng.integers(0, C, m))
  a = eml.class_balanced_weights(ye, jnp.ones(n, bool), C)
  b = eml.class_balanced_weights(yz, jnp.ones(m, bool), C)
  return L, E, ye, a, Z, yz, b


def test_embedding_ot_matches_hand_sinkhorn_and_cost_definition(x64):
  with x64():
    rng = np.random.default_rng(1)
    L, E, ye, a, Z, yz, b = _embedding_problem(rng)
    rho, eps_scale = 3.0, 0.05
    res = eml.embedding_ot(
      L, E, ye, a, Z, yz, b, solver=eml.make_sinkhorn(**TIGHT), rho=rho, eps_scale=eps_scale
    )
    D = np.sum((np.asarray(E)[:, None] - (np.asarray(Z) @ np.asarray(L).T)[None]) ** 2, -1)
    an, bn = np.asarray(a), np.asarray(b)
    sbar = an @ D @ bn
    Cn = D + rho * sbar * (np.asarray(ye)[:, None] != np.asarray(yz)[None])
    P = np_sinkhorn(an, bn, Cn, eps_scale * sbar)
    np.testing.assert_allclose(
      float(res.cost), reg_cost(P, an, bn, Cn, eps_scale * sbar), rtol=1e-5
    )


def test_feature_ot_gradient_matches_closed_form(x64):
  """∂/∂L ⟨P, C(L)⟩ = 2L(diag(P1) + diag(Pᵀ1) − P − Pᵀ) at the optimal (envelope) P."""
  with x64():
    rng = np.random.default_rng(2)
    k, d = 4, 7
    L = jnp.asarray(rng.normal(size=(k, d)))
    h1 = eml.feature_hist(jnp.asarray(rng.normal(size=d)))
    h2 = eml.feature_hist(jnp.asarray(rng.normal(size=d)))
    eps = 0.3
    solver = eml.make_sinkhorn(**TIGHT)
    g = jax.jit(jax.grad(lambda L: eml.feature_ot(L, h1, L, h2, solver=solver, eps=eps).cost))(L)
    P = np_sinkhorn(np.asarray(h1), np.asarray(h2), np.asarray(eml.feature_cost(L, L)), eps)
    closed = 2 * np.asarray(L) @ (np.diag(P.sum(1)) + np.diag(P.sum(0)) - P - P.T)
    np.testing.assert_allclose(np.asarray(g), closed, rtol=1e-5, atol=1e-8)


def test_embedding_ot_gradient_matches_closed_form(x64):
  """C_ij = ‖e_i − L z_j‖² + const ⇒ ∂/∂L = Σ_ij 2 P_ij (L z_j − e_i) z_jᵀ."""
  with x64():
    rng = np.random.default_rng(3)
    L, E, ye, a, Z, yz, b = _embedding_problem(rng)
    solver = eml.make_sinkhorn(**TIGHT)
    g = jax.jit(jax.grad(lambda L: eml.embedding_ot(L, E, ye, a, Z, yz, b, solver=solver).cost))(L)
    Ln, En, Zn = map(np.asarray, (L, E, Z))
    D = np.sum((En[:, None] - (Zn @ Ln.T)[None]) ** 2, -1)
    an, bn = np.asarray(a), np.asarray(b)
    sbar = an @ D @ bn
    Cn = D + 3.0 * sbar * (np.asarray(ye)[:, None] != np.asarray(yz)[None])
    P = np_sinkhorn(an, bn, Cn, 0.05 * sbar)
    R = (Zn @ Ln.T)[None] - En[:, None]  # [n, m, k]
    closed = 2 * np.einsum("ij,ijk,jd->kd", P, R, Zn)
    np.testing.assert_allclose(np.asarray(g), closed, rtol=1e-5, atol=1e-8)


def test_zero_weight_slots_do_not_change_the_value():
  """Padded (empty) buffer slots carry zero mass: same value as without them."""
  rng = np.random.default_rng(4)
  L, E, ye, a, Z, yz, b = _embedding_problem(rng)
  solver = eml.make_sinkhorn(threshold=1e-6, max_iterations=5000)
  ot_fn = jax.jit(lambda E, ye, a: eml.embedding_ot(L, E, ye, a, Z, yz, b, solver=solver))
  base = ot_fn(E, ye, a)
  E2 = jnp.concatenate([E, 100.0 * jnp.ones((3, E.shape[1]))])
  ye2 = jnp.concatenate([ye, jnp.zeros(3, ye.dtype)])
  valid = jnp.arange(E2.shape[0]) < E.shape[0]
  a2 = eml.class_balanced_weights(ye2, valid, 3)
  padded = ot_fn(E2, ye2, a2)
  np.testing.assert_allclose(float(padded.cost), float(base.cost), rtol=1e-4)


def test_batch_equals_loop_and_is_differentiable():
  rng = np.random.default_rng(5)
  k, d, B = 3, 5, 4
  L = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
  H1 = eml.feature_hist(jnp.asarray(rng.normal(size=(B, d)), jnp.float32))
  H2 = eml.feature_hist(jnp.asarray(rng.normal(size=(B, d)), jnp.float32))
  solver = eml.make_sinkhorn(threshold=1e-5, max_iterations=2000)
  batch = jax.jit(lambda L: eml.feature_ot_batch(L, H1, L, H2, solver=solver))(L)
  mapped = jax.jit(lambda L: eml.feature_ot_batch(L, H1, L, H2, solver=solver, batch_size=1))(L)
  one = jax.jit(lambda h1, h2: eml.feature_ot(L, h1, L, h2, solver=solver).cost)
  loop = [float(one(H1[i], H2[i])) for i in range(B)]
  np.testing.assert_allclose(np.asarray(batch.cost), loop, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(mapped.cost), loop, rtol=1e-5, atol=1e-7)
  assert batch.converged.shape == (B,) and batch.n_iters.shape == (B,)
  total = lambda L: jnp.sum(eml.feature_ot_batch(L, H1, L, H2, solver=solver).cost)  # noqa: E731
  assert np.all(np.isfinite(np.asarray(jax.jit(jax.grad(total))(L))))
  pw = jax.jit(lambda L: eml.feature_ot_pairwise(L, H1, H2, solver=solver))(L)
  np.testing.assert_allclose(np.diag(np.asarray(pw.cost)), np.asarray(batch.cost), rtol=1e-5)


def test_mahalanobis_low_rank():
  rng = np.random.default_rng(6)
  L = rng.normal(size=(2, 5)).astype(np.float32)
  x, z = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
  want = np.einsum("nd,de,ne->n", x - z, L.T @ L, x - z)
  np.testing.assert_allclose(np.asarray(eml.mahalanobis_sq(L, x, z)), want, rtol=1e-5)


@pytest.mark.parametrize("valid", [[True] * 5, [False, True, False, True, True]])
def test_class_balanced_weights(valid):
  y = jnp.asarray([0, 0, 1, 2, 2])
  w = np.asarray(eml.class_balanced_weights(y, jnp.asarray(valid), 3))
  np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
  present = {int(c) for c, v in zip(np.asarray(y), valid, strict=True) if v}
  for c in present:
    np.testing.assert_allclose(w[np.asarray(y) == c].sum(), 1 / len(present), rtol=1e-6)
  assert np.all(w[~np.asarray(valid)] == 0)
