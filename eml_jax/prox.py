"""Proximal operators for the low-rank and group-sparse knobs (spec §2, "low-rank option").

Our reconstruction of EML: after each SGD step of size η the learner may apply
``prox_{ηλ‖·‖_*}`` (singular-value thresholding, low-rank metric space) to ``L`` and
``prox_{ηλ‖·‖_{2,1}}`` (group shrinkage) to the columns of ``L`` of vanishing features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l21_norm(W: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """``Σ_j ‖W[:, j]‖₂`` over the (masked) columns.

  Args:
    W: ``[k, d]``.
    mask: ``[d]`` weights (1 for columns in the group penalty), or None for all.

  Returns:
    ``[]``.
  """
  norms = jnp.sqrt(jnp.sum(jnp.square(W), axis=0))  # [d]
  return jnp.sum(norms if mask is None else norms * mask)


def l21_prox(W: jax.Array, tau: jax.Array | float, mask: jax.Array | None = None) -> jax.Array:
  """Column-group shrinkage ``w_j ← max(0, 1 − τ/‖w_j‖) w_j`` on masked columns.

  Args:
    W: ``[k, d]``.
    tau: threshold ``ηλ`` (>= 0).
    mask: ``[d]`` in {0, 1}: which columns are shrunk; None shrinks all.

  Returns:
    ``[k, d]``; zero columns stay zero (no division by zero).
  """
  norms = jnp.sqrt(jnp.sum(jnp.square(W), axis=0))  # [d]
  scale = jnp.maximum(0.0, 1.0 - tau / jnp.maximum(norms, 1e-30))  # [d]
  if mask is not None:
    scale = jnp.where(mask > 0, scale, 1.0)
  return W * scale[None, :]


def nuclear_norm(W: jax.Array) -> jax.Array:
  """Sum of singular values of ``W`` ``[k, d]``; returns ``[]``."""
  return jnp.sum(jnp.linalg.svd(W, compute_uv=False))


def svt(W: jax.Array, tau: jax.Array | float) -> jax.Array:
  """Singular-value thresholding, the prox of ``τ‖·‖_*``: ``U max(Σ − τ, 0) Vᵀ``.

  Args:
    W: ``[k, d]``.
    tau: threshold ``ηλ`` (>= 0).

  Returns:
    ``[k, d]``.
  """
  U, s, Vt = jnp.linalg.svd(W, full_matrices=False)  # [k, r], [r], [r, d]
  return (U * jnp.maximum(s - tau, 0.0)[None, :]) @ Vt
