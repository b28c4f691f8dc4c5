"""ztprune_jax: Zero-TPrune token pruning for Flax Vision Transformers."""

from ztprune_jax.checkpoints import load_checkpoint, save_checkpoint
from ztprune_jax.layer import ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer
from ztprune_jax.models import TokenTransform, VisionTransformer, create_model, list_models
from ztprune_jax.pruners import PRUNERS, count_flops, get_pruner, prune, resolve_schedule
from ztprune_jax.schedule import LayerPlan
from ztprune_jax.transforms import PruneArgs, PruneState
from ztprune_jax.wpr import weighted_pagerank

__all__ = [
  "PRUNERS",
  "LayerPlan",
  "PruneArgs",
  "PruneState",
  "TokenTransform",
  "VisionTransformer",
  "ZeroTPruneHParams",
  "ZeroTPruneOptions",
  "count_flops",
  "create_model",
  "get_pruner",
  "list_models",
  "load_checkpoint",
  "prune",
  "resolve_schedule",
  "save_checkpoint",
  "weighted_pagerank",
  "zero_tprune_layer",
]
