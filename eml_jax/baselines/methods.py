"""Online metric-learning baselines for the EML evaluation (spec §3), as `Method`s.

All are our own implementations of the published update rules, in the shared one-pass
interface of `eml_jax.baselines.online` (inputs standardised and scaled by ``1/√d``).
Pairs and triplets come from the one-pass construction there: ``p`` the latest sample of
the arriving class, ``q`` the latest sample of another class. Where a paper leaves a
constant to the user (targets, thresholds) the choice is ours and says so.

* `EUCLIDEAN`: no learning, ``L = I``.
* `OPML`: Li, Gong, Zhang, Chen, Li, Shan, *OPML: A one-pass closed-form solution for
  online metric learning*, Pattern Recognition 75, 2018.
* `OASIS`: Chechik, Sharma, Shalit, Bengio, *Large scale online learning of image
  similarity through ranking*, JMLR 11, 2010.
* `RDML`: Jin, Wang, Zhou, *Regularized distance metric learning: theory and
  algorithm*, NIPS 2009.
* `LEGO`: Jain, Kulis, Dhillon, Grauman, *Online metric learning and fast similarity
  search*, NIPS 2008.
* `OPID`: Hou, Zhou, *One-pass learning with incremental and decremental features*,
  TPAMI 40(11), 2018 (compress-then-expand linear classifier; ``opid`` below).
* `OPML_WARM`: OPML learned on the T-stage, its survived block warm-starts the I-stage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eml_jax.baselines.online import Method

_EYE_INIT = lambda key, d, n_classes, surv_idx: jnp.eye(d, dtype=jnp.float32)  # noqa: E731


def _embed_L(L, X):
  E = X @ L.T  # [n, k]
  return E, E


def _embed_psd(A, X):
  """Embedding ``X A^{1/2}`` of a PSD matrix ``A`` ``[d, d]`` (eigenvalues clipped at 0)."""
  w, V = jnp.linalg.eigh(0.5 * (A + A.T))
  E = X @ (V * jnp.sqrt(jnp.maximum(w, 0.0))[None, :])
  return E, E


def _no_update(metric, x, y, p, p_ok, q, q_ok, hp):
  return metric


EUCLIDEAN = Method("euclidean", _EYE_INIT, _no_update, _embed_L, hparams={})


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


OPML = Method("opml", _EYE_INIT, opml_update, _embed_L, hparams=dict(lam=1e-3, margin=1.0))


def _opml_warm_transfer(L_T, surv_prev, surv_next, d_next, key):
  """The I-stage factor: identity, with the survived block ``L_T[s, s]`` copied in."""
  del key
  L = jnp.eye(d_next, dtype=L_T.dtype)
  return L.at[jnp.ix_(surv_next, surv_next)].set(L_T[jnp.ix_(surv_prev, surv_prev)])


OPML_WARM = OPML._replace(name="opml_warm", transfer=_opml_warm_transfer)


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


OASIS = Method("oasis", _EYE_INIT, oasis_update, _oasis_embed, mode="dot", hparams=dict(C=0.1))


def _psd_project(A):
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


RDML = Method("rdml", _EYE_INIT, rdml_update, _embed_psd, hparams=dict(lam=0.1, b=1.0))


def _lego_pair(A, z, target, eta, on):
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


LEGO = Method(
  "lego", _EYE_INIT, lego_update, _embed_psd, hparams=dict(eta=0.1, t_sim=1.0, t_dis=3.0)
)


def _opid_init(key, d, n_classes, surv_idx):
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

BASELINES = {m.name: m for m in (EUCLIDEAN, OPML, OPML_WARM, OASIS, RDML, LEGO, OPID)}


def get_baseline(name: str) -> Method:
  """The baseline called ``name``; the error lists the valid names."""
  if name not in BASELINES:
    raise ValueError(f"unknown baseline {name!r}; valid: {sorted(BASELINES)}")
  return BASELINES[name]
