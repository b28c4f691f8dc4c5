"""Monte-Carlo search for a Zero-TPrune schedule under a GFLOPs budget (spec §5).

Command: `python -m experiments.search_schedule --config=configs/search_schedule.py
--workdir=/tmp/search` samples `num_samples` schedules (pruning layers, keep ratios, S/I
split) whose blocks-only GFLOPs (the paper's tables: DeiT-S 4.55) stay at or just under
`budget_gflops`, scores each on the calibration batch against the unpruned model, and
writes `search_table.csv` and `best_schedule.json` to the workdir. Its last line is
`best_score=<x>`.

Arg keys (`--config=configs/search_schedule.py:budget=2.5,score=kl,runlocal`):
  model: model name (default deit_small_patch16_224).
  budget: blocks-only GFLOPs; default 2.97, the paper's DeiT-S Zero-TPrune-a budget.
  score: agreement (default; top-1 agreement with the unpruned model) | kl | accuracy
    (needs a labelled calibration dataset).
  method: a pruning method of `ztprune_jax.pruners.PRUNERS` (default zero_tprune).
  samples: schedules to try (default 50, our choice).
  runlocal: 4-block 32-px DeiT-Ti (whatever `model` says), 2 samples, 8 calibration
    images (under a minute on 2 CPU cores, most of it compiling).

Cost: each sampled schedule compiles its own program. On 2 CPU cores (shared, our
measurement) one DeiT-S schedule with 10 pruning layers compiled in about 50 s and ran a
batch of 32 in about 4.5 s, so the default run (50 samples, 128 images) takes about an
hour there; an accelerator or fewer `sampler.max_layers` shortens it.

Expected numbers. No trained checkpoint ships yet (an embedded default model is a later
issue) and no calibration dataset is wired in (a data module is a later issue): without
`checkpoint` the weights are a seeded random init and the calibration images seeded
Gaussian noise, and the run says so. With random weights the score only checks the
plumbing; every row's `gflops` is <= the budget (by construction). Our run of
`:runlocal` (seed 0, 2 CPU cores, 41 s): rows at 0.01967 and 0.01971 GFLOPs of the
0.0305 unpruned (budget 0.02), best `[[1, 0.3, 0.002]]`, last line `best_score=1`
(top-1 agreement on 8 noise images, random weights).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(
    arg, runlocal=False, model="deit_small_patch16_224", budget=2.97, score="agreement",
    method="zero_tprune", samples=50,
  )  # fmt: skip
  c = ml_collections.ConfigDict()
  c.model_name = arg.model
  c.model = ml_collections.ConfigDict()  # overrides of VisionTransformer fields
  c.checkpoint = placeholder(str)  # None: seeded random init (no trained weights yet)

  c.budget_gflops = arg.budget  # blocks-only MACs per image / 1e9 (paper convention)
  c.num_samples = arg.samples
  c.seed = 0
  c.score = arg.score
  c.method = arg.method
  c.pruner = ml_collections.ConfigDict()  # options of `prune` (partition, wpr_iters, ...)
  c.sampler = ml_collections.ConfigDict()  # options of `search.sample_schedule`
  c.sampler.max_layers = placeholder(int)  # None: every block but the last
  c.sampler.min_keep_ratio = 0.25  # our choice (the paper prints no bound)
  c.sampler.s_fraction_range = (0.0, 1.0)

  c.calib = ml_collections.ConfigDict()
  c.calib.dataset = placeholder(str)  # None: seeded Gaussian images (no data module yet)
  c.calib.num_images = 128  # our choice: the paper does not give its calibration size
  c.calib.batch_size = 32

  c.table_file = "search_table.csv"  # written to --workdir
  c.best_file = "best_schedule.json"
  c.progress = True

  if arg.runlocal:
    c.model_name = "deit_tiny_patch16_224"
    c.model = ml_collections.ConfigDict(dict(depth=4, image_size=32, patch_size=8, num_classes=10))
    c.budget_gflops = 0.02  # the 4-block model costs 0.0305 unpruned
    c.num_samples = 2
    c.calib.num_images = 8
    c.calib.batch_size = 4
    c.progress = False
  c.lock()
  return c
