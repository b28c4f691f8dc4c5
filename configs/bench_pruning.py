"""Pruning speed: unpruned vs Zero-TPrune at the -a/-b/-c budgets, one run, same CPU.

Command: `python -m experiments.bench_pruning --config=configs/bench_pruning.py`.
Prints img/s of each model (median of interleaved runs, warm-up and compilation
excluded), the measured speed-up over the unpruned model, the FLOPs-ideal speed-up
(`count_flops` total of the unpruned model over the pruned one's total including the
pruning overhead), and their ratio. The last line is `speedup_over_ideal=<x>` for
deit_s_a. Random weights (speed does not depend on them). `:runlocal` shrinks the
model and batch so the whole run takes seconds.
"""

import ml_collections

from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  c = ml_collections.ConfigDict()
  c.presets = ("deit_s_a", "deit_s_b", "deit_s_c")  # from configs/zero_tprune.py
  c.batch_size = 32
  c.num_runs = 5
  c.seed = 0
  c.runlocal = arg.runlocal  # passed to the zero_tprune presets
  if arg.runlocal:
    c.batch_size = 4
    c.num_runs = 2
  c.lock()
  return c
