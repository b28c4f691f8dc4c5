"""The one boundary module: unpacks EML ConfigDicts into typed kernel args.

Nothing below this module sees a ConfigDict. `train_and_evaluate` runs one seed of the
spec §3 protocol on a `configs/eml.py` stream (synthetic or a committed real data set);
`run_benchmark` / `run_validation` drive the real-data benchmark of
`configs/eml_benchmark.py`.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from typing import Any

import jax
import numpy as np

import parallel_jax as parallel
from eml_jax import baselines, datasets, distance, learner, predict, protocol, report, synthetic
from eml_jax import stream as stream_lib


def hparams_from_config(c) -> learner.HParams:
  """Traced hyperparameters from the config's learner fields."""
  return learner.HParams.create(
    eta=c.eta,
    margin=c.margin,
    mu=c.mu,
    gamma=c.gamma,
    nu=c.nu,
    rho=c.rho,
    eps_scale=c.eps_scale,
    lam_21=c.lam_21,
    lam_nuc=c.lam_nuc,
    hist_temp=c.hist_temp,
    mem_ridge=c.mem_ridge,
  )


def solver_from_config(c):
  """The Sinkhorn solver, built once."""
  s = c.sinkhorn
  return distance.make_sinkhorn(
    threshold=float(s.threshold),
    max_iterations=int(s.max_iterations),
    inner_iterations=int(s.inner_iterations),
    lse_mode=bool(s.lse_mode),
    momentum=None if s.momentum is None else float(s.momentum),
    norm_error=int(s.norm_error),
  )


def spec_from_config(c, n_classes: int, d_max: int) -> learner.LearnerSpec:
  """Static settings; the rank defaults to ``round(rank_frac · d_max)``."""
  rank = c.rank if c.rank is not None else max(1, int(round(c.rank_frac * d_max)))
  return learner.LearnerSpec(
    n_classes=int(n_classes),
    rank=int(rank),
    reading=str(c.reading),
    mem_size=int(c.mem_size),
    n_neg=int(c.n_neg),
    res_size=int(c.res_size),
    knn_k=int(c.eval.k),
    standardize=bool(c.standardize),
    use_tstage=bool(c.use_tstage),
    use_inherit=bool(c.use_inherit),
    inherit_from=str(c.inherit_from),
    inherit_basis=str(c.inherit_basis),
    inherit_scale=str(c.inherit_scale),
    ot_features=str(c.ot_features),
    inherit_memory=str(c.inherit_memory),
  )


def load_data(c, seed: int):
  """``(X, y, n_classes)`` for the configured dataset.

  ``synthetic`` is generated per seed; the real presets are read from the committed,
  checksum-verified files (`eml_jax.datasets.load`; ``fashion_mnist``: the committed
  test split, flattened to ``[n, 784]`` in ``[0, 1]``), then the first ``c.data.n``
  rows after a seeded shuffle. Raises `ValueError` when the loaded shape differs from the
  preset's ``d`` / ``n_classes``.
  """
  if c.dataset == "synthetic":
    X, y = synthetic.make_classification(c.data.n, c.data.d, c.data.n_classes, seed=seed)
    return X, y, int(c.data.n_classes)
  if c.dataset == "fashion_mnist":
    from ztprune_jax.data import fashion_mnist  # noqa: PLC0415 (only this preset needs it)

    images, y = fashion_mnist.load_fashion_mnist("test")
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
  else:
    X, y = datasets.load(c.dataset)
  n_classes = int(y.max()) + 1
  if X.shape[1] != int(c.data.d) or n_classes != int(c.data.n_classes):
    raise ValueError(
      f"dataset {c.dataset!r} has d={X.shape[1]}, {n_classes} classes; the preset says "
      f"d={c.data.d}, {c.data.n_classes} classes"
    )
  rows = np.random.default_rng([seed, 11]).permutation(len(X))[: int(c.data.n)]
  return X[rows].astype(np.float32), y[rows].astype(np.int32), n_classes


def stream_from_config(c, seed: int) -> stream_lib.Stream:
  """The evolving-feature stream of one seed."""
  X, y, n_classes = load_data(c, seed)
  s = c.stream
  lengths = None if s.lengths is None else tuple(int(v) for v in s.lengths)
  if s.shots == "one":
    return stream_lib.make_one_shot(
      X, y, seed=seed, fracs=tuple(s.fracs), lengths=lengths, test_frac=s.test_frac,
      n_classes=n_classes,
    )  # fmt: skip
  return stream_lib.make_multi_shot(
    X, y, n_stages=int(s.n_stages), seed=seed, fracs=s.multi_fracs, lengths=lengths,
    test_frac=s.test_frac, n_classes=n_classes,
  )  # fmt: skip


def train_and_evaluate(c, seed: int = 0) -> dict[str, Any]:
  """One seed: train on the stream, learning curve over the last (I-) stage.

  Args:
    c: a `configs/eml.py` ConfigDict.
    seed: data, stream and learner seed.

  Returns:
    A dict with ``curve`` (``{n_seen: test error}`` at ``c.eval.at`` and the end, gallery
    = last-stage instances seen so far), ``final_error``, ``euclidean_error``,
    ``online_mistake_rate`` (over the last stage), ``ms_per_update`` (last stage, after
    compilation) and Sinkhorn diagnostics.
  """
  st = stream_from_config(c, seed)
  spec = spec_from_config(c, st.n_classes, max(len(s.features) for s in st.stages))
  lrn = learner.make_learner(spec, solver_from_config(c))
  hp = hparams_from_config(c)
  key = jax.random.key(seed)
  plan = learner.stage_plan(st)
  last = len(st.stages) - 1
  first = 0 if spec.use_tstage else last
  d, surv, _ = plan[first]
  state = learner.init_state(key, spec, d, surv if first < last else None)
  for t in range(first, last):
    state, _ = learner.run_stage(lrn, state, st.stages[t].X, st.stages[t].y, hp)
    d, surv, tr = plan[t + 1]
    state = learner.advance(state, spec, tr, d, surv)
  X, y = st.stages[last].X, st.stages[last].y
  ends = sorted({int(a) for a in c.eval.at if 0 < a < len(y)} | {len(y)})
  curve, metrics, pos, secs = {}, [], 0, 0.0
  ek = dict(k=int(c.eval.k), distance_name=str(c.eval.distance), hp=hp, chunk=c.eval.chunk)
  for end in ends:
    learner.run_stage(lrn, state, X[pos:end], y[pos:end], hp)  # compile outside the clock
    t0 = time.perf_counter()
    state, m = learner.run_stage(lrn, state, X[pos:end], y[pos:end], hp)
    jax.block_until_ready(state.L)
    secs += time.perf_counter() - t0
    metrics.append(m)
    pos = end
    curve[end] = predict.knn_error(lrn, state, X[:end], y[:end], st.test.X, st.test.y, **ek)
  m = {k: np.concatenate([np.asarray(mm[k]) for mm in metrics]) for k in metrics[0]}
  euclid = learner.init_state(key, spec._replace(rank=state.d), state.d)
  euclid = euclid.replace(st_n=state.st_n, st_mean=state.st_mean, st_m2=state.st_m2)
  euclid = euclid.replace(L=np.eye(state.d, dtype=np.float32))
  return dict(
    curve=curve,
    final_error=curve[len(y)],
    euclidean_error=predict.knn_error(
      lrn, euclid, X, y, st.test.X, st.test.y, **{**ek, "distance_name": "mahalanobis"}
    ),
    online_mistake_rate=float(np.mean(m["mistake"])),
    ms_per_update=1e3 * secs / len(y),
    ot_active_frac=float(np.mean(m["ot_active"])),
    ot_converged_frac=float(np.mean(m["converged"][m["ot_active"]]))
    if m["ot_active"].any()
    else float("nan"),
    ot_mean_iters=float(np.mean(m["n_iters"][m["ot_active"]])) if m["ot_active"].any() else 0.0,
  )


# --- Real-data benchmark (issue 7): configs/eml_benchmark.py ----------------------------

# Jitted learners / baseline scans, cached by their static settings across seeds and grids.
_LEARNERS: dict = {}
_RUNNERS: dict = {}


def release_compiled() -> None:
  """Drops the cached learners / runners and JAX's compilation caches.

  Called after each data set: its shapes are not reused, and keeping every data set's
  executables alive exhausts the process's memory maps in long searches (XLA:CPU
  failed with "LLVM compilation error: Cannot allocate memory" after four data sets).
  """
  _LEARNERS.clear()
  _RUNNERS.clear()
  protocol.clear_run_caches()
  jax.clear_caches()


def eml_variant(e, overrides, n_classes: int, d_max: int, k: int = 5):
  """EML with the ``e`` fields plus ``overrides``, as a `protocol.Variant`.

  Call it as ``fn(stream, key) -> result`` (one run) or ``fn.runs(streams, keys, mesh)``
  (all seeds at once, `protocol.run_eml_runs`).

  Args:
    e: the benchmark config's ``eml`` ConfigDict.
    overrides: dict of field overrides (an ablation).
    n_classes: classes of the data set.
    d_max: largest stage dimension (``rank = round(rank_frac · d_max)``).
    k: neighbours of the test error.
  """
  f = {**e.to_dict(), **dict(overrides)}
  spec = learner.LearnerSpec(
    n_classes=int(n_classes),
    rank=max(1, int(round(f["rank_frac"] * d_max))),
    reading=str(f["reading"]),
    mem_size=int(f["mem_size"]),
    n_neg=int(f["n_neg"]),
    res_size=int(f["res_size"]),
    knn_k=int(k),
    standardize=bool(f["standardize"]),
    use_tstage=bool(f["use_tstage"]),
    use_inherit=bool(f["use_inherit"]),
    inherit_from=str(f["inherit_from"]),
    inherit_basis=str(f["inherit_basis"]),
    inherit_scale=str(f["inherit_scale"]),
    ot_features=str(f["ot_features"]),
    inherit_memory=str(f["inherit_memory"]),
  )
  sk = f["sinkhorn"]
  sk_args = (
    float(sk["threshold"]), int(sk["max_iterations"]), int(sk["inner_iterations"]),
    bool(sk["lse_mode"]),
  )  # fmt: skip
  if (spec, sk_args) not in _LEARNERS:  # same static settings: reuse the compiled scans
    _LEARNERS[(spec, sk_args)] = learner.make_learner(spec, distance.make_sinkhorn(*sk_args))
  lrn = _LEARNERS[(spec, sk_args)]
  names = ("eta", "margin", "mu", "gamma", "nu", "rho", "eps_scale", "lam_21", "lam_nuc",
           "mem_ridge")  # fmt: skip
  hp = learner.HParams.create(**{n: float(f[n]) for n in names}, hist_temp=f["hist_temp"])
  return protocol.Variant(
    one=lambda stream, key: protocol.run_eml(lrn, stream, hp, key, k=k),
    runs=lambda streams, keys, mesh: protocol.run_eml_runs(lrn, streams, hp, keys, mesh=mesh, k=k),
  )


def baseline_variant(
  name: str, hp: dict, k: int = 5, memory_mode="none", mem_ridge=1.0, mem_size: int = 5
):
  """A baseline as a `protocol.Variant` (its jitted scan is cached per name).

  Call it as ``fn(stream, key) -> result`` or ``fn.runs(streams, keys, mesh)`` (all seeds
  at once, `protocol.run_baseline_runs`); streams are scaled here (`scaled_stream`).
  ``memory_mode`` / ``mem_ridge``: the inherited memory (`eml_jax.impute`) of a method
  with a ``transfer`` (EML's setting, so both start the I-stage with the same memory);
  ignored by the others, which learn the last stage only. ``mem_size``: memory slots
  per class of the online prediction (EML's ``mem_size`` in the benchmark, for every
  baseline).
  """
  method = baselines.get_baseline(name)
  if name not in _RUNNERS:
    _RUNNERS[name] = baselines.make_runner(method, k=k)
  runner = _RUNNERS[name]
  mode = str(memory_mode) if method.transfer is not None else "none"
  hp = {**dict(hp), "mem_ridge": float(mem_ridge)} if mode == "ridge" else dict(hp)
  kw = dict(k=k, memory_mode=mode, mem_size=int(mem_size))
  return protocol.Variant(
    one=lambda stream, key: protocol.run_baseline(
      method, runner, protocol.scaled_stream(stream), dict(hp), key, **kw
    ),
    runs=lambda streams, keys, mesh: protocol.run_baseline_runs(
      method,
      runner,
      [protocol.scaled_stream(s) for s in streams],
      dict(hp),
      keys,
      mesh=mesh,
      **kw,
    ),  # fmt: skip
  )


def _baseline(c, name: str, extra=None, eml_fields=None):
  """`baseline_variant` with the config's hyperparameters and EML's memory (inherited memory
  and slots per class)."""
  e = {**c.eml.to_dict(), **dict(eml_fields or {})}
  hp = {**_as_dict(c.baseline_hp.get(name, {})), **dict(extra or {})}
  return baseline_variant(name, hp, c.k, e["inherit_memory"], e["mem_ridge"], e["mem_size"])


def load_benchmark_data(c, name: str):
  """``(X, y, n_classes)`` of a real data set (MNIST pooled by ``c.mnist_pool``)."""
  X, y = datasets.load(name, c.data_dir)
  if name == "mnist" and c.mnist_pool > 1:
    X = datasets.pool_images(X, 28, int(c.mnist_pool))
  return X, y, int(y.max()) + 1


def _eval_kw(c, shots):
  return dict(
    test_frac=float(c.test_frac), max_train=c.max_train, max_test=c.max_test, shots=shots,
    fracs=tuple(c.fracs), n_stages=int(c.multi.n_stages),
  )  # fmt: skip


def seed_mesh(c, mesh=None):
  """The mesh the seeds of each method run over: None unless ``c.parallel_seeds``.

  Args:
    c: a `configs/eml_benchmark.py` ConfigDict.
    mesh: the mesh to use (default: `parallel.make_mesh()`, every device).

  Raises:
    ValueError: a mesh is given but ``c.parallel_seeds`` is False.
  """
  if not c.parallel_seeds:
    if mesh is not None:
      raise ValueError("a mesh was given but c.parallel_seeds is False")
    return None
  return parallel.make_mesh() if mesh is None else mesh


def run_benchmark(c, progress_bar=None, mesh=None) -> list[dict]:
  """Every data set x seed x method (EML, ablations, baselines), one- and multi-shot.

  Args:
    c: a `configs/eml_benchmark.py` ConfigDict.
    progress_bar: optional tqdm-like object (``update()``).
    mesh: with ``c.parallel_seeds``, the mesh the seeds run over at once (`seed_mesh`).

  Returns:
    Rows with ``dataset``, ``setting`` ("one"/"multi"), ``seed``, ``method`` and results.
  """
  rows = []
  upd = None if progress_bar is None else (lambda: progress_bar.update(1))
  mesh = seed_mesh(c, mesh)
  for name in c.datasets:
    X, y, C = load_benchmark_data(c, name)
    for shots in ("one", "multi"):
      if shots == "multi" and name not in c.multi.datasets:
        continue
      stream0 = _first_stream(c, X, y, C, shots)
      d_max = max(len(s.features) for s in stream0.stages)
      methods = {"eml": eml_variant(c.eml, {}, C, d_max, c.k)}
      for ab, ov in c.ablations.items():
        methods[ab] = eml_variant(c.eml, ov, C, d_max, c.k)
      for b in c.baselines:
        methods[b] = _baseline(c, b)
      if shots == "multi":
        methods = {m: f for m, f in methods.items() if m in c.multi.methods}
      out = protocol.evaluate(
        X, y, C, methods, seeds=c.seeds, progress=upd, mesh=mesh, **_eval_kw(c, shots)
      )
      rows += [dict(dataset=name, setting=shots, **r) for r in out]
    release_compiled()
  return rows


def _first_stream(c, X, y, C, shots):
  Xtr, ytr, Xte, yte = protocol.split_scale(
    X, y, seed=0, test_frac=c.test_frac, max_train=c.max_train, max_test=c.max_test
  )
  return protocol.make_stream(
    Xtr, ytr, Xte, yte, seed=0, n_classes=C, shots=shots, fracs=tuple(c.fracs),
    n_stages=int(c.multi.n_stages),
  )  # fmt: skip


def _grid(grid: dict):
  keys = sorted(grid)
  for vals in itertools.product(*(grid[k] for k in keys)):
    yield dict(zip(keys, vals, strict=True))


def _as_dict(g) -> dict:
  return g.to_dict() if hasattr(g, "to_dict") else dict(g)


def _validation_rows(c, make_methods, upd, mesh) -> list[dict]:
  """Runs ``make_methods(C, d_max) -> (methods, points)`` on every data set's validation split."""
  v, rows = c.validation, []
  for name in c.datasets:
    X, y, C = load_benchmark_data(c, name)
    d_max = max(len(s.features) for s in _first_stream(c, X, y, C, "one").stages)
    methods, points = make_methods(C, d_max)
    out = protocol.evaluate(
      X, y, C, methods, seeds=v.seeds, validation_frac=float(v.frac), progress=upd, mesh=mesh,
      **_eval_kw(c, "one"),
    )  # fmt: skip
    for r in out:
      m, p = points[r["method"]]
      rows.append({**r, "dataset": name, "method": m, "params": json.dumps(p, sort_keys=True)})
    release_compiled()
  return rows


def score_of(row: dict, metric: str) -> float:
  """A run's validation score: ``knn_error``, ``online_error`` or ``early<n>_online_error``
  (online mistake rate over the first ``n`` instances of the last stage)."""
  if metric.startswith("early"):
    return report.early_error(row["mistakes"], int(metric[5:].split("_")[0]))
  return float(row[metric])


def choose(rows: list[dict], metric: str = "knn_error") -> dict:
  """Per method, the params with the lowest validation ``metric`` averaged over data sets.

  Each data set counts once (its mean over seeds), whatever its size.

  Returns:
    ``{method: {"params", "mean_val_error", "metric", "grid": {params json: mean}}}``.
  """
  chosen = {}
  for m in sorted({r["method"] for r in rows}):
    per = {}
    for r in rows:
      if r["method"] == m:
        per.setdefault(r["params"], {}).setdefault(r["dataset"], []).append(score_of(r, metric))
    score = {p: float(np.mean([np.mean(e) for e in ds.values()])) for p, ds in per.items()}
    best = min(score, key=score.get)
    chosen[m] = dict(params=json.loads(best), mean_val_error=score[best], metric=metric, grid=score)
  return chosen


def _stage_methods(c, stage: int, grid: dict, base: dict, C: int, d_max: int):
  """EML points of one search stage (plus every baseline grid in the last stage, with the
  inherited memory chosen for EML in the earlier stages)."""
  methods, points = {}, {}
  for p in _grid(grid):
    full = {**base, **p}
    key = f"eml stage{stage} " + json.dumps(full, sort_keys=True)
    methods[key], points[key] = eml_variant(c.eml, full, C, d_max, c.k), ("eml", full)
  last = stage == len(c.validation.eml_grids) - 1
  for b, g in c.validation.baseline_grid.items() if last else ():
    for p in _grid(_as_dict(g)):
      key = f"{b} " + json.dumps(p, sort_keys=True)
      methods[key], points[key] = _baseline(c, b, p, base), (b, p)
  return methods, points


def run_validation(c, progress_bar=None, mesh=None) -> tuple[list[dict], dict]:
  """Staged grid search on validation splits of the training stream (never the test split).

  EML's grids ``c.validation.eml_grids`` are searched in stages: every point of stage i
  sits on top of the choice of stages < i (a coordinate-wise search; the points of one
  stage form a full product grid). Stage i scores by ``c.validation.eml_scores[i]``
  (`score_of`). Baselines have one grid each, searched with the last stage (the
  transferring ones with the inherited memory chosen before it) and scored by the
  validation 5-NN error. The choice is the point with the lowest score averaged over data
  sets (each data set's mean over `validation.seeds`).

  With ``c.parallel_seeds`` the validation seeds of each grid point run at once over
  ``mesh`` (`seed_mesh`).

  Returns:
    ``(rows, chosen)``: one row per data set x seed x (method, grid point), with its
    ``stage``; ``chosen`` maps method -> ``{"params", "mean_val_error", "grid"}`` (EML's
    params accumulate over stages and its ``"stages"`` lists each stage's choice).
  """
  rows = []
  upd = None if progress_bar is None else (lambda: progress_bar.update(1))
  mesh = seed_mesh(c, mesh)
  v = c.validation
  base, stages, eml_grid = {}, [], {}
  for i, grid in enumerate(v.eml_grids):
    make = functools.partial(_stage_methods, c, i, _as_dict(grid), dict(base))
    stage_rows = [{**r, "stage": i} for r in _validation_rows(c, make, upd, mesh)]
    rows += stage_rows
    metric = str(v.eml_scores[i]) if i < len(v.eml_scores) else "knn_error"
    ch = choose([r for r in stage_rows if r["method"] == "eml"], metric)["eml"]
    base = ch["params"]
    stages.append(ch)
    eml_grid.update(ch["grid"])
  chosen = choose([r for r in rows if r["method"] != "eml"])
  chosen["eml"] = dict(
    params=base, mean_val_error=stages[-1]["mean_val_error"], grid=eml_grid,
    stages=[dict(params=s["params"], mean_val_error=s["mean_val_error"], metric=s["metric"])
            for s in stages],
  )  # fmt: skip
  return rows, chosen
