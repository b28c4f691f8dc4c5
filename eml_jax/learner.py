"""EML learner: state pytree, jitted one-pass `step`, `lax.scan` stages, stage transitions.

Our reconstruction of EML (spec §2), reading B by default:

* every stage: one SGD step of size η per instance on the one-pass triplet loss
  ``mean_pairs [m + ‖L(x−p)‖² − ‖L(x−q)‖²]₊`` (positives: the memory of ``y``;
  negatives: ``n_neg`` draws from the other classes' memories), then the nuclear-norm
  prox (``λ_nuc``, low-rank metric space);
* T-stage (a next stage exists): a survivor map ``G`` learns the survived-only triplet loss
  plus the forwarding term ``μ‖G x_s − sg(L x)‖²``; ℓ2,1 prox (``λ_21``) on the columns of
  ``L`` of vanishing features; a class-balanced reservoir keeps T-stage samples;
* I-stage (a previous stage exists): ``L = [W_s, W_a]`` starts from ``W_s ← G`` and the
  initial projection (or, by `LearnerSpec` knobs, from ``L_T``'s survived block and/or
  new columns orthogonal to ``W_s``); the loss adds ``(γ/2)‖W_s − G‖²`` (inheritance) and
  ``ν·W_ε(E, L Z)`` (smoothed Wasserstein to the stored T-stage embeddings).

Static choices (shapes, reading, ablation switches) live in `LearnerSpec`; numeric
hyperparameters live in `HParams` and are traced, so sweeps do not recompile.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from ott.solvers.linear import sinkhorn

from eml_jax import distance, impute, memory, prox
from eml_jax import stream as stream_lib


class LearnerSpec(NamedTuple):
  """Static (hashable) learner settings: everything that changes shapes or code paths.

  Attributes:
    n_classes: number of classes ``C``.
    rank: ``k``, rows of the metric factor ``L`` (``k < d``: low-rank metric space).
    reading: "B" (embedding OT, default) or "A" (feature-bin OT, spec §2).
    mem_size: ``M`` latest samples kept per class for triplets.
    n_neg: negatives drawn per arriving sample.
    res_size: ``R`` T-stage reservoir slots per class (stored as embeddings ``E``).
    knn_k: neighbours for the online (predict-then-update) prediction from memory.
    standardize: standardise inputs with running statistics of the data seen so far.
    use_tstage: learn ``G`` and keep ``E`` in T-stages (False: "no T-stage" ablation:
      each stage starts fresh, see `run_stream`).
    use_inherit: ``W_s ← G`` and the ``γ`` term (False: "no inheritance" ablation).
    inherit_from: what the I-stage inherits for the survived columns: "G" (the survivor
      map, spec §2) or "L" (the survived block ``L_T[:, s]`` of the T-stage metric).
    inherit_basis: how the new columns ``W_a`` are drawn: "replace" (spec §2: the initial
      projection with the survived columns overwritten, so ``W_aᵀ W_s`` is random) or
      "complement" (orthonormal in the complement of ``span(W_s)``: the metric starts
      block-diagonal, ``W_sᵀW_s ⊕ I``).
    inherit_scale: "raw" (spec §2) or "unit" (``W_s`` rescaled so that
      ``‖W_s‖_F² = d_s``: the inherited block has the same mean eigenvalue as the
      Euclidean block of the new features).
    ot_features: reading B's I-stage OT term compares the stored ``E`` with ``L Z``
      ("all", spec §2) or with the survived features' part ``W_s Z_s`` only
      ("survived": the new features are not pulled towards the T-stage embedding).
    inherit_memory: what the triplet memory holds when a stage starts: "none" (spec §2:
      empty), "zero" (the previous stage's stored samples on the survived features, new
      features 0) or "ridge" (new features imputed by an online ridge map from the
      survived ones, ``HParams.mem_ridge``); see `eml_jax.impute` (issue 15).
  """

  n_classes: int
  rank: int
  reading: str = "B"
  mem_size: int = 5
  n_neg: int = 5
  res_size: int = 10
  knn_k: int = 5
  standardize: bool = True
  use_tstage: bool = True
  use_inherit: bool = True
  inherit_from: str = "G"
  inherit_basis: str = "replace"
  inherit_scale: str = "raw"
  ot_features: str = "all"
  inherit_memory: str = "none"


_CHOICES = dict(
  inherit_from=("G", "L"),
  inherit_basis=("replace", "complement"),
  inherit_scale=("raw", "unit"),
  ot_features=("all", "survived"),
  inherit_memory=impute.MODES,
)


def check_spec(spec: LearnerSpec) -> LearnerSpec:
  """Raises `ValueError` naming the field on an invalid static setting."""
  if spec.rank < 1 or spec.n_classes < 2:
    raise ValueError(f"need rank >= 1 and n_classes >= 2; got {spec.rank}, {spec.n_classes}")
  if spec.reading not in ("A", "B"):
    raise ValueError(f"reading must be 'A' or 'B', got {spec.reading!r}")
  for name, valid in _CHOICES.items():
    if getattr(spec, name) not in valid:
      raise ValueError(f"{name} must be one of {valid}, got {getattr(spec, name)!r}")
  return spec


@struct.dataclass
class HParams:
  """Traced numeric hyperparameters (``[]`` float32 each); see spec §2 for defaults.

  Attributes:
    eta: SGD step size η.
    margin: triplet margin m.
    mu: forwarding weight μ (0 switches forwarding off).
    gamma: inheritance weight γ (0 switches the penalty off).
    nu: smoothed-Wasserstein weight ν (0 switches the OT term off, and skips it).
    rho: class-mismatch cost in units of the mean cost s̄.
    eps_scale: entropic ε in units of s̄.
    lam_21: ℓ2,1 weight on vanishing columns of ``L`` (T-stage).
    lam_nuc: nuclear-norm weight on ``L`` (0 skips the SVD).
    hist_temp: reading A histogram inverse temperature.
    mem_ridge: ridge ``λ`` of the inherited memory's imputation (``inherit_memory="ridge"``).
  """

  eta: jax.Array
  margin: jax.Array
  mu: jax.Array
  gamma: jax.Array
  nu: jax.Array
  rho: jax.Array
  eps_scale: jax.Array
  lam_21: jax.Array
  lam_nuc: jax.Array
  hist_temp: jax.Array
  mem_ridge: jax.Array

  @classmethod
  def create(
    cls,
    eta=0.03,
    margin=1.0,
    mu=1.0,
    gamma=1.0,
    nu=0.3,
    rho=3.0,
    eps_scale=0.05,
    lam_21=0.0,
    lam_nuc=0.0,
    hist_temp=1.0,
    mem_ridge=1.0,
  ) -> HParams:
    """Builds `HParams` as float32 scalars; raises `ValueError` on negative values.

    Defaults are spec §2's (η and ν from its validation grids; λ's off: the spec keeps
    the low-rank prox knobs available but off in reading B, our reading).
    """
    kw = dict(
      eta=eta,
      margin=margin,
      mu=mu,
      gamma=gamma,
      nu=nu,
      rho=rho,
      eps_scale=eps_scale,
      lam_21=lam_21,
      lam_nuc=lam_nuc,
      hist_temp=hist_temp,
      mem_ridge=mem_ridge,
    )
    for name, v in kw.items():
      if not math.isfinite(float(v)) or float(v) < 0:
        raise ValueError(f"hyperparameter {name}={v} must be finite and >= 0")
    if float(eps_scale) == 0:
      raise ValueError("eps_scale must be > 0 (ε = eps_scale·s̄)")
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in kw.items()})


@struct.dataclass
class EMLState:
  """Learner state for one stage (a pytree; orbax-checkpointable via `eml_jax.checkpoint`).

  Shapes: ``k`` rank, ``d`` this stage's features, ``C`` classes, ``d_sn`` features that
  survive into the next stage (0 in the last stage), ``d_sp`` inherited features (0 in
  the first stage), ``n_E = C·R`` stored embeddings (0 in the first stage).

  Attributes:
    L: ``[k, d]`` metric factor.
    G: ``[k, d_sn]`` survivor map learned in the T-stage.
    surv_idx: ``[d_sn]`` int32 positions in this stage of the surviving features.
    vanish_mask: ``[d]`` float32, 1 on columns that vanish at the next transition.
    G_prev: ``[k, d_sp]`` the inheritance target (``[k, 0]`` without inheritance).
    inh_idx: ``[d_sp]`` int32 positions in this stage of the survived columns.
    mem: triplet memory, ``x [C, M, d]``.
    mem_inh: ``[C, M]`` bool, memory slots holding a sample carried from the previous
      stage (``spec.inherit_memory``; all False otherwise).
    ridge: `impute.RidgeMap` imputing carried samples' new features (empty shapes unless
      ``inherit_memory="ridge"`` in an I-stage).
    res: T-stage reservoir, ``x [C, R, d]``.
    E: ``[n_E, k]`` stored T-stage embeddings.
    E_y: ``[n_E]`` int32 their labels.
    E_valid: ``[n_E]`` bool.
    X_prev: ``[n_E, d_prev]`` reading A only: stored previous-stage samples
      (``[n_E, 0]`` in reading B, which keeps only ``E``).
    L_prev: ``[k, d_prev]`` reading A only: the previous stage's ``L``.
    st_n: ``[d]`` running count per feature.
    st_mean: ``[d]`` running mean.
    st_m2: ``[d]`` running sum of squared deviations (Welford).
    t: ``[]`` int32 updates done in this stage.
    stage: ``[]`` int32 stage index.
    key: PRNG key.
  """

  L: jax.Array
  G: jax.Array
  surv_idx: jax.Array
  vanish_mask: jax.Array
  G_prev: jax.Array
  inh_idx: jax.Array
  mem: memory.ClassBuffer
  mem_inh: jax.Array
  ridge: impute.RidgeMap
  res: memory.ClassBuffer
  E: jax.Array
  E_y: jax.Array
  E_valid: jax.Array
  X_prev: jax.Array
  L_prev: jax.Array
  st_n: jax.Array
  st_mean: jax.Array
  st_m2: jax.Array
  t: jax.Array
  stage: jax.Array
  key: jax.Array

  @property
  def d(self) -> int:
    return self.L.shape[1]


def init_projection(key: jax.Array, k: int, d: int) -> jax.Array:
  """Scaled random orthonormal projection: ``LᵀL = I`` if ``k >= d``, else ``E‖Lx‖² = ‖x‖²``.

  Args:
    key: PRNG key.
    k: rows.
    d: columns.

  Returns:
    ``[k, d]``; the initial metric is (approximately, for ``k < d``) Euclidean.
  """
  A = jax.random.normal(key, (max(k, d), min(k, d)), jnp.float32)
  Q, _ = jnp.linalg.qr(A)  # [max, min], orthonormal columns
  return Q if k >= d else math.sqrt(d / k) * Q.T


def _positions(idx, d, name) -> np.ndarray:
  idx = np.asarray([] if idx is None else idx, dtype=np.int32).reshape(-1)
  if idx.size and (idx.min() < 0 or idx.max() >= d):
    raise ValueError(f"{name} out of range [0, {d}): {idx.tolist()}")
  if len(np.unique(idx)) != len(idx):
    raise ValueError(f"{name} has duplicated positions: {idx.tolist()}")
  return idx


def init_state(key: jax.Array, spec: LearnerSpec, d: int, surv_idx=None) -> EMLState:
  """State for the first stage.

  Args:
    key: PRNG key (the state's randomness all derives from it).
    spec: static settings.
    d: number of features of the first stage.
    surv_idx: positions of the features that survive into the next stage (None: this is
      the only/last stage).

  Returns:
    A fresh `EMLState`.
  """
  if d < 1:
    raise ValueError(f"need d >= 1, got {d}")
  check_spec(spec)
  surv = _positions(surv_idx, d, "surv_idx")
  key, kp = jax.random.split(key)
  L = init_projection(kp, spec.rank, d)
  C, k = spec.n_classes, spec.rank
  return _stage_state(
    L=L,
    surv=surv,
    spec=spec,
    E=jnp.zeros((0, k)),
    E_y=jnp.zeros((0,), jnp.int32),
    E_valid=jnp.zeros((0,), bool),
    X_prev=jnp.zeros((0, 0)),
    L_prev=jnp.zeros((k, 0)),
    G_prev=jnp.zeros((k, 0)),
    inh_idx=np.zeros((0,), np.int32),
    stats=(jnp.zeros(d), jnp.zeros(d), jnp.zeros(d)),
    stage=0,
    key=key,
    C=C,
  )


def _stage_state(
  *, L, surv, spec, E, E_y, E_valid, X_prev, L_prev, G_prev, inh_idx, stats, stage, key, C,
  mem=None, mem_inh=None, ridge=None,
):  # fmt: skip
  d = L.shape[1]
  if mem is None:
    mem = memory.buffer_init(C, spec.mem_size, d)
    mem_inh = jnp.zeros((C, spec.mem_size), bool)
  ridge = impute.ridge_empty() if ridge is None else ridge
  vanish = np.zeros(d, np.float32)
  if surv.size:
    vanish[:] = 1.0
    vanish[surv] = 0.0
  return EMLState(
    L=L,
    G=L[:, surv],
    surv_idx=jnp.asarray(surv, jnp.int32),
    vanish_mask=jnp.asarray(vanish),
    G_prev=G_prev,
    inh_idx=jnp.asarray(inh_idx, jnp.int32),
    mem=mem,
    mem_inh=mem_inh,
    ridge=ridge,
    res=memory.buffer_init(C, spec.res_size, d),
    E=E,
    E_y=E_y,
    E_valid=E_valid,
    X_prev=X_prev,
    L_prev=L_prev,
    st_n=stats[0],
    st_mean=stats[1],
    st_m2=stats[2],
    t=jnp.zeros((), jnp.int32),
    stage=jnp.asarray(stage, jnp.int32),
    key=key,
  )


def inherited_block(state: EMLState, spec: LearnerSpec) -> jax.Array:
  """The ``[k, d_s]`` block the next stage inherits for its survived columns.

  ``spec.inherit_from`` picks the survivor map ``G`` or the survived block of ``L``;
  ``spec.inherit_scale="unit"`` rescales it to ``‖W_s‖_F² = d_s``.
  """
  W = state.G if spec.inherit_from == "G" else state.L[:, state.surv_idx]
  if spec.inherit_scale == "unit":
    W = W * jnp.sqrt(W.shape[1] / jnp.maximum(jnp.sum(jnp.square(W)), 1e-12))
  return W


def _extend(L0: jax.Array, W_s: jax.Array, sn, basis: str) -> jax.Array:
  """Next-stage factor ``[k, d_next]``: ``W_s`` on columns ``sn``, new columns elsewhere.

  "replace": the other columns are ``L0``'s. "complement": they are an orthonormal
  basis of the complement of ``span(W_s)`` (mapped through ``L0``'s new columns, which
  fixes their orientation), so new and inherited features start uncoupled.
  """
  L = L0.at[:, sn].set(W_s)
  if basis == "replace":
    return L
  k, d_next = L0.shape
  new = np.setdiff1d(np.arange(d_next), sn)
  if new.size == 0:
    return L
  U, _, _ = jnp.linalg.svd(W_s, full_matrices=True)  # U [k, k]
  r = min(W_s.shape)
  if k - r == 0:  # no room left in a rank-k factor: keep the initial projection
    return L
  Qc = U[:, r:]  # [k, k - r] orthonormal complement (numerical rank r assumed)
  W_a = Qc @ (Qc.T @ L0[:, new])  # [k, n_new]: L0's new columns projected on it
  # Orthonormalise (k - r >= n_new) or keep the projection's scale (k - r < n_new).
  if k - r >= new.size:
    W_a, _ = jnp.linalg.qr(W_a)
  return L.at[:, new].set(W_a)


def advance(
  state: EMLState, spec: LearnerSpec, tr: stream_lib.Transition, d_next: int, surv_next=None
) -> EMLState:
  """Stage transition: forward (store ``E``), inherit (``W_s ← G``), expand (new columns).

  Our reconstruction of EML (spec §2): the reservoir is embedded with the current ``L``
  (which plays ``L_T``) and only the embeddings are kept (reading A also keeps the
  samples and ``L_T``, which its cross-stage OT needs). The next ``L`` is the initial
  projection with the survived columns replaced by `inherited_block` (if `use_inherit`;
  `_extend` redraws the new columns for ``inherit_basis="complement"``). Running
  statistics of survived features carry over; the reservoir restarts; the triplet memory
  restarts empty (``inherit_memory="none"``) or keeps its samples on the survived
  features (`eml_jax.impute`).

  Args:
    state: the state at the end of stage t.
    spec: static settings.
    tr: `stream.transition(stage_t, stage_t+1)`.
    d_next: number of features of stage t+1.
    surv_next: positions in stage t+1 of features surviving into stage t+2 (None: last).

  Returns:
    The state for stage t+1.
  """
  d = state.d
  sp = _positions(tr.survived_prev, d, "transition.survived_prev")
  sn = _positions(tr.survived_next, d_next, "transition.survived_next")
  if len(sp) != len(sn) or len(sp) == 0:
    raise ValueError(
      f"transition needs matching, non-empty survived positions; got {len(sp)} "
      f"in stage t and {len(sn)} in stage t+1"
    )
  if not np.array_equal(np.asarray(state.surv_idx), sp):
    raise ValueError(
      f"transition.survived_prev {sp.tolist()} differs from the state's surv_idx "
      f"{np.asarray(state.surv_idx).tolist()} (stage dims or order mismatch)"
    )
  surv = _positions(surv_next, d_next, "surv_next")
  C, k, R = spec.n_classes, spec.rank, spec.res_size
  key, kp = jax.random.split(state.key)
  L0 = init_projection(kp, k, d_next)
  Xr = state.res.x.reshape(C * R, d)  # [C*R, d]
  E = Xr @ state.L.T  # [C*R, k]
  if spec.reading == "A":
    X_prev, L_prev = Xr, state.L
  else:
    X_prev, L_prev = jnp.zeros((C * R, 0)), jnp.zeros((k, 0))
  if spec.use_inherit:
    W_s = inherited_block(state, spec)
    L_next = _extend(L0, W_s, sn, spec.inherit_basis)
    G_prev = W_s
  else:
    L_next, G_prev = L0, jnp.zeros((k, 0))
  stats = tuple(
    jnp.zeros(d_next).at[sn].set(s[sp]) for s in (state.st_n, state.st_mean, state.st_m2)
  )
  mem = mem_inh = ridge = None
  if spec.inherit_memory != "none":  # issue 15: the memory keeps the stored samples
    # Stored samples are scaled by 1/√d (after standardisation, whose statistics of the
    # survived features carry over): re-scale them to this stage's 1/√d_next.
    mem, mem_inh = impute.carry_buffer(state.mem, sp, sn, d_next, impute.input_scale(d, d_next))
    if spec.inherit_memory == "ridge":
      ridge = impute.ridge_init(sn, d_next)
  return _stage_state(
    L=L_next,
    surv=surv,
    spec=spec,
    E=E,
    E_y=state.res.labels.reshape(-1),
    E_valid=state.res.valid.reshape(-1),
    X_prev=X_prev,
    L_prev=L_prev,
    G_prev=G_prev,
    inh_idx=sn,
    stats=stats,
    stage=state.stage + 1,
    key=key,
    C=C,
    mem=mem,
    mem_inh=mem_inh,
    ridge=ridge,
  )


def standardize(state: EMLState, X: jax.Array, standardize_on: bool = True) -> jax.Array:
  """Standardises with the running statistics, then scales by ``1/√d`` (spec §2).

  Args:
    state: supplies the running statistics.
    X: ``[..., d]``.
    standardize_on: False only scales by ``1/√d`` (inputs standardised by the caller).

  Returns:
    ``[..., d]``; constant features map to 0 (no division by zero).
  """
  d = X.shape[-1]
  if not standardize_on:
    return X / math.sqrt(d)
  var = state.st_m2 / jnp.maximum(state.st_n, 1.0)  # [d]
  inv = jnp.where(var > 1e-12, jax.lax.rsqrt(jnp.maximum(var, 1e-12)), 1.0)
  return (X - state.st_mean) * inv / math.sqrt(d)


def _update_stats(state: EMLState, x):
  n = state.st_n + 1.0
  delta = x - state.st_mean
  mean = state.st_mean + delta / n
  m2 = state.st_m2 + delta * (x - mean)
  return state.replace(st_n=n, st_mean=mean, st_m2=m2)


def _pair_dists(M, x, P, *, spec, hp, solver):
  """Distances from ``x`` ``[d]`` to rows of ``P`` ``[n, d]`` under factor ``M`` ``[k, d]``."""
  if spec.reading == "B":
    return distance.mahalanobis_sq(M, x[None, :], P), None
  hx = distance.feature_hist(x, hp.hist_temp)
  HP = distance.feature_hist(P, hp.hist_temp)
  res = distance.feature_ot_batch(
    M, jnp.broadcast_to(hx, HP.shape), M, HP, solver=solver, eps_scale=hp.eps_scale
  )
  return res.cost, res


def triplet_loss(M, x, pos, pos_valid, neg, neg_valid, *, spec, hp, solver):
  """One-pass triplet loss ``mean_{(p,q)} [m + d(x,p) − d(x,q)]₊`` over valid pairs.

  Our reconstruction of EML (spec §2); ``d`` is ``‖M(x−z)‖²`` (reading B) or the
  feature-bin smoothed Wasserstein distance with factor ``M`` (reading A).

  Args:
    M: ``[k, d]`` factor (``L`` or ``G``).
    x: ``[d]`` arriving sample.
    pos: ``[P, d]`` positives; pos_valid: ``[P]`` bool.
    neg: ``[N, d]`` negatives; neg_valid: ``[N]`` bool.
    spec: static settings.
    hp: hyperparameters.
    solver: Sinkhorn (reading A).

  Returns:
    ``(loss [], n_pairs [])``; 0 when no valid pair (single class seen, empty memory).
  """
  dp, _ = _pair_dists(M, x, pos, spec=spec, hp=hp, solver=solver)  # [P]
  dn, _ = _pair_dists(M, x, neg, spec=spec, hp=hp, solver=solver)  # [N]
  h = jax.nn.relu(hp.margin + dp[:, None] - dn[None, :])  # [P, N]
  w = (pos_valid[:, None] & neg_valid[None, :]).astype(h.dtype)
  n = jnp.sum(w)
  return jnp.sum(h * w) / jnp.maximum(n, 1.0), n


def _ot_term(L, state, xs, y, *, spec, hp, solver):
  """``W_ε`` between stored T-stage information and the current I-stage sample(s)."""
  C = spec.n_classes
  if spec.reading == "B":
    d = xs.shape[0]
    Z = jnp.concatenate([xs[None, :], state.mem.x.reshape(-1, d)])  # [1+C*M, d]
    if spec.ot_features == "survived":  # W_s Z_s: zero the new features' columns
      L = L * jnp.zeros(d).at[state.inh_idx].set(1.0)
    yz = jnp.concatenate([y[None], state.mem.labels.reshape(-1)])
    vz = jnp.concatenate([jnp.ones((1,), bool), state.mem.valid.reshape(-1)])
    a = distance.class_balanced_weights(state.E_y, state.E_valid, C)
    b = distance.class_balanced_weights(yz, vz, C)
    res = distance.embedding_ot(
      L, state.E, state.E_y, a, Z, yz, b, solver=solver, rho=hp.rho, eps_scale=hp.eps_scale
    )
    return res.cost, (res.converged, res.n_iters)
  # Reading A: cross-stage feature OT between same-class stored samples and x.
  w = (state.E_valid & (state.E_y == y)).astype(jnp.float32)
  w = w / jnp.maximum(jnp.sum(w), 1.0)
  H1 = distance.feature_hist(state.X_prev, hp.hist_temp)  # [n_E, d_prev]
  h2 = distance.feature_hist(xs, hp.hist_temp)
  res = distance.feature_ot_batch(
    jax.lax.stop_gradient(state.L_prev),
    H1,
    L,
    jnp.broadcast_to(h2, (H1.shape[0], h2.shape[0])),
    solver=solver,
    eps_scale=hp.eps_scale,
  )
  conv = jnp.all(res.converged | (w == 0))
  return jnp.sum(w * res.cost), (conv, jnp.max(res.n_iters))


def _knn_from_memory(state, q_emb, *, spec):
  C, M = state.mem.x.shape[:2]
  G = state.mem.x.reshape(C * M, -1) @ state.L.T  # [C*M, k]
  valid = state.mem.valid.reshape(-1)
  d2 = jnp.where(valid, jnp.sum(jnp.square(G - q_emb), -1), jnp.inf)
  kk = min(spec.knn_k, C * M)
  negd, idx = jax.lax.top_k(-d2, kk)
  rank_w = 1.0 + 1e-3 * (kk - jnp.arange(kk)) / kk  # nearest breaks ties
  w = jnp.isfinite(negd) * rank_w
  votes = jnp.zeros(C).at[state.mem.labels.reshape(-1)[idx]].add(w)
  return jnp.argmax(votes)


def step(
  state: EMLState,
  x: jax.Array,
  y: jax.Array,
  hp: HParams,
  *,
  spec: LearnerSpec,
  solver: sinkhorn.Sinkhorn,
) -> tuple[EMLState, dict[str, jax.Array]]:
  """One online update on ``(x, y)``: predict from memory, SGD step, proxes, push.

  Bind ``spec`` and ``solver`` with `functools.partial` and `jax.jit` (see
  `make_learner`); a step compiles once per stage shape.

  Args:
    state: current `EMLState` (``L`` is ``[k, d]``).
    x: ``[d]`` raw instance in this stage's features.
    y: ``[]`` int32 label.
    hp: traced `HParams`.
    spec: static `LearnerSpec`.
    solver: Sinkhorn from `distance.make_sinkhorn`.

  Returns:
    ``(state, metrics)``; metrics hold the losses, ``mistake`` (online prediction before
    the update), and the Sinkhorn ``ot_active``, ``converged``, ``n_iters``.
  """
  t_stage = state.G.shape[1] > 0  # static: a next stage exists
  i_stage = state.E.shape[0] > 0  # static: stored T-stage information exists
  inherit = state.G_prev.shape[1] > 0
  key, k_neg, k_res = jax.random.split(state.key, 3)
  y = jnp.asarray(y, jnp.int32)
  if spec.standardize:
    state = _update_stats(state, x)
  xs = standardize(state, x, spec.standardize)  # [d]
  stored = state.mem  # what is pushed to; `state.mem` below is the memory as used
  ridge = state.ridge
  if ridge.ss.shape[0] and ridge.as_.shape[0]:  # static: imputing carried samples
    ridge = impute.ridge_update(ridge, xs)  # the features of x are observed on arrival
  state = state.replace(
    mem=stored.replace(x=impute.view(stored.x, state.mem_inh, ridge, hp.mem_ridge))
  )

  pred = _knn_from_memory(state, state.L @ xs, spec=spec)
  pos, pos_valid = state.mem.x[y], state.mem.valid[y]  # [M, d], [M]
  neg, neg_valid = memory.sample_negatives(state.mem, y, k_neg, spec.n_neg)  # [N, d], [N]
  tl = functools.partial(triplet_loss, spec=spec, hp=hp, solver=solver)

  def loss_L(L):
    trip, n_pairs = tl(L, xs, pos, pos_valid, neg, neg_valid)
    inh = 0.0
    if inherit:
      inh = 0.5 * jnp.sum(jnp.square(L[:, state.inh_idx] - state.G_prev))
    return trip + hp.gamma * inh, (trip, inh, n_pairs)

  (_, (trip, inh, n_pairs)), gL = jax.value_and_grad(loss_L, has_aux=True)(state.L)

  ot_cost, ot_active = jnp.zeros(()), jnp.zeros((), bool)
  converged, n_iters = jnp.ones((), bool), jnp.zeros((), jnp.int32)
  if i_stage:
    ot_active = (hp.nu > 0) & jnp.any(state.E_valid)

    def with_ot(L):
      ot_fn = functools.partial(_ot_term, state=state, xs=xs, y=y, spec=spec, hp=hp, solver=solver)
      (c, (conv, nit)), g = jax.value_and_grad(ot_fn, has_aux=True)(L)
      return g, c, conv, nit.astype(jnp.int32)

    def without_ot(L):
      return jnp.zeros_like(L), jnp.zeros(()), jnp.ones((), bool), jnp.zeros((), jnp.int32)

    g_ot, ot_cost, converged, n_iters = jax.lax.cond(ot_active, with_ot, without_ot, state.L)
    gL = gL + hp.nu * g_ot

  G, trip_G, fwd = state.G, jnp.zeros(()), jnp.zeros(())
  if t_stage and spec.use_tstage:
    s = state.surv_idx
    target = jax.lax.stop_gradient(state.L @ xs)  # [k]

    def loss_G(G):
      tg, _ = tl(G, xs[s], pos[:, s], pos_valid, neg[:, s], neg_valid)
      f = jnp.sum(jnp.square(G @ xs[s] - target))
      return tg + hp.mu * f, (tg, f)

    (_, (trip_G, fwd)), gG = jax.value_and_grad(loss_G, has_aux=True)(state.G)
    G = state.G - hp.eta * gG

  L = state.L - hp.eta * gL
  if t_stage:
    L = prox.l21_prox(L, hp.eta * hp.lam_21, state.vanish_mask)
  L = jax.lax.cond(hp.lam_nuc > 0, lambda W: prox.svt(W, hp.eta * hp.lam_nuc), lambda W: W, L)

  mem, mem_inh = impute.push(stored, state.mem_inh, xs, y)
  res = state.res
  if t_stage and spec.use_tstage:
    res = memory.reservoir_push(res, xs, y, k_res)
  new = state.replace(
    L=L, G=G, mem=mem, mem_inh=mem_inh, ridge=ridge, res=res, t=state.t + 1, key=key
  )
  metrics = dict(
    loss=trip + hp.gamma * inh + hp.nu * ot_cost,
    triplet=trip,
    n_pairs=n_pairs,
    triplet_G=trip_G,
    forward=fwd,
    inherit=jnp.asarray(inh, jnp.float32),
    ot_cost=ot_cost,
    ot_active=ot_active,
    converged=converged,
    n_iters=n_iters,
    mistake=pred != y,
  )
  return new, metrics


def scan_stage(state, X, y, hp, *, spec, solver):
  """Runs `step` over a stream chunk with `lax.scan`.

  Args:
    state: `EMLState` with ``L`` ``[k, d]``.
    X: ``[n, d]`` raw instances.
    y: ``[n]`` int32 labels.
    hp: `HParams`.
    spec: static `LearnerSpec`.
    solver: Sinkhorn.

  Returns:
    ``(state, metrics)`` with ``[n]`` metric arrays.
  """
  body = functools.partial(step, hp=hp, spec=spec, solver=solver)
  return jax.lax.scan(lambda s, xy: body(s, xy[0], xy[1]), state, (X, y))


class Learner(NamedTuple):
  """Jitted entry points with the static collaborators bound (see `make_learner`).

  Attributes:
    spec: the static settings.
    solver: the Sinkhorn solver.
    step: ``jit(partial(step, spec=, solver=))``: ``(state, x, y, hp) -> (state, m)``.
    scan: ``jit(partial(scan_stage, ...))``: ``(state, X, y, hp) -> (state, m)``.
  """

  spec: LearnerSpec
  solver: Any
  step: Callable
  scan: Callable


def make_learner(spec: LearnerSpec, solver: sinkhorn.Sinkhorn | None = None) -> Learner:
  """Binds ``spec`` and a Sinkhorn (built once) and jits `step` and `scan_stage`."""
  solver = distance.make_sinkhorn() if solver is None else solver
  return Learner(
    spec,
    solver,
    jax.jit(functools.partial(step, spec=spec, solver=solver)),
    jax.jit(functools.partial(scan_stage, spec=spec, solver=solver)),
  )


def _check_inputs(learner, state, X, y):
  d = state.d
  X, y = np.asarray(X), np.asarray(y)
  stream_lib.validate_xy(X, y, learner.spec.n_classes, d=d, name=f"stage {int(state.stage)}")
  return jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.int32)


def run_stage(learner: Learner, state: EMLState, X, y, hp: HParams):
  """Validates a chunk (shape, NaN, labels) on the host, then runs the jitted scan.

  Args:
    learner: from `make_learner`.
    state: current state.
    X: ``[n, d]`` raw instances of the current stage.
    y: ``[n]`` int labels.
    hp: `HParams`.

  Returns:
    ``(state, metrics)``.

  Raises:
    ValueError: wrong number of features, NaN/inf, labels outside ``[0, C)``.
  """
  X, y = _check_inputs(learner, state, X, y)
  if X.shape[0] == 0:
    return state, {}
  return learner.scan(state, X, y, hp)


def stage_plan(stream: stream_lib.Stream):
  """Host-side layout: per stage ``(d_t, surv_idx_t, transition_in)``.

  Args:
    stream: a `Stream`.

  Returns:
    A list of ``(d, surv_idx or None, Transition or None)``.
  """
  stages = stream.stages
  trs = [stream_lib.transition(stages[t], stages[t + 1]) for t in range(len(stages) - 1)]
  plan = []
  for t, st in enumerate(stages):
    surv = trs[t].survived_prev if t < len(trs) else None
    plan.append((len(st.features), surv, trs[t - 1] if t else None))
  return plan


def run_stream(
  learner: Learner, stream: stream_lib.Stream, hp: HParams, key: jax.Array, *, on_stage=None
):
  """Runs a whole stream: each stage is one jitted scan, transitions via `advance`.

  With ``spec.use_tstage=False`` (ablation) only the last stage is learned, from scratch.

  Args:
    learner: from `make_learner`.
    stream: a validated `Stream` (see `stream.validate_stream`).
    hp: `HParams`.
    key: PRNG key.
    on_stage: optional ``fn(t, state, metrics)`` called after each stage.

  Returns:
    ``(final_state, [metrics per stage])``.
  """
  stream_lib.validate_stream(stream)
  if stream.n_classes != learner.spec.n_classes:
    raise ValueError(f"stream has {stream.n_classes} classes, spec {learner.spec.n_classes}")
  plan = stage_plan(stream)
  first = 0 if learner.spec.use_tstage else len(plan) - 1
  d, surv, _ = plan[first]
  state = init_state(key, learner.spec, d, surv if first == 0 else None)
  out = []
  for t in range(first, len(plan)):
    if t > first:
      d, surv, tr = plan[t]
      state = advance(state, learner.spec, tr, d, surv)
    st = stream.stages[t]
    state, m = run_stage(learner, state, st.X, st.y, hp)
    out.append(m)
    if on_stage is not None:
      on_stage(t, state, m)
  return state, out
