"""DeiT/timm evaluation preprocessing with PIL: resize the shorter side, center crop, normalise.

timm evaluates at ``image_size`` after resizing the shorter side to
``floor(image_size / crop_pct)`` with PIL bicubic (antialiased) resampling and cropping the
center. DeiT and the AugReg ViTs in timm have ``crop_pct = 0.9``: 224 / 0.9 -> 248, the
"resize to 248" of the DeiT recipe; ``vit_base_patch16_384`` has ``crop_pct = 1.0`` (no
crop). `MODEL_PREPROCESS` records each model's numbers as timm's ``pretrained_cfg`` gives
them (timm 1.0.31, read with ``timm.create_model(name).pretrained_cfg``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
  "FASHION_MNIST_MEAN",
  "FASHION_MNIST_STD",
  "IMAGENET_MEAN",
  "IMAGENET_STD",
  "INCEPTION_MEAN",
  "INCEPTION_STD",
  "MODEL_PREPROCESS",
  "EvalTransform",
  "model_preprocess",
  "resize_size",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # timm's AugReg ViTs
INCEPTION_STD = (0.5, 0.5, 0.5)
# Pixel mean/std (in [0, 1]) of the 60k Fashion-MNIST training images, our measurement:
# `load_fashion_mnist("train")[0] / 255` -> mean 0.28604, std 0.35302.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

_DEIT = dict(crop_pct=0.9, mean=IMAGENET_MEAN, std=IMAGENET_STD)
_AUGREG = dict(crop_pct=0.9, mean=INCEPTION_MEAN, std=INCEPTION_STD)
MODEL_PREPROCESS: dict[str, dict] = {
  **{
    f"deit_{s}{d}_patch16_224": _DEIT for s in ("tiny", "small", "base") for d in ("", "_distilled")
  },
  **{f"vit_{s}_patch16_224": _AUGREG for s in ("tiny", "small", "base")},
  "vit_base_patch16_384": {**_AUGREG, "crop_pct": 1.0},
  # Our Fashion-MNIST model sees the 28x28 images as they are.
  "vit_fmnist_patch4_28": dict(crop_pct=1.0, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD),
  # Textured Fashion-MNIST (96 px RGB composites, used whole), normalised as DeiT is
  # (configs/train_textured_fmnist.py trains with these).
  "vit_textured_patch8_96": dict(crop_pct=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


def model_preprocess(name: str) -> dict:
  """``crop_pct``, ``mean``, ``std`` of a model name (DeiT's values for unknown names)."""
  return dict(MODEL_PREPROCESS.get(name, _DEIT))


def resize_size(image_size: int, crop_pct: float) -> int:
  """Shorter side before the center crop, as timm computes it: ``floor(size / crop_pct)``."""
  if not 0.0 < crop_pct <= 1.0:
    raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]")
  return int(math.floor(image_size / crop_pct))


@dataclasses.dataclass(frozen=True)
class EvalTransform:
  """PIL image -> float32 ``[image_size, image_size, channels]``, normalised.

  Attributes:
    image_size: side of the center crop.
    crop_pct: crop over resized shorter side (see `resize_size`).
    mean, std: per-channel normalisation of ``[0, 1]`` pixels (1 or ``channels`` entries).
    channels: 3 (RGB) or 1 (grey).
    interpolation: PIL resampling of the resize, ``"bicubic"`` (timm's) or ``"bilinear"``.
  """

  image_size: int = 224
  crop_pct: float = 0.9
  mean: Sequence[float] = IMAGENET_MEAN
  std: Sequence[float] = IMAGENET_STD
  channels: int = 3
  interpolation: str = "bicubic"

  def __post_init__(self):
    if self.channels not in (1, 3):
      raise ValueError(f"channels={self.channels} must be 1 or 3")
    if len(self.mean) not in (1, self.channels) or len(self.std) != len(self.mean):
      raise ValueError(f"mean/std need 1 or {self.channels} entries: {self.mean}, {self.std}")
    if self.interpolation not in _RESAMPLE:
      raise ValueError(f"interpolation={self.interpolation!r}; valid: {sorted(_RESAMPLE)}")
    if self.image_size < 1:
      raise ValueError(f"image_size={self.image_size} must be >= 1")
    resize_size(self.image_size, self.crop_pct)  # validates crop_pct

  @property
  def resize(self) -> int:
    return resize_size(self.image_size, self.crop_pct)

  def resize_and_crop(self, image: Image.Image) -> Image.Image:
    """Resize the shorter side to `resize` (aspect kept), then center crop `image_size`."""
    image = image.convert("RGB" if self.channels == 3 else "L")
    w, h = image.size
    short, long_ = (w, h) if w <= h else (h, w)
    size = self.resize
    if short != size:  # the long side is truncated, as torchvision's Resize does
      new_long = int(size * long_ / short)
      new = (size, new_long) if w <= h else (new_long, size)
      image = image.resize(new, _RESAMPLE[self.interpolation])
    w, h = image.size
    s = self.image_size
    if s > w or s > h:
      raise ValueError(f"crop {s} is larger than the resized image {w}x{h}")
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    return image.crop((left, top, left + s, top + s))

  def normalize(self, pixels: np.ndarray) -> np.ndarray:
    """uint8 ``[..., H, W, C]`` -> normalised float32 of the same shape."""
    x = np.asarray(pixels, np.float32) / 255.0
    mean = np.asarray(self.mean, np.float32)
    std = np.asarray(self.std, np.float32)
    return (x - mean) / std

  def __call__(self, image: Image.Image) -> np.ndarray:
    """Returns ``[image_size, image_size, channels]`` float32."""
    pixels = np.asarray(self.resize_and_crop(image), np.uint8)
    if pixels.ndim == 2:
      pixels = pixels[:, :, None]
    return self.normalize(pixels)


_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
