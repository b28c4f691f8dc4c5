"""`make demo`: the shipped Fashion-MNIST ViT pruned by every method at three FLOPs budgets.

Commands:
  python -m experiments.demo --config=configs/demo.py --workdir=results/demo   (`make demo`)
  python -m experiments.demo --config=configs/demo.py:full --workdir=results/demo_full
    (`make demo-full`: 5000 evaluation images, a schedule search at every budget)

The trained default model (`vit_fmnist_patch4_28`, models/vit_fmnist/MODEL_CARD.md) and
the Fashion-MNIST test split shipped with the repo. The first `calib_size` test images are
the calibration split of Zero-TPrune's Monte-Carlo schedule search (scored label-free, by
top-1 agreement with the unpruned model); every accuracy is measured on the next
`eval_size` images, never on the calibration ones, and carries a 95 % Wilson interval.
Budgets are fractions of the unpruned model's blocks-only GFLOPs; the first (0.65, about
35% fewer FLOPs: the paper's kind of budget) also runs the ablation ladder and the
searched schedule (`search_budgets`: indices into `budget_fractions`). Constant-r
schedules reach down to about 0.54.

Speed: evaluation and throughput share one compiled program per point (throughput batch =
evaluation batch), so each (method, budget) compiles once; compiled programs are kept in
JAX's persistent cache (`compilation_cache_dir`, git-ignored), which makes a second run
faster. Measured times are in the README.

Writes to the workdir: `summary.json`, `table.md`, `accuracy_vs_gflops.png`,
`kept_tokens.png`, `search_<budget>.csv`. The last line is `demo_ok=1`.

`:textured` (`make demo-textured`, also run by `make demo-full`; issue 19): the same run on
the 144-patch ViT trained on textured Fashion-MNIST (models/vit_textured/MODEL_CARD.md),
on the textured test split (the committed test garments on the test photographs,
regenerated bit-exactly), written to results/demo_textured:
  python -m experiments.demo --config=configs/demo.py:textured --workdir=results/demo_textured

`:runlocal`: a 2-block random ViT on 96 test images, one budget, 2 search samples
(seconds; plumbing only, accuracies at chance level).
"""

import ml_collections

from configs import eval as eval_config
from configs import zero_tprune
from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, full=False, textured=False)
  c = eval_config.base_config("fmnist_default", arg.runlocal)
  c.checkpoint = "models/vit_fmnist/vit_fmnist_patch4_28.safetensors"
  c.budget_fractions = (0.65, 0.8, 0.55)  # of the unpruned blocks-only GFLOPs; first: ladder
  c.methods = ("random", "topk_cls_attn", "tome", "zero_tprune")
  c.ladder_methods = zero_tprune.LADDER  # at the first budget
  c.calib_size = 500  # test images 0..499: schedule search only
  c.eval_size = 3000  # test images 500..3499: every reported accuracy
  c.data.batch_size = 250
  c.search = ml_collections.ConfigDict(
    dict(enabled=True, num_samples=4, score="agreement", batch_size=500)
  )
  c.search_budgets = (0,)  # indices into budget_fractions searched (the ladder budget)
  c.num_overlay_images = 4
  c.throughput.batch_size = 250  # = data.batch_size: timed on the evaluation's program
  c.throughput.iters = 5
  c.compilation_cache_dir = ".jax_cache"  # JAX persistent compilation cache ("": off)
  c.workers = 2  # accuracy jobs at a time (compiles are single-threaded); speed: one at a time
  c.progress = True
  if arg.textured:
    c.model_name = "vit_textured_patch8_96"
    c.checkpoint = "models/vit_textured/vit_textured_patch8_96.safetensors"
    c.data.name = "textured_fmnist"
  if arg.full:
    c.calib_size = 1000  # test images 0..999
    c.eval_size = 5000  # test images 1000..5999
    c.search.num_samples = 12
    c.search_budgets = (0, 1, 2)
  if arg.runlocal:
    c.checkpoint = None
    c.budget_fractions = (0.75,)
    c.calib_size = 32
    c.eval_size = 64
    c.data.batch_size = 32
    c.throughput.batch_size = 32
    c.search.num_samples = 2
    c.search.batch_size = 32
    c.num_overlay_images = 2
    c.compilation_cache_dir = ""
    c.progress = False
  c.lock()
  return c
