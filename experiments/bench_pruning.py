"""Benchmark: Zero-TPrune speed-up on CPU vs the FLOPs-ideal speed-up."""

import time

import jax
import numpy as np
from absl import app
from ml_collections import config_flags

import ztprune_jax as zt
from configs import zero_tprune
from ztprune_jax import run_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/bench_pruning.py", "Bench config.")


def main(argv):
  del argv
  c = _CONFIG.value
  suffix = ",runlocal" if c.runlocal else ""
  zcfgs = {p: zero_tprune.get_config(p + suffix) for p in c.presets}
  first = next(iter(zcfgs.values()))
  base = run_lib.build_model(first)
  size = base.image_size
  images = jax.random.normal(jax.random.key(c.seed), (c.batch_size, size, size, 3))
  params = jax.jit(base.init)(jax.random.key(c.seed), images[:1])["params"]
  models = {"unpruned": base}
  args = {"unpruned": None}
  for name, zc in zcfgs.items():
    models[name] = run_lib.build_pruned(zc, base)
    args[name] = run_lib.prune_args(zc)
  fns = {}
  for name, m in models.items():
    fn = jax.jit(lambda p, x, a, m=m: m.apply({"params": p}, x, transform_args=a))
    fn(params, images, args[name]).block_until_ready()  # compile + warm-up
    fns[name] = fn
  times = {name: [] for name in models}
  for i in range(c.num_runs):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn(params, images, args[name]).block_until_ready()
      times[name].append(time.perf_counter() - t0)
    print(f"run {i}: " + "  ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
  base_macs = zt.count_flops(base)["total"]
  base_t = float(np.median(times["unpruned"]))
  print(f"model={base.name or first.model_name} batch={c.batch_size} runs={c.num_runs}")
  print(f"{'model':10s} {'GMACs':>7s} {'img/s':>8s} {'speedup':>8s} {'ideal':>7s} {'ratio':>6s}")
  ratios = {}
  for name, m in models.items():
    f = zt.count_flops(m)
    macs = f["total_with_overhead"]
    t = float(np.median(times[name]))
    speedup, ideal = base_t / t, base_macs / macs
    ratios[name] = speedup / ideal
    print(
      f"{name:10s} {f['blocks'] / 1e9:7.3f} {c.batch_size / t:8.1f} {speedup:8.3f} "
      f"{ideal:7.3f} {ratios[name]:6.3f}"
    )
  print(f"speedup_over_ideal={ratios[c.presets[0]]:.3f}")


if __name__ == "__main__":
  app.run(main)
