"""ztprune_jax: Zero-TPrune token pruning for Flax Vision Transformers."""

from ztprune_jax.checkpoints import load_checkpoint, save_checkpoint
from ztprune_jax.models import VisionTransformer, create_model, list_models

__all__ = [
  "VisionTransformer",
  "create_model",
  "list_models",
  "load_checkpoint",
  "save_checkpoint",
]
