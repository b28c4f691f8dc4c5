"""OPID-style baseline: a linear classifier that compresses, then expands, across stages.

Hou, Zhou, *One-pass learning with incremental and decremental features*, TPAMI 40(11),
2018 (compress-then-expand linear classifier).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eml_jax.baselines.online import Method


def _opid_init(key, d, n_classes, surv_idx):
  """Zero classifier ``W`` ``[C, d]`` and compressor ``Wc`` ``[C, d_s]`` on ``surv_idx``."""
  del key
  s = jnp.zeros((0,), jnp.int32) if surv_idx is None else jnp.asarray(surv_idx, jnp.int32)
  return dict(
    W=jnp.zeros((n_classes, d), jnp.float32),
    Wc=jnp.zeros((n_classes, s.shape[0]), jnp.float32),
    surv=s,
  )


def opid_update(m, x, y, p, p_ok, q, q_ok, hp):
  """OPID-style step (after Hou & Zhou 2018): SGD on softmax cross-entropy, plus compress.

  The classifier ``W`` ``[C, d]`` takes one step of size ``eta`` on the cross-entropy.
  In a T-stage the compressor ``Wc`` ``[C, d_s]`` on the surviving features learns the
  cross-entropy plus ``beta·KL(softmax(W x) ‖ softmax(Wc x_s))`` (it absorbs what the
  vanishing features contribute); at the transition ``Wc`` initialises the surviving
  columns of the next classifier and the new columns start at 0 (expand). Multi-class
  softmax and the KL form are our choices (the paper's classifiers are linear too).

  Args:
    m: dict with ``W``, ``Wc`` and ``surv`` ``[d_s]`` int positions.
    x: ``[d]``.
    y: ``[]`` int label.
    p, p_ok, q, q_ok: unused (a classifier needs no pairs).
    hp: ``eta``, ``beta``.

  Returns:
    The updated dict.
  """
  del p, p_ok, q, q_ok
  C = m["W"].shape[0]
  onehot = jax.nn.one_hot(y, C)
  prob = jax.nn.softmax(m["W"] @ x)
  W = m["W"] - hp["eta"] * jnp.outer(prob - onehot, x)
  Wc = m["Wc"]
  if Wc.shape[1]:
    xs = x[m["surv"]]
    pc = jax.nn.softmax(Wc @ xs)
    g = (pc - onehot) + hp["beta"] * (pc - prob)  # d/dlogits of CE + beta * KL(prob || pc)
    Wc = Wc - hp["eta"] * jnp.outer(g, xs)
  return dict(W=W, Wc=Wc, surv=m["surv"])


def _opid_predict(m, x):
  return jnp.argmax(m["W"] @ x).astype(jnp.int32)


def _opid_embed(m, X):
  E = X @ m["W"].T  # [n, C] class-score space
  return E, E


def _opid_transfer(m, surv_prev, surv_next, d_next, key):
  """Expand: the next classifier ``[C, d_next]`` starts from ``Wc`` on the survived columns."""
  del key, surv_prev
  C = m["W"].shape[0]
  W = jnp.zeros((C, d_next), jnp.float32).at[:, surv_next].set(m["Wc"])
  return dict(W=W, Wc=jnp.zeros((C, 0), jnp.float32), surv=jnp.zeros((0,), jnp.int32))


OPID = Method(
  "opid",
  _opid_init,
  opid_update,
  _opid_embed,
  hparams=dict(eta=1.0, beta=1.0),
  transfer=_opid_transfer,
  predict=_opid_predict,
)
