"""Benchmark: jitted Flax ViT forward vs timm's PyTorch forward on the same CPU.

Both models get the same weights (timm's random init, converted with
`load_checkpoint`), the same batch, and alternate run by run so machine noise hits
both alike. Warm-up (and XLA compilation) is excluded; medians are compared.
"""

import os
import tempfile
import time

import jax
import numpy as np
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/bench_backbone.py", "Benchmark config."
)


def main(argv):
  del argv
  import timm
  import torch

  c = _CONFIG.value
  overrides = {} if c.depth is None else {"depth": c.depth}
  ref = timm.create_model(c.model_name, pretrained=False, **overrides).eval()
  model = zt.create_model(c.model_name, **overrides)
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "w.pth")
    torch.save(ref.state_dict(), path)
    params = zt.load_checkpoint(path, model)
  size = model.image_size
  x = np.random.default_rng(c.seed).normal(size=(c.batch_size, size, size, 3)).astype(np.float32)
  x_torch = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
  x_jax = jax.device_put(x)

  def run_flax():
    return np.asarray(forward(params, x_jax).block_until_ready())

  def run_timm():
    with torch.inference_mode():
      return ref(x_torch).numpy()

  for _ in range(c.num_warmup):
    diff = float(np.abs(run_flax() - run_timm()).max())
  times = {"flax": [], "timm": []}
  for i in range(c.num_runs):
    for name, fn in (("flax", run_flax), ("timm", run_timm)):
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
    print(f"run {i}: flax {times['flax'][-1]:.3f}s  timm {times['timm'][-1]:.3f}s", flush=True)
  med = {k: float(np.median(v)) for k, v in times.items()}
  print(
    f"{c.model_name} depth={model.depth} batch={c.batch_size} threads: torch="
    f"{torch.get_num_threads()} cpus={os.cpu_count()} jax={jax.devices()[0].platform}"
  )
  print(f"max |logit diff| = {diff:.2e}")
  for k in ("flax", "timm"):
    print(f"{k}: median {med[k]:.3f}s = {c.batch_size / med[k]:.1f} img/s")
  print(f"flax_over_timm={med['timm'] / med['flax']:.3f}")


if __name__ == "__main__":
  cli.run(main)
