"""OASIS: a bilinear similarity learned by passive-aggressive steps on triplets.

Chechik, Sharma, Shalit, Bengio, *Large scale online learning of image similarity through
ranking*, JMLR 11, 2010.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eml_jax.baselines.common import eye_init
from eml_jax.baselines.online import Method


def oasis_update(W, x, y, p, p_ok, q, q_ok, hp):
  """OASIS passive-aggressive step (Chechik et al. 2010) on the bilinear similarity.

  ``S_W(x, z) = xᵀ W z``; loss ``[1 − S_W(x, p) + S_W(x, q)]₊``; ``V = x (p − q)ᵀ``;
  ``W ← W + τ V`` with ``τ = min(C, loss / ‖V‖²_F)``.

  Args:
    W: ``[d, d]`` (``W₀ = I``).
    x, p, q: ``[d]``.
    y: unused.
    p_ok, q_ok: ``[]`` bool.
    hp: ``C`` aggressiveness.

  Returns:
    ``[d, d]``.
  """
  del y
  xW = x @ W
  loss = jax.nn.relu(1.0 - xW @ p + xW @ q)
  v = p - q
  vn = (x @ x) * (v @ v)
  tau = jnp.minimum(hp["C"], loss / jnp.maximum(vn, 1e-12))
  tau = jnp.where(p_ok & q_ok, tau, 0.0)
  return W + tau * jnp.outer(x, v)


def _oasis_embed(W, X):
  return X @ W, X  # rank by −(x W)·g = −xᵀ W g


OASIS = Method("oasis", eye_init, oasis_update, _oasis_embed, mode="dot", hparams=dict(C=0.1))
