"""ztprune_jax: Zero-TPrune token pruning for Flax Vision Transformers."""

from ztprune_jax import (
  data,
  evaluation,
  fidelity,
  flops,
  heads,
  keep,
  partition,
  schedule,
  tome,
  wpr,
)
from ztprune_jax.checkpoints import load_checkpoint, save_checkpoint
from ztprune_jax.fidelity import final_tokens
from ztprune_jax.heads import eir, head_pass_fraction, reduce_heads, vhf_mask
from ztprune_jax.keep import gather_tokens, restrict_attention, topk_keep
from ztprune_jax.layer import PruneOutput, ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer
from ztprune_jax.models import TokenTransform, VisionTransformer, create_model, list_models
from ztprune_jax.partition import s_stage, select_feature, similarity
from ztprune_jax.pruners import PRUNERS, count_flops, get_pruner, prune, resolve_schedule
from ztprune_jax.schedule import (
  PAPER_FINETUNE_KEEP_RATIOS,
  LayerPlan,
  keep_ratio_schedule,
  removal_schedule,
  tokens_per_block,
  tome_r_schedule,
  wpr_iters_by_depth,
)
from ztprune_jax.search import SearchResult, draw_schedules, sample_schedule, search_schedule
from ztprune_jax.transforms import PruneArgs, PruneState
from ztprune_jax.wpr import weighted_pagerank

__all__ = [
  "PAPER_FINETUNE_KEEP_RATIOS",
  "PRUNERS",
  "LayerPlan",
  "PruneArgs",
  "PruneOutput",
  "PruneState",
  "SearchResult",
  "TokenTransform",
  "VisionTransformer",
  "ZeroTPruneHParams",
  "ZeroTPruneOptions",
  "count_flops",
  "data",
  "evaluation",
  "create_model",
  "draw_schedules",
  "eir",
  "fidelity",
  "final_tokens",
  "flops",
  "gather_tokens",
  "get_pruner",
  "head_pass_fraction",
  "heads",
  "keep",
  "keep_ratio_schedule",
  "list_models",
  "load_checkpoint",
  "partition",
  "prune",
  "reduce_heads",
  "removal_schedule",
  "resolve_schedule",
  "restrict_attention",
  "s_stage",
  "sample_schedule",
  "save_checkpoint",
  "schedule",
  "search_schedule",
  "select_feature",
  "similarity",
  "tokens_per_block",
  "tome",
  "tome_r_schedule",
  "topk_keep",
  "vhf_mask",
  "weighted_pagerank",
  "wpr",
  "wpr_iters_by_depth",
  "zero_tprune_layer",
]
