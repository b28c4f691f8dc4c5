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
    (top-1 against the labels; needs `calib.dataset`).
  method: a pruning method of `ztprune_jax.pruning.pruners.PRUNERS` (default zero_tprune).
  samples: schedules to try (default 50, our choice).
  runlocal: 4-block 32-px DeiT-Ti (whatever `model` says), 2 samples, 8 calibration
    images (under a minute on 2 CPU cores, most of it compiling).

Calibration data. `calib.dataset` names a dataset of `ztprune_jax.data.DATASETS`
(fashion_mnist, imagenet2012, image_folder, synthetic); the calibration images and
labels are then its first `calib.num_images` examples of `calib.split`, preprocessed for
the model as `experiments.evaluate` does (`eval_lib.build_loader`; `calib.split`,
`data_dir`, `manual_dir`, `imagenet_builder`, `crop_pct`, `mean`, `std` as in
configs/eval.py's `data` block). Unset, the images are seeded Gaussian noise without
labels (`score=accuracy` is then refused). The shipped Fashion-MNIST model, searched on
the first 256 test images against their labels:
  `--config=configs/search_schedule.py:model=vit_fmnist_patch4_28,budget=0.03,score=accuracy
  --config.checkpoint=models/vit_fmnist/vit_fmnist_patch4_28.safetensors
  --config.calib.dataset=fashion_mnist --config.calib.num_images=256`
(the demo, configs/demo.py, searches the same way, scored by agreement). Our run (seed 0,
2 CPU cores, 3 min 42 s): 50 rows <= 0.03 of the 0.04316 GFLOPs unpruned, best at
0.02969, last line `best_score=0.921875` (top-1 on those 256 images; agreement 0.9297).

Cost: each sampled schedule compiles its own program. On 2 CPU cores (shared, our
measurement) one DeiT-S schedule with 10 pruning layers compiled in about 50 s and ran a
batch of 32 in about 4.5 s, so the default run (50 samples, 128 images) takes about an
hour there; an accelerator or fewer `sampler.max_layers` shortens it.

Expected numbers. Without `checkpoint` the weights are a seeded random init, and without
`calib.dataset` the calibration images are seeded Gaussian noise; the run says which.
With random weights the score only checks the plumbing; every row's `gflops` is <= the
budget (by construction). Our run of `:runlocal` (random weights, Gaussian images;
seed 0, 2 CPU cores, 41 s): rows at 0.01967 and 0.01971 GFLOPs of the 0.0305 unpruned
(budget 0.02), best `[[1, 0.3, 0.002]]`, last line `best_score=1` (top-1 agreement on 8
noise images, random weights).
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
  c.checkpoint = placeholder(str)  # None: seeded random init

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
  c.calib.dataset = placeholder(str)  # a name in ztprune_jax.data.DATASETS; None: Gaussian noise
  c.calib.num_images = 128  # our choice: the paper does not give its calibration size
  c.calib.batch_size = 32
  # Where the dataset is and how it is preprocessed (configs/eval.py's `data` names).
  c.calib.split = placeholder(str)  # None: fashion_mnist test, imagenet2012 validation
  c.calib.data_dir = placeholder(str)  # image_folder root; tfds data dir for imagenet2012
  c.calib.manual_dir = placeholder(str)  # imagenet2012: folder with ILSVRC2012_img_val.tar
  c.calib.imagenet_builder = "jpeg"  # jpeg (no TensorFlow) | stock (needs TensorFlow)
  c.calib.num_threads = 0  # threads decoding images (image folders, ImageNet)
  c.calib.crop_pct = placeholder(float)  # None: the model's timm crop_pct
  c.calib.mean = placeholder(tuple)  # None: the model's (Fashion-MNIST: its own pixel stats)
  c.calib.std = placeholder(tuple)

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
