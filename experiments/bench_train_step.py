"""Benchmark: jitted train steps of several models, interleaved on the same CPU.

Each model gets random uint8 images of its own input shape and the same optimiser,
augmentation and preprocessing as `experiments/train.py`; compilation is excluded; the
models alternate run by run so machine noise hits all alike; medians are compared.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli
from ztprune_jax.train import training

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/bench_train_step.py", "Benchmark config."
)


def _step(name, depth, batch, seed):
  """``(jitted step, state, images, labels)`` of model ``name``."""
  model = zt.create_model(name, **({} if depth is None else {"depth": depth}))
  s, c = model.image_size, model.in_channels
  params = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, s, s, c)))["params"]
  tx, _ = training.make_optimizer(
    learning_rate=1e-3, total_steps=100, warmup_steps=1, weight_decay=0.05
  )
  prep = functools.partial(
    training.preprocess, mean=(0.5,), std=(0.25,), image_size=s, in_channels=c
  )
  step = jax.jit(
    functools.partial(training.train_step, model=model, tx=tx, prep=prep, pad=0, flip=True,
                      label_smoothing=0.1),
    donate_argnums=(0,),
  )  # fmt: skip
  rng = np.random.default_rng(seed)
  shape = (batch, s, s) if c == 1 else (batch, s, s, c)
  x = jnp.asarray(rng.integers(0, 256, shape, np.uint8))
  y = jnp.asarray(rng.integers(0, model.num_classes, batch, np.int32))
  return step, training.create_train_state(params, tx), x, y


def main(argv):
  del argv
  c = _CONFIG.value
  runs = {}
  for name in c.model_names:
    step, state, x, y = _step(name, c.depth, c.batch_size, c.seed)
    state, m = step(state, x, y, jax.random.key(0))  # compile + warm-up
    jax.block_until_ready(m)
    runs[name] = [step, state, x, y]
  times = {name: [] for name in runs}
  for r in range(c.num_runs):
    for name, run in runs.items():
      step, state, x, y = run
      t0 = time.perf_counter()
      state, m = step(state, x, y, jax.random.key(r + 1))
      jax.block_until_ready(m)
      times[name].append(time.perf_counter() - t0)
      run[1] = state
      print(f"run {r}  {name:26s} {times[name][-1]:.3f} s", flush=True)
  med = {name: float(np.median(t)) for name, t in times.items()}
  for name, t in med.items():
    print(f"median {name:26s} {t:.3f} s per step of {c.batch_size} ({c.batch_size / t:.1f} img/s)")
  first, last = c.model_names[0], c.model_names[-1]
  print(f"ratio={med[last] / med[first]:.3f}")


if __name__ == "__main__":
  cli.run(main)
