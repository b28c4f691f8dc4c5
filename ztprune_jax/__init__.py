"""ztprune_jax: Zero-TPrune token pruning for Flax Vision Transformers.

Folders by role: `models/` (the ViT and its token-transform hooks), `checkpoints/`
(load/convert weights), `data/` (datasets and batching), `zero_tprune/` (the paper's
kernels: WPR, EIR/VHF, S-stage, the pruning layer, schedules), `pruning/` (the methods,
their registry `PRUNERS`, `prune`, `count_flops`, schedule search), `eval/` (the evaluation
harness and `eval_lib`, the config boundary) and `train/` (supervised training steps).
The names below are the public API; `zt.wpr`, `zt.tome`, `zt.evaluation`, ... are the
modules themselves.
"""

from ztprune_jax import data
from ztprune_jax.checkpoints import load_checkpoint, save_checkpoint
from ztprune_jax.eval import evaluation, fidelity
from ztprune_jax.eval.fidelity import final_tokens
from ztprune_jax.models import TokenTransform, VisionTransformer, create_model, list_models
from ztprune_jax.pruning import flops, tome
from ztprune_jax.pruning.pruners import PRUNERS, count_flops, get_pruner, prune, resolve_schedule
from ztprune_jax.pruning.search import (
  SearchResult,
  draw_schedules,
  sample_schedule,
  search_schedule,
)
from ztprune_jax.pruning.transforms import PruneArgs, PruneState
from ztprune_jax.zero_tprune import heads, keep, partition, schedule, wpr
from ztprune_jax.zero_tprune.heads import eir, head_pass_fraction, reduce_heads, vhf_mask
from ztprune_jax.zero_tprune.keep import gather_tokens, restrict_attention, topk_keep
from ztprune_jax.zero_tprune.layer import (
  PruneOutput,
  ZeroTPruneHParams,
  ZeroTPruneOptions,
  zero_tprune_layer,
)
from ztprune_jax.zero_tprune.partition import s_stage, select_feature, similarity
from ztprune_jax.zero_tprune.schedule import (
  PAPER_FINETUNE_KEEP_RATIOS,
  LayerPlan,
  keep_ratio_schedule,
  removal_schedule,
  tokens_per_block,
  tome_r_schedule,
  wpr_iters_by_depth,
)
from ztprune_jax.zero_tprune.wpr import weighted_pagerank

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
