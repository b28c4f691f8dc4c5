"""Pruning speed: unpruned vs Zero-TPrune at the -a/-b/-c budgets, one run, same CPU.

Command: `python -m experiments.bench_pruning --config=configs/bench_pruning.py`.
Prints img/s of each model (median of interleaved runs, warm-up and compilation
excluded), the measured speed-up over the unpruned model, the FLOPs-ideal speed-up
(`count_flops` total of the unpruned model over the pruned one's total including the
pruning overhead), and their ratio. The last line is `speedup_over_ideal=<x>` for
deit_s_a. Random weights (speed does not depend on them). `:runlocal` shrinks the
model and batch so the whole run takes seconds.

Methods mode compares methods at one budget (the `budget_preset` Zero-TPrune preset,
deit_s_a: 2.956 G): `python -m experiments.bench_pruning
--config=configs/bench_pruning.py --config.methods=unpruned,tome,zero_tprune`. ToMe's
constant ``r`` is the one whose blocks-only GMACs come closest to the preset's
(`tome_r` overrides it; deit_s_a gives r=11, 2.928 G). Its last line is
`zero_tprune_over_tome_throughput=<x>` (Zero-TPrune img/s over ToMe img/s; the paper
reports Zero-TPrune 3.3% slower than ToMe at the same FLOPs, our goal is >= 0.97).
`:methods` selects that default method list. Our run (random weights, batch 32, 5
interleaved runs, on 2 CPU cores shared with other jobs, load average ~20, so absolute
numbers are low and noisy): unpruned 3.0, ToMe (r=11, 2.928 G) 5.3, Zero-TPrune
(2.956 G) 5.1 img/s; `zero_tprune_over_tome_throughput=0.973`.
"""

import ml_collections
from ml_collections import config_dict

from configs.common import parse_arg

METHODS = "unpruned,tome,zero_tprune"


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, methods=False)
  c = ml_collections.ConfigDict()
  c.presets = ("deit_s_a", "deit_s_b", "deit_s_c")  # from configs/zero_tprune.py
  # Methods mode: comma-separated `unpruned`, `tome` or any `ztprune_jax.PRUNERS` name,
  # all at the `budget_preset` budget; "" runs the preset comparison above.
  c.methods = METHODS if arg.methods else ""
  c.budget_preset = "deit_s_a"
  c.tome_r = config_dict.placeholder(int)  # None: FLOPs-matched to budget_preset
  c.batch_size = 32
  c.num_runs = 5
  c.seed = 0
  c.runlocal = arg.runlocal  # passed to the zero_tprune presets
  if arg.runlocal:
    c.batch_size = 4
    c.num_runs = 2
  c.lock()
  return c
