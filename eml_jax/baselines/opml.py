"""OPML and its warm-started variant.

Li, Gong, Zhang, Chen, Li, Shan, *OPML: A one-pass closed-form solution for online metric
learning*, Pattern Recognition 75, 2018.

* `OPML`: the closed-form update on the last stage only, on the triplets of the authors'
  code (github WenbinLee/OPML, ``OML_OPML.m``; `online.opml_triplet`).
* `OPML_WARM`: OPML learned on the T-stage, its survived block warm-starts the I-stage
  (our variant for feature evolution).
* `OPML_LATEST`: OPML on the triplets this project used before issue 15 (negative: the
  latest sample of any other class; `online.latest_pair`), kept for comparison.
"""

from __future__ import annotations

import jax.numpy as jnp

from eml_jax.baselines.common import embed_factor, eye_init
from eml_jax.baselines.online import Method


def opml_update(L, x, y, p, p_ok, q, q_ok, hp):
  """OPML closed form (Li et al. 2018): ``L ← L (I + λ(aaᵀ − bbᵀ))⁻¹`` on an active triplet.

  ``a = x − p``, ``b = x − q``; active when ``m + ‖La‖² − ‖Lb‖² > 0``. The inverse of the
  rank-2 update is applied by the Woodbury identity, ``O(d²)``.

  Args:
    L: ``[d, d]`` factor (``L₀ = I``).
    x, p, q: ``[d]``.
    y: unused (the triplet carries the labels).
    p_ok, q_ok: ``[]`` bool.
    hp: ``lam`` (λ, spec: 1e-3) and ``margin`` (1).

  Returns:
    ``[d, d]``.
  """
  del y
  a, b = x - p, x - q
  La, Lb = L @ a, L @ b
  active = p_ok & q_ok & (hp["margin"] + La @ La - Lb @ Lb > 0)
  U = jnp.stack([a, b], 1)  # [d, 2]
  Cinv = jnp.diag(jnp.stack([1.0 / hp["lam"], -1.0 / hp["lam"]]))
  K = Cinv + U.T @ U  # [2, 2]
  det = K[0, 0] * K[1, 1] - K[0, 1] * K[1, 0]
  ok = active & (jnp.abs(det) > 1e-12)
  Kinv = jnp.array([[K[1, 1], -K[0, 1]], [-K[1, 0], K[0, 0]]]) / jnp.where(ok, det, 1.0)
  L_new = L - ((L @ U) @ Kinv) @ U.T
  return jnp.where(ok, L_new, L)


OPML = Method("opml", eye_init, opml_update, embed_factor, hparams=dict(lam=1e-3, margin=1.0))


def _opml_warm_transfer(L_T, surv_prev, surv_next, d_next, key):
  """The I-stage factor: identity, with the survived block ``L_T[s, s]`` copied in."""
  del key
  L = jnp.eye(d_next, dtype=L_T.dtype)
  return L.at[jnp.ix_(surv_next, surv_next)].set(L_T[jnp.ix_(surv_prev, surv_prev)])


OPML_WARM = OPML._replace(name="opml_warm", transfer=_opml_warm_transfer)
OPML_LATEST = OPML._replace(name="opml_latest", triplet="latest")
