"""Named model configurations and `create_model`.

Names follow timm so that a timm checkpoint and the model built here agree on sizes.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from ztprune_jax.models.vit import VisionTransformer

_SIZES = {
  "tiny": dict(width=192, num_heads=3, mlp_dim=768),
  "small": dict(width=384, num_heads=6, mlp_dim=1536),
  "base": dict(width=768, num_heads=12, mlp_dim=3072),
}


def _cfg(size: str, **kw) -> dict[str, Any]:
  return {
    "depth": 12,
    "patch_size": 16,
    "image_size": 224,
    "num_classes": 1000,
    **_SIZES[size],
    **kw,
  }


MODEL_CONFIGS: dict[str, dict[str, Any]] = {
  "deit_tiny_patch16_224": _cfg("tiny"),
  "deit_small_patch16_224": _cfg("small"),
  "deit_base_patch16_224": _cfg("base"),
  "deit_tiny_distilled_patch16_224": _cfg("tiny", dist_token=True),
  "deit_small_distilled_patch16_224": _cfg("small", dist_token=True),
  "deit_base_distilled_patch16_224": _cfg("base", dist_token=True),
  # AugReg ViTs share the architecture; their weights come from big_vision/timm.
  "vit_tiny_patch16_224": _cfg("tiny"),
  "vit_small_patch16_224": _cfg("small"),
  "vit_base_patch16_224": _cfg("base"),
  "vit_base_patch16_384": _cfg("base", image_size=384),
  # DINOv2 ViT-S/14 backbone (22.06 M params; HF Dinov2Model, no registers): 37x37 grid,
  # LayerScale, features instead of logits. Weights: experiments/convert_dinov2.py.
  # Other image sizes resample the grid like HF (bicubic, no antialias).
  "dinov2_vits14": _cfg(
    "small",
    patch_size=14,
    image_size=518,
    num_classes=0,
    layerscale_init=1.0,
    pos_embed_antialias=False,
  ),
  # This project's own default model (trained on Fashion-MNIST, grey 28x28; see
  # models/vit_fmnist/MODEL_CARD.md): patch 4 -> 49 patches + CLS.
  "vit_fmnist_patch4_28": dict(
    depth=6,
    patch_size=4,
    image_size=28,
    num_classes=10,
    in_channels=1,
    width=128,
    num_heads=4,
    mlp_dim=256,
  ),  # fmt: skip
  # The default model's shape at 96 px RGB, patch 8 -> 144 patches + CLS, for textured
  # Fashion-MNIST (ztprune_jax/data/textured_fmnist.py; configs/train_textured_fmnist.py).
  "vit_textured_patch8_96": dict(
    depth=6,
    patch_size=8,
    image_size=96,
    num_classes=10,
    in_channels=3,
    width=128,
    num_heads=4,
    mlp_dim=256,
  ),  # fmt: skip
}


def list_models() -> list[str]:
  """Names accepted by `create_model`."""
  return sorted(MODEL_CONFIGS)


def model_config(name: str, **overrides) -> dict[str, Any]:
  """Returns the keyword arguments of `VisionTransformer` for ``name`` + overrides."""
  if name not in MODEL_CONFIGS:
    close = difflib.get_close_matches(name, MODEL_CONFIGS, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} Known models: {list_models()}")
  fields = {f.name for f in dataclasses.fields(VisionTransformer)} - {"parent", "name"}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"Unknown VisionTransformer field(s) {unknown}; valid: {sorted(fields)}")
  return {**MODEL_CONFIGS[name], **overrides}


def create_model(name: str, **overrides) -> VisionTransformer:
  """Builds a named ViT/DeiT, e.g. ``create_model("deit_small_patch16_224", depth=2)``.

  Args:
    name: one of `list_models()`.
    **overrides: any `VisionTransformer` field (``num_classes``, ``image_size``,
      ``depth``, ``dtype``, ...).

  Returns:
    An unbound `VisionTransformer`; initialise with ``model.init(key, images)`` or
    load weights with `ztprune_jax.load_checkpoint`.
  """
  return VisionTransformer(**model_config(name, **overrides))
