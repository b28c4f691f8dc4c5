"""RDML: regularized distance metric learning, online steps on pairs.

Jin, Wang, Zhou, *Regularized distance metric learning: theory and algorithm*, NIPS 2009.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eml_jax.baselines.common import embed_psd, eye_init
from eml_jax.baselines.online import Method


def _psd_project(A):
  """Nearest PSD matrix to ``A`` ``[d, d]`` (symmetrised, eigenvalues clipped at 0)."""
  w, V = jnp.linalg.eigh(0.5 * (A + A.T))
  return (V * jnp.maximum(w, 0.0)[None, :]) @ V.T


def rdml_update(A, x, y, p, p_ok, q, q_ok, hp):
  """RDML online step (Jin et al. 2009) on the pairs ``(x, p)`` (similar), ``(x, q)``.

  For a pair with ``s = +1`` (same class) or ``−1``, on a mistake ``s(b − ‖x − z‖²_A) ≤
  0``: ``A ← π_{S+}(A − λ s (x − z)(x − z)ᵀ)``. The PSD projection (an eigendecomposition)
  is only needed after a similar-pair step, so it runs under `lax.cond`. The threshold
  ``b`` is ours (1, half the mean squared distance of two random scaled instances).

  Args:
    A: ``[d, d]`` PSD (``A₀ = I``).
    x, p, q: ``[d]``.
    y: unused.
    p_ok, q_ok: ``[]`` bool.
    hp: ``lam`` (λ) and ``b``.

  Returns:
    ``[d, d]`` PSD.
  """
  del y
  u, v = x - p, x - q
  up = p_ok & (u @ A @ u >= hp["b"])  # similar pair judged dissimilar
  A = A - jnp.where(up, hp["lam"], 0.0) * jnp.outer(u, u)
  A = jax.lax.cond(up, _psd_project, lambda M: M, A)
  dn = q_ok & (v @ A @ v <= hp["b"])  # dissimilar pair judged similar
  return A + jnp.where(dn, hp["lam"], 0.0) * jnp.outer(v, v)


RDML = Method("rdml", eye_init, rdml_update, embed_psd, hparams=dict(lam=0.1, b=1.0))
