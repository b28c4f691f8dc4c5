"""Trains the project's default ViT (`vit_fmnist_patch4_28`) on Fashion-MNIST.

Command (what `make train-default` runs):
  python -m experiments.train --config=configs/train_fashion_mnist.py --workdir=runs/vit_fmnist
It writes orbax checkpoints every epoch to `<workdir>/checkpoints` (an interrupted run
resumes from the latest one when started again with the same workdir), TensorBoard
scalars, and at the end `<workdir>/final.safetensors` (loadable with
`ztprune_jax.load_checkpoint`) and `<workdir>/final_metrics.json`; its last line is
`test_top1=<x>`. Expected: `test_top1=0.9023` (our run, seed 0: 15 epochs, 74 min on 2
shared CPU cores; models/vit_fmnist/MODEL_CARD.md).

Arg keys (`--config=configs/train_fashion_mnist.py:epochs=5,runlocal`):
  epochs: training epochs (default: the shipped model's).
  batch: batch size.
  runlocal: a depth-2 width-32 model on 512 train / 256 test images for 2 epochs
    (seconds on CPU; checks the plumbing only).

Fine-tuning another model (e.g. on a GPU/TPU): `--config.model_name=deit_small_patch16_224
--config.init=<checkpoint> --config.data.mean='(0.485,0.456,0.406)'
--config.data.std='(0.229,0.224,0.225)'`; the grey 28x28 images are repeated to 3 channels
and resized to the model's `image_size`, the classifier head is re-initialised for 10
classes and every other weight comes from the checkpoint.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs.common import parse_arg

# Fashion-MNIST pixel statistics of the train split (our measurement, /255 scale).
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)


def get_config(arg=None):
  c = base_config(parse_arg(arg, runlocal=False, epochs=15, batch=128))
  c.lock()
  return c


def base_config(arg) -> ml_collections.ConfigDict:
  """The unlocked config for a parsed ``arg`` (``runlocal``, ``epochs``, ``batch``).

  `configs/train_textured_fmnist.py` starts from it and changes the model and data.
  """
  c = ml_collections.ConfigDict()
  c.model_name = "vit_fmnist_patch4_28"
  # Overrides of the named model's VisionTransformer fields (None: keep the registry's).
  c.model = ml_collections.ConfigDict(
    {k: placeholder(int) for k in ("depth", "width", "num_heads", "mlp_dim", "image_size",
                                   "patch_size")}
  )  # fmt: skip
  c.init = placeholder(str)  # checkpoint to fine-tune from (head re-initialised)
  c.num_classes = 10

  c.data = ml_collections.ConfigDict()
  c.data.data_dir = placeholder(str)  # None: committed test split / Debian / ~/.cache
  # False: accept IDX files that are not the original splits (subsets written by
  # `ztprune_jax.data.fashion_mnist.write_split`, e.g. in tests); no SHA-256 / size check.
  c.data.verify = True
  c.data.mean = FMNIST_MEAN
  c.data.std = FMNIST_STD
  c.data.num_train = placeholder(int)  # None: all 60000 (first n otherwise)
  c.data.num_test = placeholder(int)  # None: all 10000

  c.seed = 0
  c.batch_size = arg.batch
  c.num_epochs = arg.epochs
  c.learning_rate = 1e-3  # peak, reached after warm-up (our choice for batch 128)
  c.end_learning_rate = 1e-5
  c.warmup_epochs = 1
  c.weight_decay = 0.05
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.1
  c.augment = ml_collections.ConfigDict(dict(pad=2, flip=True))

  c.eval_batch_size = 1000
  c.eval_every_epochs = 1
  c.log_every_steps = 50

  c.keep_checkpoints = 2
  c.stop_after_epochs = placeholder(int)  # stop early (simulates an interruption; tests)
  c.export_file = "final.safetensors"  # written to --workdir at the end
  c.progress = True

  if arg.runlocal:
    c.model.update(dict(depth=2, width=32, num_heads=2, mlp_dim=64))
    c.data.num_train = 512
    c.data.num_test = 256
    c.batch_size = 64
    c.num_epochs = 2
    c.warmup_epochs = 1
    c.eval_batch_size = 128
    c.log_every_steps = 3  # windows that straddle epoch ends
    c.progress = False
  return c
