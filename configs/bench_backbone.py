"""Backbone speed: jitted Flax forward vs timm's PyTorch forward, same model and CPU.

Command: `python -m experiments.bench_backbone --config=configs/bench_backbone.py`
(needs the `parity` extra for timm). Prints per-run times of both, interleaved, the
medians, and the last line `flax_over_timm=<x>` (img/s ratio; > 1 means Flax is
faster). The figure from our run is in the closing note of the foundation issue.
`:runlocal` uses a 2-block model and batch 4 (seconds).
"""

import ml_collections

from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, model="deit_small_patch16_224")
  c = ml_collections.ConfigDict()
  c.model_name = arg.model
  c.depth = ml_collections.config_dict.placeholder(int)  # None: the model's own depth
  c.batch_size = 32
  c.num_runs = 5
  c.num_warmup = 1
  c.seed = 0
  if arg.runlocal:
    c.depth = 2
    c.batch_size = 4
    c.num_runs = 2
  c.lock()
  return c
