"""Distances: Mahalanobis with a low-rank factor and smoothed Wasserstein via ott-jax.

Our reconstruction of EML (spec §2). Two readings of "smoothed Wasserstein":

* Reading B (default, `embedding_ot`): entropic OT between two *sets* of embeddings,
  stored T-stage embeddings ``E`` and current I-stage embeddings ``L Z``, with the
  class-aware cost ``C_ij = ‖e_i − L z_j‖² + ρ·s̄·1[y_i ≠ y_j]``, class-balanced
  marginals and ``ε = eps_scale·s̄`` (``s̄`` the mean cost, held constant).
* Reading A (option, `feature_ot`): each sample is a histogram over its own features; the
  ground cost between feature p of one space and feature q of another is
  ``‖L₁ e_p − L₂ e_q‖²``, i.e. between columns of the metric factors. With ``L₁ = L₂`` it
  is the within-stage distance; with ``L₁ = L_T``, ``L₂ = L_I`` it aligns features across
  stages.

All solves go geometry -> `LinearProblem` -> a `Sinkhorn` built once by the caller
(`make_sinkhorn`). Gradients of ``reg_ot_cost`` use the envelope (Danskin) theorem.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration, sinkhorn

# Floor for the mean cost s̄, so that all-zero inputs give ε > 0 (our choice).
_MIN_SBAR = 1e-6


class OTResult(NamedTuple):
  """A smoothed Wasserstein value and the solver's diagnostics.

  Attributes:
    cost: ``[]`` (or ``[B]`` batched) ``reg_ot_cost`` of the entropic problem.
    converged: ``[]`` bool, Sinkhorn reached its threshold.
    n_iters: ``[]`` int, Sinkhorn iterations run.
  """

  cost: jax.Array
  converged: jax.Array
  n_iters: jax.Array


def make_sinkhorn(
  threshold: float = 1e-3,
  max_iterations: int = 200,
  inner_iterations: int = 10,
  lse_mode: bool = True,
  momentum: float | None = None,
  norm_error: int = 1,
) -> sinkhorn.Sinkhorn:
  """Builds the `Sinkhorn` solver once; pass it to the distance functions.

  Args:
    threshold: marginal-error tolerance (ℓ1).
    max_iterations: iteration cap (a compile-time constant).
    inner_iterations: iterations between convergence checks.
    lse_mode: log-domain updates (robust for any ε); False uses kernel (scaling) updates,
      faster on CPU but able to underflow when ``C/ε`` is large (> ~80 in float32).
    momentum: fixed over-relaxation value in (1, 2), or None for plain Sinkhorn.
    norm_error: p of the ℓp marginal error compared with ``threshold`` (POT uses 2).

  Returns:
    A `Sinkhorn` whose gradients of ``reg_ot_cost`` w.r.t. the cost are the envelope
    gradient (the coupling), via ``use_danskin=True``.
  """
  if momentum is not None and not 1.0 <= momentum < 2.0:
    raise ValueError(f"momentum must lie in [1, 2), got {momentum}")
  return sinkhorn.Sinkhorn(
    threshold=threshold,
    max_iterations=max_iterations,
    inner_iterations=inner_iterations,
    lse_mode=lse_mode,
    norm_error=norm_error,
    momentum=None if momentum is None else acceleration.Momentum(value=momentum),
    use_danskin=True,
  )


def sq_dists(U: jax.Array, V: jax.Array) -> jax.Array:
  """Squared Euclidean distances by explicit differences (exact, no cancellation).

  Args:
    U: ``[n, k]``.
    V: ``[m, k]``.

  Returns:
    ``[n, m]`` with ``‖u_i − v_j‖²``.
  """
  return jnp.sum(jnp.square(U[:, None, :] - V[None, :, :]), axis=-1)


def mahalanobis_sq(L: jax.Array, x: jax.Array, z: jax.Array) -> jax.Array:
  """Squared Mahalanobis distance ``‖L(x − z)‖²`` with a (low-rank) factor.

  Args:
    L: ``[k, d]`` metric factor, ``M = LᵀL``.
    x: ``[..., d]``.
    z: ``[..., d]`` (broadcast against ``x``).

  Returns:
    ``[...]`` squared distances.
  """
  return jnp.sum(jnp.square((x - z) @ L.T), axis=-1)


def class_balanced_weights(y: jax.Array, valid: jax.Array, n_classes: int) -> jax.Array:
  """Marginal weights giving every present class the same total mass.

  Args:
    y: ``[n]`` int labels.
    valid: ``[n]`` bool, which entries exist (fixed-shape buffers).
    n_classes: number of classes.

  Returns:
    ``[n]`` non-negative weights summing to 1 (all zero if nothing is valid).
  """
  v = valid.astype(jnp.result_type(float))
  counts = jnp.zeros(n_classes, v.dtype).at[y].add(v)  # [C]
  w = v / jnp.maximum(counts[y], 1.0)
  return w / jnp.maximum(jnp.sum(w), 1e-12)


def _solve(C, eps, a, b, solver) -> OTResult:
  geom = geometry.Geometry(cost_matrix=C, epsilon=eps)
  out = solver(linear_problem.LinearProblem(geom, a=a, b=b))
  return OTResult(out.reg_ot_cost, out.converged, out.n_iters)


def embedding_ot(
  L: jax.Array,
  E: jax.Array,
  ye: jax.Array,
  a: jax.Array,
  Z: jax.Array,
  yz: jax.Array,
  b: jax.Array,
  *,
  solver: sinkhorn.Sinkhorn,
  rho: jax.Array | float = 3.0,
  eps_scale: jax.Array | float = 0.05,
) -> OTResult:
  """Reading B: class-aware entropic OT between stored and current embeddings.

  Our reconstruction of EML (spec §2): ``W_ε(E, L Z)`` with cost
  ``C_ij = ‖e_i − L z_j‖² + ρ·s̄·1[y_i ≠ y_j]`` and ``ε = eps_scale·s̄``, ``s̄`` the
  ``a bᵀ``-weighted mean of ``‖e_i − L z_j‖²`` under `stop_gradient`.

  Args:
    L: ``[k, d]`` current metric factor.
    E: ``[n, k]`` stored T-stage embeddings (constants).
    ye: ``[n]`` their labels.
    a: ``[n]`` marginal on ``E`` (zeros for empty slots).
    Z: ``[m, d]`` current-stage instances.
    yz: ``[m]`` their labels.
    b: ``[m]`` marginal on ``Z`` (zeros for empty slots).
    solver: a `Sinkhorn` from `make_sinkhorn`.
    rho: class-mismatch penalty in units of ``s̄``.
    eps_scale: entropic regularisation in units of ``s̄``.

  Returns:
    `OTResult`; ``cost`` is differentiable w.r.t. ``L``.
  """
  D = sq_dists(jax.lax.stop_gradient(E), Z @ L.T)  # [n, m]
  sbar = jnp.maximum(jax.lax.stop_gradient(a @ D @ b), _MIN_SBAR)
  C = D + rho * sbar * (ye[:, None] != yz[None, :]).astype(D.dtype)
  return _solve(C, eps_scale * sbar, a, b, solver)


def feature_hist(x: jax.Array, temp: jax.Array | float = 1.0) -> jax.Array:
  """Reading A: a sample as a histogram over its own features, ``softmax(temp·x)``.

  Softmax is our choice: it is positive, smooth, and defined for zero or negative
  (standardised) inputs.

  Args:
    x: ``[..., d]``.
    temp: inverse temperature.

  Returns:
    ``[..., d]`` probability vectors.
  """
  return jax.nn.softmax(temp * x, axis=-1)


def feature_cost(L1: jax.Array, L2: jax.Array) -> jax.Array:
  """Reading A ground cost ``C_pq = ‖L₁ e_p − L₂ e_q‖²`` between metric-factor columns.

  Args:
    L1: ``[k, d1]``.
    L2: ``[k, d2]``.

  Returns:
    ``[d1, d2]``.
  """
  return sq_dists(L1.T, L2.T)


def _feature_geom(L1, L2, solver, eps_scale, eps) -> geometry.Geometry:
  C = feature_cost(L1, L2)  # [d1, d2]
  if eps is None:
    eps = eps_scale * jnp.maximum(jax.lax.stop_gradient(jnp.mean(C)), _MIN_SBAR)
  # Kernel mode: compute K = exp(−C/ε) once, outside Sinkhorn's loop (ott still raises K
  # to the power ε/ε_t at every iteration, so this mode is not faster on CPU).
  K = None if solver.lse_mode else jnp.exp(-C / eps)
  return geometry.Geometry(cost_matrix=C, kernel_matrix=K, epsilon=eps)


def _solve_geom(geom, a, b, solver) -> OTResult:
  out = solver(linear_problem.LinearProblem(geom, a=a, b=b))
  return OTResult(out.reg_ot_cost, out.converged, out.n_iters)


def feature_ot(
  L1: jax.Array,
  h1: jax.Array,
  L2: jax.Array,
  h2: jax.Array,
  *,
  solver: sinkhorn.Sinkhorn,
  eps_scale: jax.Array | float = 0.05,
  eps: jax.Array | float | None = None,
) -> OTResult:
  """Reading A: feature-bin smoothed Wasserstein distance between two samples.

  Our reconstruction of EML (spec §2, reading A). For ``L1 = L2 = L`` the envelope
  gradient is ``∂/∂L = 2L(diag(P1) + diag(Pᵀ1) − P − Pᵀ)`` with ``P`` the coupling.

  Args:
    L1: ``[k, d1]`` factor whose columns place the features of ``h1``.
    h1: ``[d1]`` histogram.
    L2: ``[k, d2]`` factor for ``h2`` (pass ``L1`` within a stage).
    h2: ``[d2]`` histogram.
    solver: a `Sinkhorn` from `make_sinkhorn`.
    eps_scale: ``ε = eps_scale·mean(C)`` (mean under `stop_gradient`) unless ``eps``.
    eps: absolute ε, overriding ``eps_scale``.

  Returns:
    `OTResult`.
  """
  return _solve_geom(_feature_geom(L1, L2, solver, eps_scale, eps), h1, h2, solver)


def _batched(fn, xs, batch_size):
  if batch_size is None:
    return jax.vmap(fn)(*xs)
  return jax.lax.map(lambda x: fn(*x), xs, batch_size=batch_size)


def feature_ot_batch(
  L1, H1, L2, H2, *, solver, eps_scale=0.05, eps=None, batch_size=None
) -> OTResult:
  """`feature_ot` over a batch of histogram pairs, shared factors.

  ``batch_size=None`` ``vmap``s the whole batch (one Sinkhorn loop that runs until the
  slowest problem converges); an int runs ``lax.map`` over groups of that many vmapped
  problems, so easy problems stop early (faster on CPU when iteration counts vary).

  Args:
    L1: ``[k, d1]``.
    H1: ``[B, d1]`` histograms.
    L2: ``[k, d2]``.
    H2: ``[B, d2]`` histograms.
    solver: a `Sinkhorn` from `make_sinkhorn`.
    eps_scale: as in `feature_ot`.
    eps: as in `feature_ot`.
    batch_size: None (one ``vmap``) or problems per ``lax.map`` step.

  Returns:
    `OTResult` with ``[B]`` fields.
  """
  geom = _feature_geom(L1, L2, solver, eps_scale, eps)  # shared by the whole batch
  return _batched(lambda h1, h2: _solve_geom(geom, h1, h2, solver), (H1, H2), batch_size)


def feature_ot_pairwise(L, Hq, Hg, *, solver, eps_scale=0.05) -> OTResult:
  """`feature_ot` between every query and every gallery histogram (nested ``vmap``).

  Args:
    L: ``[k, d]`` shared factor.
    Hq: ``[q, d]`` query histograms.
    Hg: ``[g, d]`` gallery histograms.
    solver: a `Sinkhorn` from `make_sinkhorn`.
    eps_scale: as in `feature_ot`.

  Returns:
    `OTResult` with ``[q, g]`` fields.
  """
  geom = _feature_geom(L, L, solver, eps_scale, None)
  fn = lambda h1, h2: _solve_geom(geom, h1, h2, solver)  # noqa: E731
  return jax.vmap(jax.vmap(fn, in_axes=(None, 0)), in_axes=(0, None))(Hq, Hg)
