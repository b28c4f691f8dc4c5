"""Benchmark: Zero-TPrune speed-up on CPU vs the FLOPs-ideal speed-up; methods at one budget."""

import time

import jax
import numpy as np
from ml_collections import config_flags
from tqdm import tqdm

import ztprune_jax as zt
from configs import zero_tprune
from experiments import cli
from ztprune_jax import pruners, run_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/bench_pruning.py", "Bench config.")
_ZERO_TPRUNE_FAMILY = ("zero_tprune", "wpr", "wpr_eir", "wpr_eir_vhf")


def _time_interleaved(fns: dict, params, images, args: dict, num_runs: int) -> dict:
  """Compiles and warms each fn, then times them round-robin; seconds per call, per name."""
  for name, fn in fns.items():
    fn(params, images, args[name]).block_until_ready()  # compile + warm-up
  times = {name: [] for name in fns}
  for i in tqdm(range(num_runs), desc="interleaved runs"):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn(params, images, args[name]).block_until_ready()
      times[name].append(time.perf_counter() - t0)
    tqdm.write(f"run {i}: " + "  ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
  return times


def tome_r_for_budget(model, budget_blocks_macs: float) -> int:
  """ToMe's constant ``r`` whose blocks-only MACs on ``model`` come closest to the budget."""
  best, best_gap = 0, float("inf")
  for r in range(model.num_patches // 2 + 1):
    gap = abs(zt.count_flops(zt.prune(model, "tome", r=r))["blocks"] - budget_blocks_macs)
    if gap < best_gap:
      best, best_gap = r, gap
  return best


def _methods_main(c) -> None:
  """img/s of each method at the `budget_preset` budget; ToMe r FLOPs-matched."""
  names = [m.strip() for m in c.methods.split(",") if m.strip()]
  unknown = [m for m in names if m != "unpruned" and m not in pruners.PRUNERS]
  if unknown or not names:
    raise ValueError(
      f"config.methods={c.methods!r}: unknown {unknown}; valid: unpruned, {sorted(pruners.PRUNERS)}"
    )
  zc = zero_tprune.get_config(c.budget_preset + (",runlocal" if c.runlocal else ""))
  base = run_lib.build_model(zc)
  budget = zt.count_flops(run_lib.build_pruned(zc, base, "zero_tprune"))["blocks"]
  r = tome_r_for_budget(base, budget) if c.tome_r is None else c.tome_r
  size = base.image_size
  images = jax.random.normal(jax.random.key(c.seed), (c.batch_size, size, size, 3))
  params = jax.jit(base.init)(jax.random.key(c.seed), images[:1])["params"]
  models, args = {}, {}
  for name in names:
    if name == "unpruned":
      models[name], args[name] = base, None
    elif name == "tome":
      models[name], args[name] = zt.prune(base, "tome", r=r), None
    elif name in _ZERO_TPRUNE_FAMILY:
      models[name], args[name] = run_lib.build_pruned(zc, base, name), run_lib.prune_args(zc)
    else:  # baselines without options, on the preset's schedule
      sched = run_lib.schedule_from_config(zc)
      models[name] = zt.prune(base, name, sched, wpr_iters=tuple(zc.wpr_iters))
      args[name] = zt.PruneArgs(rng=jax.random.key(c.seed))
  fns = {
    name: jax.jit(lambda p, x, a, m=m: m.apply({"params": p}, x, transform_args=a))
    for name, m in models.items()
  }
  times = _time_interleaved(fns, params, images, args, c.num_runs)
  print(f"model={zc.model_name} batch={c.batch_size} runs={c.num_runs} budget={c.budget_preset}")
  print(f"{'method':14s} {'GMACs':>7s} {'+ovh':>7s} {'img/s':>8s}")
  ips = {}
  for name, m in models.items():
    f = zt.count_flops(m)
    ips[name] = c.batch_size / float(np.median(times[name]))
    label = f"{name} (r={r})" if name == "tome" else name
    print(f"{label:14s} {f['blocks'] / 1e9:7.3f} {f['overhead'] / 1e9:7.4f} {ips[name]:8.1f}")
  if "zero_tprune" in ips and "tome" in ips:
    print(f"zero_tprune_over_tome_throughput={ips['zero_tprune'] / ips['tome']:.3f}")


def main(argv):
  del argv
  c = _CONFIG.value
  if c.methods:
    _methods_main(c)
    return
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
  fns = {
    name: jax.jit(lambda p, x, a, m=m: m.apply({"params": p}, x, transform_args=a))
    for name, m in models.items()
  }
  times = _time_interleaved(fns, params, images, args, c.num_runs)
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
  cli.run(main)
