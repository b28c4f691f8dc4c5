"""The online loop shared by the baselines: one-pass pairs, memory prediction, k-NN.

Every baseline is a `Method`: pure ``init`` / ``update`` / ``embed`` functions on a metric
pytree. `online_step` wraps them the same way for all methods (and the same way EML
predicts online): predict the arriving ``x`` by k-NN over a per-class memory of the last
``M`` samples in the method's metric, then form the one-pass triplet ``(x, p, q)``
(`opml_triplet`: OPML's construction as its authors' code builds it, Li et al. 2018;
`latest_pair`: the variant this project used before issue 15), update the metric, push
``x`` into the memory. A whole stage is one jitted `lax.scan` (`make_runner`). Methods
that transfer can start a stage with the previous stage's memory (`eml_jax.impute`), the
same inherited memory as EML's.

Inputs are expected standardised (training-split statistics) and scaled by ``1/√d``, so
that the distance between two random instances is about 2 and margins transfer across
data sets (our convention, as in EML's reading B).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from eml_jax import impute, memory


class Method(NamedTuple):
  """An online metric learner in the shared stream interface.

  Attributes:
    name: registry name.
    init: ``(key, d, n_classes, surv_idx) -> metric`` pytree; ``surv_idx`` ``[d_s]`` int
      positions of features surviving into the next stage, or None (last stage).
    update: ``(metric, x, y, p, p_ok, q, q_ok, hp) -> metric``; ``x, p, q`` ``[d]``,
      ``p_ok, q_ok`` ``[]`` bool (whether a positive / negative exists).
    embed: ``(metric, X [n, d]) -> (queries [n, k], gallery [n, k])``: k-NN ranks by
      ``‖q_i − g_j‖²`` (``mode="euclid"``) or by ``−q_i·g_j`` (``mode="dot"``).
    mode: "euclid" or "dot" (see ``embed``).
    hparams: default hyperparameters (dict of floats; traced at run time).
    transfer: ``(metric_T, surv_prev, surv_next, d_next, key) -> metric_I`` for methods
      that use the T-stage (None: the method learns the last stage only).
    predict: ``(metric, x) -> [] int`` online prediction, or None for memory k-NN.
    triplet: "opml" (`opml_triplet`, the official construction) or "latest"
      (`latest_pair`: the negative is the latest sample of any other class).
  """

  name: str
  init: Callable
  update: Callable
  embed: Callable
  mode: str = "euclid"
  hparams: dict | None = None
  transfer: Callable | None = None
  predict: Callable | None = None
  triplet: str = "opml"


@struct.dataclass
class OnlineState:
  """State of a baseline in one stage.

  Attributes:
    metric: the method's pytree (e.g. ``L`` ``[d, d]``).
    mem: last ``M`` samples per class, ``x [C, M, d]``.
    last_t: ``[C]`` int32 arrival time of each class's latest sample (-1: none yet).
    t: ``[]`` int32 updates done (carried across stages with an inherited memory).
    first_t: ``[C]`` int32 arrival time of each class's first sample (-1: none yet); the
      order of OPML's class queue.
    inh: ``[C, M]`` bool, slots holding a sample carried from the previous stage.
    ridge: `impute.RidgeMap` filling carried samples' new features (empty shapes unless
      the inherited memory is imputed).
  """

  metric: Any
  mem: memory.ClassBuffer
  last_t: jax.Array
  t: jax.Array
  first_t: jax.Array
  inh: jax.Array
  ridge: impute.RidgeMap


def init_online(metric, n_classes: int, d: int, mem_size: int = 5) -> OnlineState:
  """Wraps a fresh metric with an empty memory."""
  none = jnp.full((n_classes,), -1, jnp.int32)
  return OnlineState(
    metric,
    memory.buffer_init(n_classes, mem_size, d),
    none,
    jnp.zeros((), jnp.int32),
    none,
    jnp.zeros((n_classes, mem_size), bool),
    impute.ridge_empty(),
  )


def scores(Qe: jax.Array, Ge: jax.Array, mode: str) -> jax.Array:
  """Ranking scores (lower = nearer) ``[q, g]`` from embeddings ``[q, k]``, ``[g, k]``."""
  if mode == "euclid":
    return jnp.sum(jnp.square(Qe[:, None, :] - Ge[None, :, :]), -1)
  if mode == "dot":
    return -Qe @ Ge.T
  raise ValueError(f"mode must be 'euclid' or 'dot', got {mode!r}")


def vote(s: jax.Array, gy: jax.Array, valid: jax.Array, k: int, n_classes: int) -> jax.Array:
  """k-NN vote from scores ``[c, g]``; ties go to the nearer neighbours. Returns ``[c]``."""
  s = jnp.where(valid[None, :], s, jnp.inf)
  negs, idx = jax.lax.top_k(-s, k)  # [c, k]
  w = jnp.isfinite(negs) * (1.0 + 1e-3 * (k - jnp.arange(k)) / k)
  votes = jnp.sum(jax.nn.one_hot(gy[idx], n_classes) * w[..., None], axis=1)  # [c, C]
  return jnp.argmax(votes, -1).astype(jnp.int32)


def latest_pair(state: OnlineState, y: jax.Array):
  """One-pass triplet partners of a sample of class ``y`` (OPML's construction).

  Returns:
    ``(p [d], p_ok [], q [d], q_ok [])``: the latest sample of class ``y`` and the latest
    sample of any other class.
  """
  M = state.mem.x.shape[1]
  seen = state.mem.seen
  p = state.mem.x[y, (seen[y] - 1) % M]
  other = jnp.where(jnp.arange(seen.shape[0]) == y, -1, state.last_t)
  c = jnp.argmax(other)
  q = state.mem.x[c, (seen[c] - 1) % M]
  return p, seen[y] > 0, q, other[c] >= 0


def opml_triplet(state: OnlineState, y: jax.Array):
  """OPML's one-pass triplet as built in its authors' code (WenbinLee/OPML, ``OML_OPML.m``).

  The code keeps one queue entry per class (its latest sample), in the order of the
  classes' first appearance, and the previous sample. For an arriving ``x`` of a class
  already in the queue, with at least two classes in it: if the previous sample has
  ``x``'s class, ``p`` is that sample and ``q`` the last queue entry (the one before it
  when the last is ``x``'s own class); otherwise ``q`` is the previous sample and ``p``
  the queue entry of ``x``'s class. No triplet otherwise (first sample of a class).

  Returns:
    ``(p [d], ok [], q [d], ok [])``.
  """
  M = state.mem.x.shape[1]
  seen = state.mem.seen
  C = seen.shape[0]

  def latest_of(c):
    return state.mem.x[c, (seen[c] - 1) % M]

  ok = (state.first_t[y] >= 0) & (jnp.sum(state.first_t >= 0) >= 2)
  prev_c = jnp.argmax(state.last_t)  # class of the previous sample
  last_q = jnp.argmax(state.first_t)  # last queue entry
  second_q = jnp.argmax(jnp.where(jnp.arange(C) == last_q, -2, state.first_t))
  q_same = latest_of(jnp.where(last_q == y, second_q, last_q))
  q = jnp.where(prev_c == y, q_same, latest_of(prev_c))
  # p: the previous sample if it has x's class, else x's queue entry; both are the latest
  # sample of class y.
  return latest_of(y), ok, q, ok


def _triplet(method: Method):
  if method.triplet == "opml":
    return opml_triplet
  if method.triplet == "latest":
    return latest_pair
  raise ValueError(f"triplet must be 'opml' or 'latest', got {method.triplet!r}")


def online_step(state: OnlineState, x, y, hp, *, method: Method, k: int = 5):
  """Predict ``x`` (memory k-NN or the method's own predictor), update, remember.

  Args:
    state: `OnlineState`.
    x: ``[d]`` scaled instance.
    y: ``[]`` int label.
    hp: dict of traced hyperparameters.
    method: the `Method` (static).
    k: neighbours of the online prediction.

  Returns:
    ``(state, {"mistake": [] bool})``.
  """
  C, M, d = state.mem.x.shape
  y = jnp.asarray(y, jnp.int32)
  stored, ridge = state.mem, state.ridge
  if ridge.ss.shape[0] and ridge.as_.shape[0]:  # static: imputing carried samples
    ridge = impute.ridge_update(ridge, x)
    lam = hp.get("mem_ridge", jnp.float32(1.0))
    state = state.replace(mem=stored.replace(x=impute.view(stored.x, state.inh, ridge, lam)))
  if method.predict is not None:
    pred = method.predict(state.metric, x)
  else:
    Qe, _ = method.embed(state.metric, x[None])
    _, Ge = method.embed(state.metric, state.mem.x.reshape(C * M, d))
    s = scores(Qe, Ge, method.mode)
    pred = vote(s, state.mem.labels.reshape(-1), state.mem.valid.reshape(-1), min(k, C * M), C)[0]
  p, p_ok, q, q_ok = _triplet(method)(state, y)
  metric = method.update(state.metric, x, y, p, p_ok, q, q_ok, hp)
  mem, inh = impute.push(stored, state.inh, x, y)
  first_t = state.first_t.at[y].set(jnp.where(state.first_t[y] < 0, state.t, state.first_t[y]))
  new = OnlineState(metric, mem, state.last_t.at[y].set(state.t), state.t + 1, first_t, inh, ridge)
  return new, {"mistake": pred != y}


def _scan(state, X, y, hp, *, method, k):
  body = functools.partial(online_step, hp=hp, method=method, k=k)
  return jax.lax.scan(lambda s, xy: body(s, xy[0], xy[1]), state, (X, y))


def make_runner(method: Method, k: int = 5) -> Callable:
  """``jit(scan)``: ``(state, X [n, d], y [n], hp) -> (state, {"mistake": [n]})``."""
  return jax.jit(functools.partial(_scan, method=method, k=k))


@functools.partial(jax.jit, static_argnames=("k", "n_classes", "mode", "chunk"))
def knn_predict_embedded(Ge, gy, Qe, *, k=5, n_classes, mode="euclid", chunk=256):
  """k-NN of embedded queries ``[q, k_e]`` against an embedded gallery ``[g, k_e]``.

  Queries go in fixed-size chunks through `lax.map` (memory ``O(chunk × g)``).

  Returns:
    ``[q]`` int32 predictions.
  """
  n = Qe.shape[0]
  pad = -n % chunk
  Qp = jnp.concatenate([Qe, jnp.zeros((pad, Qe.shape[1]), Qe.dtype)]).reshape(
    -1, chunk, Qe.shape[1]
  )
  valid = jnp.ones(Ge.shape[0], bool)
  kk = min(k, Ge.shape[0])
  out = jax.lax.map(lambda Qc: vote(scores(Qc, Ge, mode), gy, valid, kk, n_classes), Qp)
  return out.reshape(-1)[:n]


def knn_error(method: Method, metric, X_gallery, y_gallery, X_test, y_test, *, n_classes, k=5):
  """5-NN test error (fraction) in the method's metric; inputs already scaled."""
  _, Ge = method.embed(metric, jnp.asarray(X_gallery, jnp.float32))
  Qe, _ = method.embed(metric, jnp.asarray(X_test, jnp.float32))
  pred = knn_predict_embedded(
    Ge, jnp.asarray(y_gallery, jnp.int32), Qe, k=k, n_classes=n_classes, mode=method.mode
  )
  # numpy float64, like EML's `predict.knn_error`: equal mistake counts give equal errors
  return float(np.mean(np.asarray(pred) != np.asarray(y_test)))


def first_learned_stage(method: Method, n_stages: int) -> int:
  """Index of the first stage ``method`` learns: 0 with a ``transfer``, else the last."""
  return 0 if method.transfer is not None else n_stages - 1


def resolve_hparams(method: Method, hp: dict) -> dict:
  """``hp`` over ``method.hparams``, as ``[]`` float32 arrays (traced by the runner)."""
  return {k: jnp.asarray(v, jnp.float32) for k, v in {**(method.hparams or {}), **hp}.items()}


def begin_stage(
  method: Method, stages, t: int, prev, key, *, n_classes: int, mem_size: int = 5,
  memory_mode: str = "none",
):  # fmt: skip
  """Host-side start of learned stage ``t``: a fresh metric, or the previous one transferred.

  Args:
    method: the `Method`.
    stages: the stream's `Stage` tuple (scaled).
    t: stage index.
    prev: the `OnlineState` at the end of stage ``t - 1`` (None: ``t`` is the first
      learned stage).
    key: PRNG key.
    n_classes: number of classes.
    mem_size: memory slots per class.
    memory_mode: what the memory holds after a transfer: "none" (empty), "zero" or
      "ridge" (the previous stage's samples on the survived features, `eml_jax.impute`).

  Returns:
    ``(key, state)``: the key for the next stage and a fresh `OnlineState` (with the
    carried memory, queue order and clock when ``memory_mode`` is not "none").
  """
  from eml_jax import stream as stream_lib  # local: keeps this module free of host helpers

  st = stages[t]
  d = st.X.shape[1]
  surv = None
  if t + 1 < len(stages) and method.transfer is not None:
    surv = stream_lib.transition(st, stages[t + 1]).survived_prev
  key, k_init = jax.random.split(key)
  if prev is None:
    metric = method.init(k_init, d, n_classes, surv)
  else:
    tr = stream_lib.transition(stages[t - 1], st)
    metric = method.transfer(prev.metric, tr.survived_prev, tr.survived_next, d, k_init)
    if surv is not None:  # middle stage of a multi-shot stream: a fresh compressor etc.
      metric = _merge_middle(metric, method.init(k_init, d, n_classes, surv))
    if memory_mode not in impute.MODES:
      raise ValueError(f"memory_mode must be one of {impute.MODES}, got {memory_mode!r}")
    if memory_mode != "none":
      d_prev = stages[t - 1].X.shape[1]
      mem, inh = impute.carry_buffer(
        prev.mem, tr.survived_prev, tr.survived_next, d, impute.input_scale(d_prev, d)
      )
      ridge = impute.ridge_init(tr.survived_next, d) if memory_mode == "ridge" else None
      state = OnlineState(metric, mem, prev.last_t, prev.t, prev.first_t, inh,
                          impute.ridge_empty() if ridge is None else ridge)  # fmt: skip
      return key, state
  return key, init_online(metric, n_classes, d, mem_size)


def run_stream(
  method: Method, stream, hp: dict, key: jax.Array, *, runner=None, mem_size=5, memory_mode="none"
):
  """Runs a baseline over a `Stream` whose stages are already scaled.

  Methods with a ``transfer`` learn every stage and carry the metric across transitions
  (`begin_stage`); the others learn the last stage only (they ignore feature evolution).

  Args:
    method: the `Method`.
    stream: `eml_jax.stream.Stream` (inputs standardised and scaled by ``1/√d_t``).
    hp: hyperparameters (floats or ``[]`` arrays), merged over ``method.hparams``.
    key: PRNG key (for methods whose init or transfer is random).
    runner: a cached `make_runner(method)` (built here if None).
    mem_size: memory slots per class.
    memory_mode: see `begin_stage` (methods with a ``transfer`` only).

  Returns:
    ``(state, [metrics per learned stage])`` with ``[n_t]`` ``mistake`` arrays.
  """
  runner = make_runner(method) if runner is None else runner
  hp = resolve_hparams(method, hp)
  stages = stream.stages
  out, state = [], None
  for t in range(first_learned_stage(method, len(stages)), len(stages)):
    key, state = begin_stage(
      method, stages, t, state, key, n_classes=stream.n_classes, mem_size=mem_size,
      memory_mode=memory_mode,
    )  # fmt: skip
    st = stages[t]
    state, m = runner(state, jnp.asarray(st.X, jnp.float32), jnp.asarray(st.y, jnp.int32), hp)
    out.append(m)
  return state, out


def _merge_middle(transferred, fresh):
  """Middle multi-shot stage: keep transferred arrays, take fresh ones where shapes differ."""
  return jax.tree.map(lambda a, b: a if a.shape == b.shape else b, transferred, fresh)
