"""Checkpoint loading/saving for timm, Hugging Face, big_vision and our own files."""

from ztprune_jax.checkpoints.convert import LAYOUTS, detect_layout
from ztprune_jax.checkpoints.formats import FORMATS, detect_format, read_tensors
from ztprune_jax.checkpoints.io import expected_shapes, load_checkpoint, save_checkpoint

__all__ = [
  "FORMATS",
  "LAYOUTS",
  "detect_format",
  "detect_layout",
  "expected_shapes",
  "load_checkpoint",
  "read_tensors",
  "save_checkpoint",
]
