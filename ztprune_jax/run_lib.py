"""The boundary between ml_collections configs and the ztprune_jax kernels.

Only this module reads ConfigDicts (`configs/zero_tprune.py` layout); it turns them
into typed arguments for `create_model`, `prune` and `PruneArgs`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ztprune_jax.models.registry import create_model
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning.pruners import I_STAGE_ONLY, prune
from ztprune_jax.pruning.transforms import PruneArgs
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams

__all__ = ["build_model", "build_pruned", "prune_args", "schedule_from_config"]


def build_model(config) -> VisionTransformer:
  """The unpruned model named by ``config.model_name`` with ``config.model`` overrides."""
  return create_model(config.model_name, **config.model.to_dict())


def schedule_from_config(config) -> Any:
  """``config.schedule`` -> a schedule accepted by `prune` (r-mapping or keep ratios)."""
  s = config.schedule
  if (s.r is None) == (s.keep_ratios is None):
    raise ValueError("config.schedule needs exactly one of `r` or `keep_ratios`")
  if s.r is not None:
    out = {"r": int(s.r), "decreasing": bool(s.decreasing)}
    if s.layers is not None:
      out["layers"] = [int(x) for x in s.layers]
    return out
  return [tuple(entry) for entry in s.keep_ratios]


def build_pruned(config, model: VisionTransformer, method: str | None = None) -> VisionTransformer:
  """``model`` wrapped with ``method`` (default ``config.method``) as the config says."""
  method = method or config.method
  options: dict[str, Any] = {"wpr_iters": tuple(config.wpr_iters)}
  if method in I_STAGE_ONLY:
    options["s_fraction"] = 0.0
  else:
    options["s_fraction"] = float(config.s_fraction)
  if method not in ("random", "topk_cls_attn"):
    options.update(config.pruner.to_dict())  # ablation rungs override head_reduce/vhf
  return prune(model, method, schedule_from_config(config), **options)


def prune_args(config, rng=None) -> PruneArgs:
  """Traced `PruneArgs` from ``config.hparams`` and an optional PRNG key."""
  h = config.hparams
  hparams = ZeroTPruneHParams(
    v_range=tuple(jnp.float32(v) for v in h.v_range),
    cls_value=jnp.float32(h.cls_value),
    tol=jnp.float32(h.tol),
  )
  return PruneArgs(hparams=hparams, rng=rng)
