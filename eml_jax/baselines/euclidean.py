"""The Euclidean k-NN reference: no learning, ``L = I``, in the shared stream interface."""

from __future__ import annotations

from eml_jax.baselines.common import embed_factor, eye_init
from eml_jax.baselines.online import Method


def _no_update(metric, x, y, p, p_ok, q, q_ok, hp):
  del x, y, p, p_ok, q, q_ok, hp
  return metric


EUCLIDEAN = Method("euclidean", eye_init, _no_update, embed_factor, hparams={})
