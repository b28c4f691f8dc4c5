"""Demo: build the default ViT, forward a batch, round-trip a checkpoint, print a report."""

import os
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

import ztprune_jax as zt

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Demo config.")


def main(argv):
  del argv
  c = _CONFIG.value
  model = zt.create_model(c.model_name, **c.model.to_dict())
  size = model.image_size
  images = jax.random.normal(jax.random.key(c.seed), (c.batch_size, size, size, 3))
  if c.checkpoint:
    params = zt.load_checkpoint(c.checkpoint, model)
    source = c.checkpoint
  else:
    params = jax.jit(model.init)(jax.random.key(c.seed), images[:1])["params"]
    source = f"random init (seed {c.seed}); no trained checkpoint configured"
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x))
  t0 = time.perf_counter()
  logits = forward(params, images).block_until_ready()
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(c.num_timed_runs):
    t0 = time.perf_counter()
    forward(params, images).block_until_ready()
    times.append(time.perf_counter() - t0)
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "params.safetensors")
    zt.save_checkpoint(params, path)
    reloaded = zt.load_checkpoint(path, model)
  same = bool(np.array_equal(forward(reloaded, images), logits))
  pruned = zt.prune(model, "zero_tprune", c.prune_schedule.to_dict())
  pruned_fwd = jax.jit(lambda p, x: pruned.apply({"params": p}, x, return_state=True))
  pruned_logits, state = pruned_fwd(params, images)
  p_times = []
  for _ in range(c.num_timed_runs):
    t0 = time.perf_counter()
    jax.block_until_ready(pruned_fwd(params, images))
    p_times.append(time.perf_counter() - t0)
  agree = float((pruned_logits.argmax(-1) == logits.argmax(-1)).mean())
  base_macs = zt.count_flops(model)["blocks"] / 1e9
  pruned_macs = zt.count_flops(pruned)["blocks"] / 1e9
  n_params = sum(x.size for x in jax.tree.leaves(params))
  finite = bool(np.isfinite(np.asarray(logits)).all())
  print(f"model            {c.model_name} {dict(c.model)}")
  print(f"weights          {source}")
  print(f"parameters       {n_params:,}")
  print(f"tokens           {model.num_prefix_tokens} prefix + {model.num_patches} patches")
  print(f"input -> logits  {tuple(images.shape)} -> {tuple(logits.shape)}, finite={finite}")
  print(f"compile+run      {compile_s:.2f} s")
  print(f"throughput       {c.batch_size / np.median(times):.1f} img/s (median of {len(times)})")
  print(f"top-1 classes    {np.asarray(logits.argmax(-1)).tolist()}")
  print(f"safetensors round trip reproduces logits: {same}")
  kept = [int(k.shape[1]) - model.num_prefix_tokens for k in state.kept]
  print(f"zero_tprune      schedule {c.prune_schedule.to_dict()}")
  print(f"  patch tokens   {model.num_patches} -> {kept[-1]} (after each layer: {kept})")
  print(f"  blocks GMACs   {base_macs:.3f} -> {pruned_macs:.3f} ({base_macs / pruned_macs:.2f}x)")
  speedup = np.median(times) / np.median(p_times)
  print(f"  throughput     {c.batch_size / np.median(p_times):.1f} img/s ({speedup:.2f}x measured)")
  print(f"  top-1 agreement with unpruned: {agree:.2f}")
  print(f"demo_ok={int(finite and same and bool(np.isfinite(pruned_logits).all()))}")


if __name__ == "__main__":
  flags.mark_flags_as_required([])
  app.run(main)
