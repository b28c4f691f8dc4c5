"""Accuracy vs GFLOPs for every method over a range of budgets, and the ablation ladder.

`python -m experiments.sweep --config=configs/sweep.py:PRESET[,runlocal] --workdir=DIR`
writes `sweep.csv` (one row per method and budget, plus the unpruned model) and
`accuracy_vs_gflops.png` (the shape of Zero-TPrune's Fig. 7), and the ablation ladder
(random < wpr <= wpr_eir <= wpr_eir_vhf <= zero_tprune in the paper) at
`ladder_budget_gflops` as `ladder.csv` and `ladder.md`. Methods not registered in
`ztprune_jax.PRUNERS` are skipped with a note. Each (method, schedule) compiles once and
is evaluated once (the ladder reuses sweep points at the same budget).

Presets as in configs/eval.py. For `imagenet_deit_s` the paper's numbers (DeiT-S,
ImageNet-1k, no fine-tuning) are: ladder at 3.08 G 76.8 / 78.6 / 78.8 / 78.9 / 79.4;
Fig. 7 spans about 2.3-4.6 G. `runlocal`: the 3-block random ViT of configs/eval.py on 64
Fashion-MNIST images, one budget, two methods + the ladder (chance-level accuracies; plumbing only).
"""

from ml_collections.config_dict import placeholder

from configs import eval as eval_config
from configs import zero_tprune
from configs.common import parse_arg

METHODS = ("random", "topk_cls_attn", "ats_like", "tome", "zero_tprune")


def get_config(arg=None):
  arg = parse_arg(arg, positional="preset", preset="fmnist_default", runlocal=False)
  c = eval_config.base_config(arg.preset, arg.runlocal)
  c.methods = METHODS
  c.include_unpruned = True
  c.ladder_methods = zero_tprune.LADDER
  c.ladder_paper_top1 = placeholder(tuple)
  if arg.preset == "imagenet_deit_s":
    c.budgets_gflops = (2.45, 2.95, 3.5, 4.0)
    c.ladder_budget_gflops = 3.08
    c.ladder_paper_top1 = (76.8, 78.6, 78.8, 78.9, 79.4)
  else:  # vit_fmnist_patch4_28 costs 0.0432 G unpruned
    c.budgets_gflops = (0.025, 0.03, 0.035, 0.04)
    c.ladder_budget_gflops = 0.03
  c.csv_file = "sweep.csv"
  c.plot_file = "accuracy_vs_gflops.png"
  c.ladder_csv_file = "ladder.csv"
  c.ladder_md_file = "ladder.md"
  if arg.runlocal:
    c.methods = ("random", "zero_tprune")
    c.budgets_gflops = (0.00104,)  # the 2-block model: 0.00119 G unpruned, r=4 -> 0.00104
    c.ladder_budget_gflops = 0.00104
    c.throughput.enabled = False
    c.tensorboard = False  # saves the TensorFlow import (evaluate's runlocal covers it)
  c.lock()
  return c
