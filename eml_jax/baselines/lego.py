"""LEGO: online metric learning by closed-form LogDet-regularised steps on pairs.

Jain, Kulis, Dhillon, Grauman, *Online metric learning and fast similarity search*,
NIPS 2008.
"""

from __future__ import annotations

import jax.numpy as jnp

from eml_jax.baselines.common import embed_psd, eye_init
from eml_jax.baselines.online import Method


def _lego_pair(A, z, target, eta, on):
  """One LEGO step of ``A`` ``[d, d]`` towards ``zᵀAz = target`` for ``z`` ``[d]``, if ``on``."""
  yh = z @ A @ z
  yh = jnp.maximum(yh, 1e-12)
  c = eta * target * yh - 1.0
  ybar = (c + jnp.sqrt(c * c + 4.0 * eta * yh * yh)) / (2.0 * eta * yh)
  g = eta * (ybar - target)
  Az = A @ z
  A_new = A - g * jnp.outer(Az, Az) / (1.0 + g * yh)
  return jnp.where(on, A_new, A)


def lego_update(A, x, y, p, p_ok, q, q_ok, hp):
  """LEGO closed-form step (Jain et al. 2008) on the pairs ``(x, p)`` and ``(x, q)``.

  For ``z = x − x'`` with target distance ``t``: ``ŷ = zᵀAz``, ``ȳ = (ηtŷ − 1 +
  √((ηtŷ − 1)² + 4ηŷ²)) / (2ηŷ)``, ``A ← A − η(ȳ − t) A z zᵀ A / (1 + η(ȳ − t) ŷ)``
  (stays PD). Targets are ours: ``t_sim`` for a same-class pair, only when it is farther,
  ``t_dis`` for another-class pair, only when it is nearer (the squared distance of two
  random scaled instances is about 2).

  Args:
    A: ``[d, d]`` PD (``A₀ = I``).
    x, p, q: ``[d]``.
    y: unused.
    p_ok, q_ok: ``[]`` bool.
    hp: ``eta``, ``t_sim``, ``t_dis``.

  Returns:
    ``[d, d]``.
  """
  del y
  u, v = x - p, x - q
  A = _lego_pair(A, u, hp["t_sim"], hp["eta"], p_ok & (u @ A @ u > hp["t_sim"]))
  return _lego_pair(A, v, hp["t_dis"], hp["eta"], q_ok & (v @ A @ v < hp["t_dis"]))


LEGO = Method("lego", eye_init, lego_update, embed_psd, hparams=dict(eta=0.1, t_sim=1.0, t_dis=3.0))
