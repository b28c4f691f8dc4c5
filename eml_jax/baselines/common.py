"""Pieces shared by several baselines: identity init and the embeddings of ``L`` or ``A``.

A metric is either a factor ``L`` (distance ``‖L(x − z)‖²``) or a PSD matrix ``A``
(distance ``(x − z)ᵀ A (x − z)``); both embed the inputs so that k-NN ranks by the squared
Euclidean distance of the embeddings (``mode="euclid"``).
"""

from __future__ import annotations

import jax.numpy as jnp


def eye_init(key, d: int, n_classes: int, surv_idx):
  """``Method.init`` of the matrix baselines: ``I`` ``[d, d]`` (key, classes unused)."""
  del key, n_classes, surv_idx
  return jnp.eye(d, dtype=jnp.float32)


def embed_factor(L, X):
  """Embedding ``X Lᵀ`` ``[n, k]`` of a factor ``L`` ``[k, d]``, as queries and gallery."""
  E = X @ L.T  # [n, k]
  return E, E


def embed_psd(A, X):
  """Embedding ``X A^{1/2}`` ``[n, d]`` of a PSD ``A`` ``[d, d]`` (eigenvalues clipped at 0)."""
  w, V = jnp.linalg.eigh(0.5 * (A + A.T))
  E = X @ (V * jnp.sqrt(jnp.maximum(w, 0.0))[None, :])  # [n, d]
  return E, E
