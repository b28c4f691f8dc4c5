"""The learner's I-stage update against float64 finite differences of an independent loss.

`oracle_loss` writes the I-stage objective of our reconstruction (spec §2, reading B)
in numpy from the spec, without calling `eml_jax`:

  triplet + (γ/2)‖W_s − G‖² + ν·W_ε(E, L Z),

with ``W_ε`` the entropic OT cost ``⟨P, C⟩ + ε KL(P ‖ abᵀ)`` (a hand log-domain Sinkhorn)
of the class-aware cost ``C_ij = ‖e_i − L z_j‖² + ρ s̄ 1[y_i ≠ y_j]``, class-balanced
marginals and ``ε = eps_scale·s̄``; ``s̄`` (the mean cost) is held constant, as the spec
says, and so are the previous stage's factor ``G`` and embeddings ``E``. With
``ot_features="survived"`` the OT term sees ``W_s Z_s`` only.

One `step` with η = 1 and no prox moves ``L`` by exactly minus its gradient, which must
equal central differences of the oracle along random directions.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import eml_jax as eml
from eml_jax import learner as learner_lib
from eml_jax import synthetic

C, D, K = 3, 8, 6
SPEC = eml.LearnerSpec(n_classes=C, rank=K, mem_size=3, n_neg=4, res_size=4, standardize=False)
# Library Sinkhorn run to float64 convergence: the envelope gradient is exact only at the
# optimal coupling.
TIGHT = dict(threshold=1e-11, max_iterations=20000)


# ----------------------------------------------------------------------- the oracle


def _balanced(labels, valid):
  """Every present class gets the same total mass, split evenly inside the class."""
  w = np.zeros(len(labels))
  present = sorted({int(c) for c, v in zip(labels, valid, strict=True) if v})
  for c in present:
    members = [i for i in range(len(labels)) if valid[i] and labels[i] == c]
    w[members] = 1.0 / (len(present) * len(members))
  return w


def entropic_ot(a, b, cost, eps):
  """``min_P ⟨P, C⟩ + ε KL(P ‖ abᵀ)`` over couplings of ``a, b`` (log-domain Sinkhorn)."""
  ia, ib = a > 0, b > 0
  a, b, cost = a[ia], b[ib], cost[ia][:, ib]
  f, g = np.zeros(len(a)), np.zeros(len(b))
  for it in range(1, 20_001):
    f = -eps * logsumexp((g[None] - cost) / eps + np.log(b)[None], axis=1)
    g = -eps * logsumexp((f[:, None] - cost) / eps + np.log(a)[:, None], axis=0)
    if it % 20 == 0:
      P = a[:, None] * b[None] * np.exp((f[:, None] + g[None] - cost) / eps)
      if np.abs(P.sum(1) - a).sum() < 1e-13:  # float64 floor measured at ~4e-15
        break
  return float(np.sum(P * cost) + eps * np.sum(P * np.log(P / np.outer(a, b))))


def oracle_loss(L, p, sbar=None):
  """The I-stage loss of factor ``L`` ``[k, d]`` for problem ``p``; returns ``(loss, s̄)``."""
  x = p["x"]
  dp = [np.sum((L @ (x - q)) ** 2) for q in p["pos"]]
  dn = [np.sum((L @ (x - q)) ** 2) for q in p["neg"]]
  trip = np.mean([max(0.0, p["margin"] + u - v) for u in dp for v in dn])
  inh = 0.5 * np.sum((L[:, p["inh"]] - p["G_prev"]) ** 2)
  L_ot = L
  if p["ot_features"] == "survived":
    L_ot = np.zeros_like(L)
    L_ot[:, p["inh"]] = L[:, p["inh"]]
  Dm = np.array([[np.sum((e - L_ot @ z) ** 2) for z in p["Z"]] for e in p["E"]])
  a = _balanced(p["E_y"], p["E_valid"])
  b = _balanced(p["Z_y"], p["Z_valid"])
  if sbar is None:
    sbar = float(a @ Dm @ b)
  cost = Dm + p["rho"] * sbar * (p["E_y"][:, None] != p["Z_y"][None, :])
  ot = entropic_ot(a, b, cost, p["eps_scale"] * sbar) if p["nu"] > 0 else 0.0
  return trip + p["gamma"] * inh + p["nu"] * ot, sbar


# ----------------------------------------------------------------------- the problem


def _istage_state():
  """An I-stage state made by `advance` from a T-stage state with a random survivor map
  ``G`` and a random reservoir (so ``E = L_T x`` holds 4 + 3 + 2 valid embeddings)."""
  X, y = synthetic.make_classification(12, D + D // 2, C, seed=0)
  h = D // 2
  stream = eml.one_shot_from_indices(X, y, range(h), range(h, D), range(D, D + h), (6, 6),
                                     seed=0, n_classes=C)  # fmt: skip
  (d0, surv, _), (d1, _, tr) = eml.stage_plan(stream)
  rng = np.random.default_rng(0)
  s0 = eml.init_state(jax.random.key(0), SPEC, d0, surv)
  res = s0.res.replace(
    x=jnp.asarray(rng.normal(size=s0.res.x.shape) / np.sqrt(d0), jnp.float32),
    seen=jnp.asarray([4, 3, 2], jnp.int32),
  )
  G = jnp.asarray(rng.normal(size=s0.G.shape) * 0.5, jnp.float32)
  return eml.advance(s0.replace(res=res, G=G), SPEC, tr, d1)


def _problem(s, nu, ot_features):
  """The float64 state, sample and hyperparameters, and the same problem for the oracle."""
  d = s.d
  rng = np.random.default_rng(1)
  x_raw = rng.normal(size=d)
  z = x_raw / np.sqrt(d)  # standardize=False only scales by 1/√d (spec §2)
  # Memory: 3 samples of class 0 (the arriving class) at growing distances from z, and one
  # of class 1, so every negative draw is that one sample whatever the sampler does; the
  # hinge is active for some pairs and not for others (checked below).
  unit = rng.normal(size=(4, d))
  unit /= np.linalg.norm(unit, axis=1, keepdims=True)
  mem_x = np.zeros((C, SPEC.mem_size, d))
  mem_x[0] = z + np.array([0.2, 1.0, 2.0])[:, None] * unit[:3]
  mem_x[1, 0] = z + 2.0 * unit[3]
  seen = np.array([SPEC.mem_size, 1, 0])
  # Move L off the inheritance target, so (γ/2)‖W_s − G‖² has a gradient.
  L = np.asarray(s.L, np.float64) + 0.1 * rng.normal(size=s.L.shape)
  hp = dict(eta=1.0, margin=1.0, gamma=1.3, nu=nu, rho=3.0, eps_scale=0.05)
  hp = {k: float(np.float32(v)) for k, v in hp.items()}  # HParams.create rounds to float32

  def f64(v):
    return v.astype(jnp.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v

  state = jax.tree.map(f64, s)
  state = state.replace(
    L=jnp.asarray(L), mem=state.mem.replace(x=jnp.asarray(mem_x), seen=jnp.asarray(seen, jnp.int32))
  )
  hparams = jax.tree.map(f64, eml.HParams.create(**hp))
  valid = np.arange(SPEC.mem_size)[None, :] < seen[:, None]  # [C, M]
  problem = dict(
    hp,
    x=z,
    pos=mem_x[0],
    neg=mem_x[1, :1],
    inh=np.asarray(s.inh_idx),
    G_prev=np.asarray(s.G_prev, np.float64),
    E=np.asarray(s.E, np.float64),
    E_y=np.asarray(s.E_y),
    E_valid=np.asarray(s.E_valid),
    Z=np.concatenate([z[None], mem_x.reshape(-1, d)]),
    Z_y=np.concatenate([[0], np.repeat(np.arange(C), SPEC.mem_size)]),
    Z_valid=np.concatenate([[True], valid.reshape(-1)]),
    ot_features=ot_features,
  )
  return state, jnp.asarray(x_raw), hparams, problem


@functools.lru_cache(maxsize=2)
def _step(spec):
  """The library's step, jitted once per spec (ν is traced)."""
  return jax.jit(functools.partial(learner_lib.step, spec=spec, solver=eml.make_sinkhorn(**TIGHT)))


@pytest.mark.parametrize(
  "nu, ot_features", [(0.7, "all"), (0.7, "survived"), (0.0, "all")]
)  # fmt: skip
def test_istage_step_follows_the_gradient_of_the_full_loss(nu, ot_features, x64):
  spec = SPEC._replace(ot_features=ot_features)
  base = _istage_state()  # float32, built outside the float64 context
  with x64():
    state, x, hparams, problem = _problem(base, nu, ot_features)
    new, metrics = _step(spec)(state, x, jnp.asarray(0, jnp.int32), hparams)
    L0 = np.asarray(state.L)
    grad = L0 - np.asarray(new.L)  # η = 1, no prox: the update is minus the gradient
    assert bool(metrics["converged"]) and bool(metrics["ot_active"]) == (nu > 0)
  value, sbar = oracle_loss(L0, problem)
  dn = np.sum((L0 @ (problem["x"] - problem["neg"][0])) ** 2)
  hinge = [problem["margin"] + np.sum((L0 @ (problem["x"] - p)) ** 2) - dn for p in problem["pos"]]
  assert min(hinge) < -1e-3 and max(hinge) > 1e-3 and min(np.abs(hinge)) > 1e-3, hinge
  # The loss the step reports is the oracle's value. Measured relative difference in the
  # three cases: at most 4.9e-15 (library Sinkhorn to 1e-11, the oracle's to 1e-13);
  # 1e-12 is a 200x margin.
  np.testing.assert_allclose(float(metrics["loss"]), value, rtol=1e-12)
  # Central differences along random directions: over the whole factor, the inherited
  # columns only, and the new columns only (where "survived" leaves no OT term).
  rng = np.random.default_rng(2)
  inh = problem["inh"]
  new_cols = np.setdiff1d(np.arange(L0.shape[1]), inh)
  h = 1e-5
  for cols in (np.arange(L0.shape[1]), inh, new_cols):
    V = np.zeros_like(L0)
    V[:, cols] = rng.normal(size=(L0.shape[0], len(cols)))
    fd = oracle_loss(L0 + h * V, problem, sbar)[0] - oracle_loss(L0 - h * V, problem, sbar)[0]
    fd /= 2 * h
    # Measured |⟨grad, V⟩ − fd| / |fd| over the 9 (case, direction) pairs: at most 2.3e-9
    # (float64, h = 1e-5: truncation ~h², rounding ~1e-16/h); 1e-7 is a 40x margin.
    np.testing.assert_allclose(np.sum(grad * V), fd, rtol=1e-7)
