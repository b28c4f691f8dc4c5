"""The one boundary module: unpacks a `configs/eml.py` ConfigDict into typed kernel args.

Nothing below this module sees a ConfigDict. `train_and_evaluate` runs one seed of the
spec §3 protocol on the configured stream (synthetic data so far).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from eml_jax import distance, learner, predict, synthetic
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
  )


def load_data(c, seed: int):
  """``(X, y, n_classes)`` for the configured dataset (only ``synthetic`` so far)."""
  if c.dataset != "synthetic":
    raise ValueError(
      f"dataset {c.dataset!r} has no loader yet (real datasets are a later issue); "
      "use dataset=synthetic"
    )
  X, y = synthetic.make_classification(c.data.n, c.data.d, c.data.n_classes, seed=seed)
  return X, y, int(c.data.n_classes)


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
