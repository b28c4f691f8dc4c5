"""`make demo`: the shipped Fashion-MNIST ViT pruned by every method at two FLOPs budgets.

Command: `python -m experiments.demo --config=configs/demo.py --workdir=results/demo`.

The trained default model (`vit_fmnist_patch4_28`, models/vit_fmnist/MODEL_CARD.md) and
the Fashion-MNIST test split shipped with the repo. The first `calib_size` test images are
the calibration split of Zero-TPrune's Monte-Carlo schedule search (scored label-free, by
top-1 agreement with the unpruned model); every accuracy is measured on the next
`eval_size` images, never on the calibration ones. Budgets are fractions of the unpruned
model's blocks-only GFLOPs; the first (0.65, about 35% fewer FLOPs: the paper's kind of
budget) also runs the ablation ladder. Constant-r schedules reach down to about 0.54.

Writes to the workdir: `summary.json`, `table.md`, `accuracy_vs_gflops.png`,
`kept_tokens.png`, `search_<budget>.csv`. The last line is `demo_ok=1`.

`:runlocal`: a 2-block random ViT on 96 test images, one budget, 2 search samples
(seconds; plumbing only, accuracies at chance level).
"""

import ml_collections

from configs import eval as eval_config
from configs import zero_tprune
from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  c = eval_config.base_config("fmnist_default", arg.runlocal)
  c.checkpoint = "models/vit_fmnist/vit_fmnist_patch4_28.safetensors"
  c.budget_fractions = (0.65, 0.8, 0.55)  # of the unpruned blocks-only GFLOPs; first: ladder
  c.methods = ("random", "topk_cls_attn", "tome", "zero_tprune")
  c.ladder_methods = zero_tprune.LADDER  # at the first budget
  c.calib_size = 1000  # test images 0..999: schedule search only
  c.eval_size = 5000  # test images 1000..5999: every reported accuracy
  c.data.batch_size = 500
  c.search = ml_collections.ConfigDict(
    dict(enabled=True, num_samples=12, score="agreement", batch_size=500)
  )
  c.num_overlay_images = 4
  c.throughput.batch_size = 256
  c.throughput.iters = 5
  c.progress = True
  if arg.runlocal:
    c.checkpoint = None
    c.budget_fractions = (0.75,)
    c.calib_size = 32
    c.eval_size = 64
    c.data.batch_size = 32
    c.search.num_samples = 2
    c.search.batch_size = 32
    c.num_overlay_images = 2
    c.progress = False
  c.lock()
  return c
