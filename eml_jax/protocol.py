"""The EML evaluation protocol (spec §3) on real data: streams, runs, validation splits.

Typed host-side functions; `eml_jax.run_lib` unpacks the benchmark config into them and
`experiments/eml_benchmark.py` drives them. Per data set and seed:

1. rows are shuffled by the seed; a test split is held out; a `datasets.Scaler` is fitted
   on the training rows only and applied to both;
2. the training rows form the stream: one-shot (T-stage ``[v; s]`` then I-stage
   ``[s; a]``, halves of the training rows) or multi-shot (``n_stages`` equal parts,
   feature blocks ``[B_t; B_{t+1}]``), with a seeded feature permutation;
3. every method runs one pass; we record the 5-NN test error with the final metric
   (gallery: all last-stage training instances), the online mistake rate over the last
   stage (predict, then update) and the wall time per update of the last stage.

Validation (choosing defaults): `validation_stream` keeps only the training stream and
holds out the tail of its last stage as the evaluation split; the test split is unused.

Seed-parallel runs (`evaluate(..., mesh=)`): the streams of all seeds of a data set have
the same shapes, so each method runs all seeds at once: per stage, the runs' states are
stacked on a leading axis and one jitted `jax.vmap` of the stage scan runs them, the run
axis split over the mesh axis ``"data"`` (`run_eml_runs`, `run_baseline_runs`). Stage
transitions (host-side, numpy positions) stay per run.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import parallel_jax as parallel
from eml_jax import datasets, learner, predict
from eml_jax import stream as stream_lib
from eml_jax.baselines import online


def split_scale(X, y, *, seed: int, test_frac: float, max_train=None, max_test=None):
  """Seeded train/test split, then standardisation fitted on the training rows only.

  Args:
    X: ``[n, d]`` raw features.
    y: ``[n]`` labels.
    seed: row-shuffle seed.
    test_frac: fraction of rows held out for test (before the caps).
    max_train: cap on training rows (None: no cap).
    max_test: cap on test rows (None: no cap).

  Returns:
    ``(X_train, y_train, X_test, y_test)``, float32 features standardised with the
    training statistics.
  """
  X, y = np.asarray(X), np.asarray(y)
  stream_lib.check_finite(X, name="split_scale")  # positions in the caller's X, before scaling
  if not 0 < test_frac < 1:
    raise ValueError(f"test_frac must lie in (0, 1), got {test_frac}")
  rows = np.random.default_rng([seed, 7]).permutation(len(X))
  n_test = int(round(test_frac * len(X)))
  te, tr = rows[:n_test], rows[n_test:]
  if max_test is not None:
    te = te[: int(max_test)]
  if max_train is not None:
    tr = tr[: int(max_train)]
  sc = datasets.Scaler.fit(X[tr])
  return sc.apply(X[tr]), y[tr].astype(np.int32), sc.apply(X[te]), y[te].astype(np.int32)


def _blocks(d, fracs, seed):
  fr = np.asarray(fracs, np.float64)
  fr = fr / fr.sum()
  sizes = np.floor(fr * d).astype(int)
  order = np.argsort(-(fr * d - sizes), kind="stable")
  sizes[order[: d - sizes.sum()]] += 1
  if np.any(sizes == 0):
    raise ValueError(f"d={d} is too small for feature blocks {tuple(fracs)} (sizes {sizes})")
  perm = np.random.default_rng([seed, 1]).permutation(d)
  return np.split(perm, np.cumsum(sizes)[:-1])


def make_stream(
  X_train, y_train, X_test, y_test, *, seed, n_classes, shots="one", fracs=(1, 1, 1),
  n_stages=3, lengths=None,
) -> stream_lib.Stream:  # fmt: skip
  """The evolving-feature stream over already split and scaled data.

  Args:
    X_train: ``[n, d]`` training rows in arrival order; y_train: ``[n]``.
    X_test: ``[m, d]``; y_test: ``[m]``.
    seed: feature-permutation seed.
    n_classes: number of classes.
    shots: "one" (T-stage ``[v; s]`` -> I-stage ``[s; a]``, ``fracs`` = v/s/a) or "multi"
      (``n_stages`` stages over ``n_stages + 1`` equal blocks).
    fracs: v/s/a fractions (one-shot).
    n_stages: stages (multi-shot, >= 3).
    lengths: instances per stage (default: equal parts of the training rows).

  Returns:
    A validated `Stream`; the test split has the last stage's features.
  """
  d = X_train.shape[1]
  if shots == "one":
    v, s, a = _blocks(d, fracs, seed)
    feats = [np.concatenate([v, s]), np.concatenate([s, a])]
  elif shots == "multi":
    if n_stages < 3:
      raise ValueError(f"multi-shot needs n_stages >= 3, got {n_stages}")
    B = _blocks(d, (1,) * (n_stages + 1), seed)
    feats = [np.concatenate([B[t], B[t + 1]]) for t in range(n_stages)]
  else:
    raise ValueError(f"shots must be 'one' or 'multi', got {shots!r}")
  n = len(X_train)
  if lengths is None:
    lengths = (n // len(feats),) * len(feats)
  if len(lengths) != len(feats) or sum(lengths) > n or min(lengths) < 1:
    raise ValueError(f"lengths {tuple(lengths)} do not fit {len(feats)} stages of {n} rows")
  ends = np.cumsum(lengths)
  stages = tuple(
    stream_lib.Stage(f, X_train[e - m : e][:, f], y_train[e - m : e])
    for f, m, e in zip(feats, lengths, ends, strict=True)
  )
  test = stream_lib.Stage(feats[-1], X_test[:, feats[-1]], y_test)
  out = stream_lib.Stream(stages, test, int(n_classes))
  stream_lib.validate_stream(out, d)
  return out


def validation_stream(stream: stream_lib.Stream, frac: float = 0.3) -> stream_lib.Stream:
  """Holds out the last ``frac`` of the last stage as the evaluation split (no test data).

  Args:
    stream: a training stream (its test split is dropped).
    frac: fraction of the last stage used for validation.

  Returns:
    A `Stream` whose ``test`` is the validation split.
  """
  last = stream.stages[-1]
  n_val = int(round(frac * len(last.y)))
  if not 0 < n_val < len(last.y):
    raise ValueError(f"validation fraction {frac} of {len(last.y)} rows leaves an empty split")
  keep = stream_lib.Stage(last.features, last.X[:-n_val], last.y[:-n_val])
  val = stream_lib.Stage(last.features, last.X[-n_val:], last.y[-n_val:])
  return stream_lib.Stream(stream.stages[:-1] + (keep,), val, stream.n_classes)


def scaled_stream(stream: stream_lib.Stream) -> stream_lib.Stream:
  """Divides every stage (and the test split) by ``√d_t``: the baselines' input scale."""
  sc = lambda st: st._replace(X=(st.X / math.sqrt(st.X.shape[1])).astype(np.float32))  # noqa: E731
  return stream_lib.Stream(tuple(sc(s) for s in stream.stages), sc(stream.test), stream.n_classes)


def run_eml(lrn: learner.Learner, stream, hp: learner.HParams, key, *, k: int = 5):
  """One pass of EML over ``stream``; evaluates with the final metric.

  Args:
    lrn: from `learner.make_learner` (cache it across seeds: it compiles per shape).
    stream: standardised `Stream` (EML scales by ``1/√d`` itself).
    hp: traced hyperparameters.
    key: PRNG key.
    k: neighbours for the test error.

  Returns:
    dict: ``knn_error``, ``online_error`` (last stage), ``mistakes`` (``[n_I]`` bool),
    ``sec_per_update`` (last stage, host wall time including any compilation), Sinkhorn
    ``ot_converged_frac``.
  """
  spec = lrn.spec
  plan = learner.stage_plan(stream)
  last = len(plan) - 1
  first = 0 if spec.use_tstage else last
  d, surv, _ = plan[first]
  state = learner.init_state(key, spec, d, surv if first < last else None)
  for t in range(first, last + 1):
    if t > first:
      d, surv, tr = plan[t]
      state = learner.advance(state, spec, tr, d, surv)
    st = stream.stages[t]
    t0 = time.perf_counter()
    state, m = learner.run_stage(lrn, state, st.X, st.y, hp)
    jax.block_until_ready(state.L)
    secs = time.perf_counter() - t0
  return _eml_result(lrn, state, stream, m, secs / len(stream.stages[-1].y), k)


def _eml_result(lrn, state, stream, m, sec_per_update: float, k: int) -> dict:
  """The result dict of one EML run: test error of ``state``, last stage's metrics ``m``."""
  I = stream.stages[-1]
  err = predict.knn_error(lrn, state, I.X, I.y, stream.test.X, stream.test.y, k=k)
  mist = np.asarray(m["mistake"])
  act = np.asarray(m["ot_active"])
  conv = float(np.mean(np.asarray(m["converged"])[act])) if act.any() else float("nan")
  return dict(
    knn_error=err,
    online_error=float(mist.mean()),
    mistakes=mist,
    sec_per_update=sec_per_update,
    ot_converged_frac=conv,
  )


def run_baseline(
  method: online.Method, runner, stream, hp: dict, key, *, k: int = 5, memory_mode="none",
  mem_size: int = 5,
):  # fmt: skip
  """One pass of a baseline over a scaled ``stream`` (see `scaled_stream`).

  ``memory_mode``: the inherited memory of a method with a ``transfer``; ``mem_size``:
  memory slots per class (`online.begin_stage`).

  Returns:
    dict as `run_eml` (``ot_converged_frac`` NaN); OPID also gives ``clf_error``, its
    own linear classifier's test error.
  """
  t0 = time.perf_counter()
  state, ms = online.run_stream(
    method, stream, hp, key, runner=runner, memory_mode=memory_mode, mem_size=mem_size
  )
  jax.block_until_ready(state.metric)
  secs = time.perf_counter() - t0
  n_upd = sum(len(s.y) for s in stream.stages[len(stream.stages) - len(ms) :])
  return _baseline_result(method, state, stream, np.asarray(ms[-1]["mistake"]), secs / n_upd, k)


def _baseline_result(method, state, stream, mistakes, sec_per_update: float, k: int) -> dict:
  """The result dict of one baseline run (OPID-style methods add ``clf_error``)."""
  I, C = stream.stages[-1], stream.n_classes
  err = online.knn_error(
    method, state.metric, I.X, I.y, stream.test.X, stream.test.y, n_classes=C, k=k
  )
  out: dict[str, Any] = dict(
    knn_error=err,
    online_error=float(mistakes.mean()),
    mistakes=mistakes,
    sec_per_update=sec_per_update,
    ot_converged_frac=float("nan"),
  )
  if method.predict is not None:
    pred = jax.vmap(functools.partial(method.predict, state.metric))(stream.test.X)
    out["clf_error"] = float(np.mean(np.asarray(pred) != stream.test.y))
  return out


@functools.lru_cache(maxsize=64)
def _runs_scan(scan: Callable, mesh: Mesh) -> Callable:
  """``scan(state, X, y, hp)`` over stacked runs: jitted vmap, run axis split over ``"data"``.

  Outputs come back replicated, so the host can unstack every run. Cached per (scan,
  mesh): seeds and grid points with the same static settings reuse the compilation.
  """
  batched = jax.vmap(scan, in_axes=(0, 0, 0, None))
  return parallel.data_parallel(mesh, batched, batch_argnums=(0, 1, 2))


def clear_run_caches() -> None:
  """Forgets the cached batched scans (see `run_lib.release_compiled`)."""
  _runs_scan.cache_clear()


def _check_runs(streams, keys) -> int:
  n = len(streams)
  if n == 0 or len(keys) != n:
    raise ValueError(f"need one key per stream and at least one run; got {n} streams, "
                     f"{len(keys)} keys")  # fmt: skip
  shapes = [[st.X.shape for st in s.stages] for s in streams]
  for i, sh in enumerate(shapes):
    if sh != shapes[0]:
      raise ValueError(f"stream {i} has stage shapes {sh}, stream 0 {shapes[0]}: cannot batch")
  return n


def _stage_inputs(streams, t: int, n_classes: int, multiple: int):
  """Validated stage ``t`` of every run, stacked: ``X [R', n_t, d_t]``, ``y [R', n_t]``."""
  Xs, ys = [], []
  for r, s in enumerate(streams):
    st = s.stages[t]
    stream_lib.validate_xy(st.X, st.y, n_classes, name=f"run {r} stage {t}")
    Xs.append(jnp.asarray(st.X, jnp.float32))
    ys.append(jnp.asarray(st.y, jnp.int32))
  return parallel.stack_trees(Xs, multiple), parallel.stack_trees(ys, multiple)


def eml_runs_pass(lrn: learner.Learner, streams, hp: learner.HParams, keys, *, mesh: Mesh):
  """One pass of EML over ``R`` streams of equal shapes at once (one per seed).

  Each stage is one jitted `jax.vmap` of ``lrn.scan`` over the stacked runs, the run axis
  split over ``mesh``'s ``"data"`` axis (padded to a multiple of ``mesh.size`` by
  repeating the last run; the padding is dropped); ``hp`` is shared (replicated).
  `learner.init_state` and `learner.advance` run per run on the host between stages.

  Args:
    lrn: from `learner.make_learner`.
    streams: ``R`` standardised `Stream` s with identical stage shapes.
    hp: traced hyperparameters.
    keys: ``R`` PRNG keys.
    mesh: 1-D mesh from `parallel.make_mesh`.

  Returns:
    ``(states, metrics, secs)``: the ``R`` final `EMLState` s, the last stage's metrics
    (numpy, ``[R, n_I]`` each) and that stage's batched wall time (compilation excluded).
  """
  streams, keys = list(streams), list(keys)
  n = _check_runs(streams, keys)
  spec = lrn.spec
  plans = [learner.stage_plan(s) for s in streams]
  last = len(plans[0]) - 1
  first = 0 if spec.use_tstage else last
  states = []
  for plan, key in zip(plans, keys, strict=True):
    d, surv, _ = plan[first]
    states.append(learner.init_state(key, spec, d, surv if first < last else None))
  scan = _runs_scan(lrn.scan, mesh)
  for t in range(first, last + 1):
    if t > first:
      states = [
        learner.advance(s, spec, p[t][2], p[t][0], p[t][1])
        for s, p in zip(states, plans, strict=True)
      ]
    X, y = _stage_inputs(streams, t, spec.n_classes, mesh.size)  # [R', n_t, d_t], [R', n_t]
    S = parallel.stack_trees(states, mesh.size)
    scan.lower(S, X, y, hp).compile()  # fills jit's cache: compilation stays off the clock
    t0 = time.perf_counter()
    out, m = scan(S, X, y, hp)
    jax.block_until_ready(out.L)
    secs = time.perf_counter() - t0
    states = parallel.unstack_tree(out, n)
  return states, {name: np.asarray(v)[:n] for name, v in jax.device_get(m).items()}, secs


def run_eml_runs(lrn: learner.Learner, streams, hp: learner.HParams, keys, *, mesh: Mesh, k=5):
  """`run_eml` over ``R`` streams of equal shapes at once (one per seed; `eml_runs_pass`).

  Args: as `eml_runs_pass`, plus ``k``, the neighbours of the test error (computed per
  run).

  Returns:
    One dict per run, as `run_eml`; ``sec_per_update`` is the batched last stage's wall
    time divided by (its updates per run × ``R``), compilation excluded (every run reports
    the same steady-state time; `run_eml`'s first call includes compilation).
  """
  states, m, secs = eml_runs_pass(lrn, streams, hp, keys, mesh=mesh)
  per_update = secs / (m["mistake"].shape[1] * len(states))
  return [
    _eml_result(lrn, state, s, {name: v[r] for name, v in m.items()}, per_update, k)
    for r, (s, state) in enumerate(zip(streams, states, strict=True))
  ]


def baseline_runs_pass(
  method: online.Method, runner, streams, hp: dict, keys, *, mesh: Mesh, memory_mode="none",
  mem_size: int = 5,
):  # fmt: skip
  """One pass of a baseline over ``R`` scaled streams of equal shapes at once.

  Each learned stage is one jitted `jax.vmap` of ``runner`` over the stacked runs, split
  over ``mesh``'s ``"data"`` axis as in `eml_runs_pass`; `online.begin_stage` (init or
  transfer) runs per run on the host between stages.

  Args:
    method: the baseline.
    runner: its cached `online.make_runner`.
    streams: ``R`` scaled `Stream` s (see `scaled_stream`) with identical stage shapes.
    hp: hyperparameters (merged over ``method.hparams``; replicated).
    keys: ``R`` PRNG keys.
    mesh: 1-D mesh from `parallel.make_mesh`.
    memory_mode: the inherited memory (`online.begin_stage`).
    mem_size: memory slots per class.

  Returns:
    ``(states, mistakes, secs)``: the ``R`` final `online.OnlineState` s, the last
    stage's online mistakes (numpy ``[R, n_I]`` bool) and the wall time of the batched
    scans of all learned stages (host transitions and compilation excluded).
  """
  streams, keys = list(streams), list(keys)
  n = _check_runs(streams, keys)
  hp = online.resolve_hparams(method, hp)
  n_stages, C = len(streams[0].stages), streams[0].n_classes
  scan = _runs_scan(runner, mesh)
  states, secs = [None] * n, 0.0
  for t in range(online.first_learned_stage(method, n_stages), n_stages):
    begun = [
      online.begin_stage(
        method, s.stages, t, st, key, n_classes=C, mem_size=mem_size, memory_mode=memory_mode
      )
      for s, st, key in zip(streams, states, keys, strict=True)
    ]
    keys, states = [b[0] for b in begun], [b[1] for b in begun]
    X, y = _stage_inputs(streams, t, C, mesh.size)  # [R', n_t, d_t], [R', n_t]
    S = parallel.stack_trees(states, mesh.size)
    scan.lower(S, X, y, hp).compile()  # fills jit's cache: compilation stays off the clock
    t0 = time.perf_counter()
    out, m = scan(S, X, y, hp)
    jax.block_until_ready(out)
    secs += time.perf_counter() - t0
    states = parallel.unstack_tree(out, n)
  return states, np.asarray(jax.device_get(m["mistake"]))[:n], secs


def run_baseline_runs(
  method: online.Method, runner, streams, hp: dict, keys, *, mesh: Mesh, k=5, memory_mode="none",
  mem_size: int = 5,
):  # fmt: skip
  """`run_baseline` over ``R`` scaled streams at once (one per seed; `baseline_runs_pass`).

  Args: as `baseline_runs_pass`, plus ``k``, the neighbours of the test error (computed
  per run), ``memory_mode`` and ``mem_size``.

  Returns:
    One dict per run, as `run_baseline`; ``sec_per_update`` is the batched scans' wall
    time (all learned stages; host transitions and compilation excluded) divided by
    (updates per run × ``R``).
  """
  streams = list(streams)
  states, mistakes, secs = baseline_runs_pass(
    method, runner, streams, hp, keys, mesh=mesh, memory_mode=memory_mode, mem_size=mem_size
  )
  first = online.first_learned_stage(method, len(streams[0].stages))
  n_upd = sum(len(st.y) for st in streams[0].stages[first:])
  per_update = secs / (n_upd * len(states))
  return [
    _baseline_result(method, state, s, mistakes[r], per_update, k)
    for r, (s, state) in enumerate(zip(streams, states, strict=True))
  ]


class Variant(NamedTuple):
  """A method in the two call forms of `evaluate`.

  Attributes:
    one: ``fn(stream, key) -> result`` (one run; see `run_eml`, `run_baseline`).
    runs: ``fn(streams, keys, mesh) -> [result per run]`` (all seeds at once; see
      `run_eml_runs`, `run_baseline_runs`).
  """

  one: Callable
  runs: Callable

  def __call__(self, stream, key):
    return self.one(stream, key)


def seed_stream(
  X, y, n_classes: int, seed: int, *, test_frac=0.3, max_train=None, max_test=None, shots="one",
  fracs=(1, 1, 1), n_stages=3, validation_frac=None,
) -> stream_lib.Stream:  # fmt: skip
  """The stream of one seed: `split_scale`, `make_stream`, optionally `validation_stream`."""
  Xtr, ytr, Xte, yte = split_scale(
    X, y, seed=seed, test_frac=test_frac, max_train=max_train, max_test=max_test
  )
  st = make_stream(
    Xtr, ytr, Xte, yte, seed=seed, n_classes=n_classes, shots=shots, fracs=fracs,
    n_stages=n_stages,
  )  # fmt: skip
  return validation_stream(st, validation_frac) if validation_frac else st


def evaluate(
  X, y, n_classes: int, methods: dict, *, seeds, test_frac=0.3, max_train=None, max_test=None,
  shots="one", fracs=(1, 1, 1), n_stages=3, validation_frac=None, progress=None, mesh=None,
) -> list[dict]:  # fmt: skip
  """Runs every method on the streams of every seed of one data set.

  Args:
    X: ``[n, d]`` raw features; y: ``[n]`` labels.
    n_classes: number of classes.
    methods: name -> ``fn(stream, key) -> result dict`` (see `run_eml`, `run_baseline`),
      or a `Variant` (which also runs all seeds at once).
    seeds: stream / learner seeds.
    test_frac, max_train, max_test: see `split_scale`.
    shots, fracs, n_stages: see `make_stream`.
    validation_frac: if set, evaluate on `validation_stream` (the test split is unused).
    progress: optional ``fn()`` called after each (seed, method) run (a tqdm update).
    mesh: None runs seed by seed. A mesh builds every seed's stream first, then runs
      each `Variant` over all seeds at once, split over the mesh (``sec_per_update`` is
      then the batched time per update and run, without compilation); plain functions
      still go seed by seed.

  Returns:
    One row per (seed, method), seed-major: ``seed``, ``method`` and the result fields.
  """
  kw = dict(
    test_frac=test_frac, max_train=max_train, max_test=max_test, shots=shots, fracs=fracs,
    n_stages=n_stages, validation_frac=validation_frac,
  )  # fmt: skip
  if mesh is None:
    rows = []
    for seed in seeds:
      st = seed_stream(X, y, n_classes, seed, **kw)
      for name, fn in methods.items():
        rows.append(dict(seed=int(seed), method=name, **fn(st, jax.random.key(seed))))
        if progress is not None:
          progress()
    return rows
  streams = [seed_stream(X, y, n_classes, seed, **kw) for seed in seeds]
  keys = [jax.random.key(seed) for seed in seeds]
  res = {}
  for name, fn in methods.items():
    if isinstance(fn, Variant):
      res[name] = fn.runs(streams, keys, mesh)
    else:
      res[name] = [fn(st, key) for st, key in zip(streams, keys, strict=True)]
    for _ in seeds:
      if progress is not None:
        progress()
  return [
    dict(seed=int(seed), method=name, **res[name][r])
    for r, seed in enumerate(seeds)
    for name in methods
  ]
