"""Which patches each method keeps (or merges) after each pruning layer, as a PNG grid.

`python -m experiments.visualize --config=configs/visualize.py:PRESET[,runlocal]
--workdir=DIR` takes the first `num_images` images of the eval data (configs/eval.py
presets), prunes the model with each method at `budget_gflops` (the constant-r schedule
of `evaluation.schedule_for_budget`) and writes `kept_patches.png`: one row per (method,
image), the image and then one panel per pruning layer with the dropped patches washed
blue; merging methods that expose source maps (ToMe) colour the patches merged into one
token alike; a method whose state exposes neither gets a note. The last line is
`panels=<rows>`. `runlocal`: the 2-block random ViT of configs/eval.py, 2 images, three
methods (random weights: the kept patches show the plumbing, not a trained model).
"""

from ml_collections.config_dict import placeholder

from configs import eval as eval_config
from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, positional="preset", preset="fmnist_default", runlocal=False)
  c = eval_config.base_config(arg.preset, arg.runlocal)
  c.methods = ("topk_cls_attn", "ats_like", "tome", "zero_tprune")
  c.budget_gflops = placeholder(float)  # None: `r` sets the schedule
  c.budget_gflops = {"fmnist_default": 0.03, "imagenet_deit_s": 2.95}[arg.preset]
  c.num_images = 4
  c.plot_file = "kept_patches.png"
  c.throughput.enabled = False
  if arg.runlocal:
    c.methods = ("random", "tome", "zero_tprune")
    c.budget_gflops = 0.00104  # r=4 after block 0 (configs/sweep.py)
    c.num_images = 2
  c.lock()
  return c
