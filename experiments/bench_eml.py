"""Benchmark EML: time per online update, and our Sinkhorn batch vs POT, in one run.

1. Per-update time: a one-shot synthetic stream whose stages both have ``d`` features
   (``v``, ``s``, ``a`` of ``d/2`` each), rank ``k`` (`bench.rank`), reading B with the
   OT term on. Each stage is one jitted `lax.scan`; compilation is excluded (a warm-up
   scan of the same length), medians over `bench.repeats`. Printed per stage and for the
   whole stream (total time / total updates).
2. OT: the same batch of feature-bin smoothed-Wasserstein problems (reading A, ``d × d``
   ground cost from a random ``L``, softmax histograms, ε = 0.05·mean cost) solved by our
   jitted `feature_ot_batch` (ott-jax Sinkhorn) and by a loop of POT's ``ot.sinkhorn2``; both
   stop at an ℓ2 marginal error of `bench.ot_threshold`, checked every 10 iterations.
   Three settings of ours are timed (one vmap; ``lax.map``; ``lax.map`` plus ott's
   momentum); the headline ratio is the last. Our ``reg_ot_cost`` is checked against the
   same quantity from POT's log-domain plan; the timings alternate (medians).

Command: `python -m experiments.bench_eml --config=configs/eml.py`.
Last line: `ms_per_update_d64=<x> speedup_over_pot=<y>` (``x``: whole stream at d = 64,
or the first `bench.dims` entry in `runlocal`).
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

import eml_jax as eml
from eml_jax import run_lib, synthetic
from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", "configs/eml.py", "EML config.")


def _median_time(fn, repeats):
  ts = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t0)
  return float(np.median(ts))


def bench_updates(c, d, seed=0):
  """Returns ``(ms per update T-stage, I-stage, whole stream, Sinkhorn stats)``."""
  b = c.bench
  n_stage = int(b.n_updates)
  X, y = synthetic.make_classification(2 * n_stage + 10, d + d // 2, b.n_classes, seed=seed)
  h = d // 2
  perm = np.random.default_rng(seed).permutation(d + h)
  stream = eml.one_shot_from_indices(
    X, y, perm[:h], perm[h:d], perm[d:], (n_stage, n_stage), seed=seed, n_classes=b.n_classes
  )
  spec = run_lib.spec_from_config(c, b.n_classes, d)._replace(rank=int(b.rank))
  lrn = eml.make_learner(spec, run_lib.solver_from_config(c))
  hp = run_lib.hparams_from_config(c)
  (d0, surv, _), (d1, _, tr) = eml.stage_plan(stream)
  s0 = eml.init_state(jax.random.key(seed), spec, d0, surv)
  T, I = stream.stages
  XT, yT = jnp.asarray(T.X), jnp.asarray(T.y)
  XI, yI = jnp.asarray(I.X), jnp.asarray(I.y)
  sT, _ = lrn.scan(s0, XT, yT, hp)  # compile + warm
  t_T = _median_time(lambda: lrn.scan(s0, XT, yT, hp)[0].L, b.repeats)
  s1 = eml.advance(sT, spec, tr, d1)
  _, m = lrn.scan(s1, XI, yI, hp)  # compile + warm
  t_I = _median_time(lambda: lrn.scan(s1, XI, yI, hp)[0].L, b.repeats)
  act = np.asarray(m["ot_active"])
  stats = dict(
    ot_active=float(act.mean()),
    converged=float(np.asarray(m["converged"])[act].mean()) if act.any() else float("nan"),
    n_iters=float(np.asarray(m["n_iters"])[act].mean()) if act.any() else 0.0,
  )
  return 1e3 * t_T / n_stage, 1e3 * t_I / n_stage, 1e3 * (t_T + t_I) / (2 * n_stage), stats


def bench_pot(c, batch_size, momentum, seed=0):
  """Same batch, ours vs POT, alternating; returns a dict of times and agreement."""
  import ot

  b = c.bench
  d, B, thr = int(b.pot_d), int(b.pot_batch), float(b.ot_threshold)
  kL, kn, k1, k2 = jax.random.split(jax.random.key(seed), 4)
  L = eml.init_projection(kL, int(b.rank), d) + 0.3 * jax.random.normal(kn, (int(b.rank), d))
  H1 = eml.feature_hist(jax.random.normal(k1, (B, d)))
  H2 = eml.feature_hist(jax.random.normal(k2, (B, d)))
  Cn = np.asarray(eml.feature_cost(L, L), np.float64)
  eps = float(0.05 * Cn.mean())
  solver = eml.make_sinkhorn(thr, 5000, 10, momentum=momentum, norm_error=2)
  ours = jax.jit(
    lambda L, H1, H2: eml.feature_ot_batch(L, H1, L, H2, solver=solver, eps=eps,
                                           batch_size=batch_size)
  )  # fmt: skip
  H1n, H2n = np.asarray(H1, np.float64), np.asarray(H2, np.float64)
  H1n /= H1n.sum(1, keepdims=True)
  H2n /= H2n.sum(1, keepdims=True)

  def pot():
    return [ot.sinkhorn2(H1n[i], H2n[i], Cn, eps, stopThr=thr, numItermax=5000) for i in range(B)]

  res = jax.block_until_ready(ours(L, H1, H2))  # compile
  pot()
  # Agreement: our reg_ot_cost vs ⟨P, C⟩ + ε KL(P ‖ abᵀ) of POT's (log-domain, tight) plan.
  ref = []
  for i in range(B):
    P = ot.sinkhorn(H1n[i], H2n[i], Cn, eps, method="sinkhorn_log", stopThr=1e-9,
                    numItermax=20000)  # fmt: skip
    nz = P > 0
    ref.append(np.sum(P * Cn) + eps * np.sum(P[nz] * np.log(P[nz] / np.outer(H1n[i], H2n[i])[nz])))
  rel = float(np.max(np.abs(np.asarray(res.cost) - ref) / np.abs(ref)))
  t_o, t_p = [], []
  for _ in range(int(b.pot_repeats)):
    t_o.append(_median_time(lambda: ours(L, H1, H2).cost, 1))
    t_p.append(_median_time(pot, 1))
  return dict(ours=float(np.median(t_o)), pot=float(np.median(t_p)), rel=rel, B=B,
              converged=bool(np.all(np.asarray(res.converged))),
              iters=(int(np.max(res.n_iters)), float(np.mean(res.n_iters))))  # fmt: skip


def main(argv):
  del argv
  c = _CONFIG.value
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, cpus={os.cpu_count()}, "
        f"reading={c.reading} rank={c.bench.rank} classes={c.bench.n_classes} "
        f"nu={c.nu} updates/stage={c.bench.n_updates}", flush=True)  # fmt: skip
  headline = None
  for d in c.bench.dims:
    t_T, t_I, t_all, st = bench_updates(c, int(d))
    print(f"d={d} k={c.bench.rank}: T-stage {t_T:.3f} ms/update, I-stage {t_I:.3f} ms/update "
          f"(OT active {st['ot_active']:.2f}, converged {st['converged']:.2f}, mean iters "
          f"{st['n_iters']:.1f}), stream {t_all:.3f} ms/update", flush=True)  # fmt: skip
    headline = t_all if headline is None else headline
  b = c.bench
  variants = [
    ("plain: one vmap, no momentum", None, None),
    (f"lax.map batch_size={b.ot_batch_size}, no momentum", b.ot_batch_size, None),
    (f"lax.map batch_size={b.ot_batch_size}, momentum={b.ot_momentum}", b.ot_batch_size,
     b.ot_momentum),
  ]  # fmt: skip
  for name, bs, mom in variants if b.all_variants else variants[-1:]:
    r = bench_pot(c, bs, mom)
    print(f"OT batch ({name}): {r['B']} problems d={b.pot_d} thr={b.ot_threshold}: ours "
          f"{1e3 * r['ours']:.2f} ms, POT sinkhorn2 loop {1e3 * r['pot']:.2f} ms, ratio "
          f"{r['pot'] / r['ours']:.2f}; max rel diff vs POT log-domain reg cost {r['rel']:.2e}; "
          f"converged {r['converged']}, iters max/mean {r['iters'][0]}/{r['iters'][1]:.1f}",
          flush=True)  # fmt: skip
  print(f"ms_per_update_d64={headline:.3f} speedup_over_pot={r['pot'] / r['ours']:.2f}")


if __name__ == "__main__":
  cli.run(main)
