"""Flax Vision Transformers (ViT, DeiT) with hooks for token pruning."""

from ztprune_jax.models.hooks import BlockOutput, TokenTransform
from ztprune_jax.models.posemb import bicubic_matrix, resample_pos_embed
from ztprune_jax.models.registry import MODEL_CONFIGS, create_model, list_models, model_config
from ztprune_jax.models.vit import Attention, Block, Embedding, Mlp, VisionTransformer

__all__ = [
  "MODEL_CONFIGS",
  "Attention",
  "Block",
  "BlockOutput",
  "Embedding",
  "Mlp",
  "TokenTransform",
  "VisionTransformer",
  "bicubic_matrix",
  "create_model",
  "list_models",
  "model_config",
  "resample_pos_embed",
]
