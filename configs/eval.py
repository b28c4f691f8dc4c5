"""Evaluate one pruning method at one FLOPs budget: top-1/top-5, GFLOPs, img/s.

`python -m experiments.evaluate --config=configs/eval.py:PRESET[,runlocal] --workdir=DIR`
with overrides such as `--config.method=tome --config.budget_gflops=2.95` or
`--config.r=12`. `method=none` evaluates the unpruned model. Budgets are blocks-only
GMACs per image (the paper's "GFLOPs"; DeiT-S unpruned 4.55, `count_flops`), turned into a
constant-r schedule by `evaluation.schedule_for_budget` (on DeiT-S 2.95 -> r=12, 2.956 G,
the `deit_s_a` preset of configs/zero_tprune.py).

Presets:
  fmnist_default: the embedded default, Fashion-MNIST test (10k images, shipped with the
    repo / Debian) on `vit_fmnist_patch4_28`; set `checkpoint` to its trained weights
    (without one the run uses a seeded random init and says so).
  imagenet_deit_s: DeiT-S on ImageNet-1k validation (`data.manual_dir` holding
    ILSVRC2012_img_val.tar; prepared once into `data.data_dir` without TensorFlow) and
    `checkpoint` (timm deit_small weights, converted by `load_checkpoint`). Preprocessing:
    resize shorter side to 248 (= floor(224 / crop_pct 0.9), timm's DeiT value) bicubic,
    center crop 224, ImageNet mean/std. Paper (no fine-tuning): Zero-TPrune 79.4 top-1 at
    2.97 G; unpruned DeiT-S 79.8.
  runlocal (also `PRESET,runlocal`): a 2-block 28-px random ViT (16 patches of 7 px) on 64
    Fashion-MNIST test images, pruning r=1 token after block 0; seconds on CPU. Random
    weights: accuracies are chance level and only check the plumbing (our run, seed 0,
    2 CPU cores: `top1=0.1875` at 0.001151 GFLOPs; the smoke test checks the outputs).

Your own images and weights (README "Your own model and images"): `data.name=image_folder`,
`data.data_dir=root` (`root/<class>/<image>`, or `data.split=<sub-folder>`), `data.class_map`
(JSON `{"<class folder>": <output index>}`), `checkpoint`, `model_name` and `model.*`
(e.g. `model.num_classes`). Optional fields are placeholders: `--config.<field>=None` clears
them.

Writes `<workdir>/<method>_<gflops>g.json` (the record) and appends a row to
`<workdir>/results.csv`; TensorBoard scalars when clu's writer has a backend.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import zero_tprune
from configs.common import parse_arg

PRESETS = ("fmnist_default", "imagenet_deit_s")


def data_config(name="fashion_mnist", batch_size=256):
  """The `data` block shared by the eval, sweep and visualize configs."""
  d = ml_collections.ConfigDict()
  d.name = name  # fashion_mnist | imagenet2012 | image_folder | synthetic
  # None: the dataset's default (fashion_mnist test, imagenet2012 validation; image_folder:
  # data_dir itself holds the class folders, else data_dir/<split>).
  d.split = placeholder(str)
  d.data_dir = placeholder(str)  # image_folder root; tfds data dir for imagenet2012
  d.manual_dir = placeholder(str)  # imagenet2012: folder with ILSVRC2012_img_val.tar
  # image_folder: JSON file {"<class folder name>": <model output index>, ...}. Without it,
  # folders named 0..K-1, folders named after the model's classes, or a 1000-class folder
  # for a 1000-way (ImageNet) head; anything else is an error that asks for this file.
  d.class_map = placeholder(str)
  d.imagenet_builder = "jpeg"  # jpeg (no TensorFlow) | stock (tfds imagenet2012, needs TF)
  d.start = 0  # first example (a calibration split can be carved from the start)
  d.num_examples = placeholder(int)  # None: the whole split from `start`
  d.batch_size = batch_size  # static; the last batch is padded and masked
  d.num_threads = 0  # threads decoding images (image folders, ImageNet)
  d.crop_pct = placeholder(float)  # None: the model's timm crop_pct (DeiT 0.9 -> resize 248)
  d.mean = placeholder(tuple)  # None: the model's (Fashion-MNIST: its own pixel stats)
  d.std = placeholder(tuple)
  # Images with NaN/inf pixels: "raise" (the error lists them) or "skip" (left out of the
  # accuracies, counted in the record's num_nonfinite and listed in `nonfinite`).
  d.nonfinite = "raise"
  return d


# VisionTransformer fields a checkpoint may need (a fine-tuned head, another image size,
# Hugging Face's ln_eps=1e-12); each None keeps the `model_name` preset's value.
MODEL_FIELDS = {
  "num_classes": int, "image_size": int, "patch_size": int, "width": int, "depth": int,
  "num_heads": int, "mlp_dim": int, "in_channels": int, "ln_eps": float,
  "layerscale_init": float, "class_token": bool, "dist_token": bool, "global_pool": str,
  "fc_norm": bool,
}  # fmt: skip


def model_config(**values):
  """The `model` block: every `MODEL_FIELDS` entry a placeholder, set where given."""
  m = ml_collections.ConfigDict({k: placeholder(t) for k, t in MODEL_FIELDS.items()})
  m.update(values)
  return m


def method_options():
  """Per-method options of `prune` (applied whenever that method runs)."""
  zt = zero_tprune.get_config("deit_s_a")
  zt_opts = dict(zt.pruner.to_dict(), s_fraction=zt.s_fraction, wpr_iters=tuple(zt.wpr_iters))
  ladder = {k: v for k, v in zt_opts.items() if k not in ("s_fraction", "head_reduce", "vhf")}
  return ml_collections.ConfigDict(
    dict(
      zero_tprune=zt_opts,
      wpr=ladder,
      wpr_eir=ladder,
      wpr_eir_vhf=ladder,
      tome=dict(prop_attn=True),
    )
  )


def base_config(preset, runlocal):
  """Fields shared with configs/sweep.py and configs/visualize.py."""
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; valid: {list(PRESETS)} (+ ',runlocal')")
  c = ml_collections.ConfigDict()
  c.preset = preset
  c.model_name = "vit_fmnist_patch4_28"
  c.model = model_config()  # VisionTransformer field overrides (None: the preset's)
  c.checkpoint = placeholder(str)  # None: seeded random init
  c.seed = 0
  c.data = data_config()
  c.method_options = method_options()
  c.hparams = zero_tprune.get_config("deit_s_a").hparams  # traced Zero-TPrune hparams
  # Schedule: `r` if set, else the budget's constant-r schedule (after blocks 0..depth-2).
  c.r = placeholder(int)
  c.decreasing = False
  c.layers = placeholder(tuple)
  c.throughput = ml_collections.ConfigDict(dict(enabled=True, batch_size=64, warmup=2, iters=10))
  c.progress = True
  c.tensorboard = True  # clu summaries (when TensorFlow + tensorboard are installed)
  if preset == "imagenet_deit_s":
    c.model_name = "deit_small_patch16_224"
    c.data = data_config("imagenet2012", batch_size=128)
    c.data.num_threads = 8
  if runlocal:
    c.model_name = "deit_tiny_patch16_224"
    c.model = model_config(
      depth=2, image_size=28, patch_size=7, width=64, num_heads=2, mlp_dim=128, num_classes=10
    )
    c.checkpoint = None
    c.data = data_config("fashion_mnist", batch_size=32)
    c.data.num_examples = 64
    c.throughput = ml_collections.ConfigDict(dict(enabled=True, batch_size=8, warmup=1, iters=2))
    c.progress = False
  return c


def get_config(arg=None):
  arg = parse_arg(arg, positional="preset", preset="fmnist_default", runlocal=False)
  c = base_config(arg.preset, arg.runlocal)
  c.method = "zero_tprune"  # a name in ztprune_jax.PRUNERS, or "none" (unpruned)
  c.budget_gflops = placeholder(float)  # blocks-only GMACs per image
  c.budget_gflops = {"fmnist_default": 0.03, "imagenet_deit_s": 2.95}[arg.preset]
  c.results_file = "results.csv"
  if arg.runlocal:
    c.budget_gflops = None
    c.r = 1
  c.lock()
  return c
