"""Token-pruning transforms: a schedule of pruning layers hooked into the Flax ViT.

A `TokenPruner` is a `models.TokenTransform` that, after each block named in its
schedule, asks `select` which tokens to keep and gathers them (static counts from the
`schedule.LayerPlan`s). Its state tracks, for every surviving token, its position in
the original sequence, so callers can plot which patches each layer kept.

Per-call inputs travel in `PruneArgs` through ``model.apply(..., transform_args=...)``:
they are traced, so sweeping a hyperparameter or reseeding does not recompile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ztprune_jax import keep
from ztprune_jax.layer import ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer
from ztprune_jax.models.hooks import BlockOutput, TokenTransform
from ztprune_jax.schedule import LayerPlan

__all__ = ["PruneArgs", "PruneState", "RandomDrop", "TokenPruner", "TopKClsAttn", "ZeroTPrune"]


class PruneArgs(NamedTuple):
  """Traced per-call inputs of a pruner.

  Attributes:
    hparams: method hyperparameters (`ZeroTPruneHParams` for Zero-TPrune), or None
      for the defaults.
    rng: PRNG key for random methods/partitions, or None.
  """

  hparams: Any = None
  rng: jax.Array | None = None


class PruneState(NamedTuple):
  """Pruner state threaded through the blocks.

  Attributes:
    pos: ``[B, N]`` int32 original position of every current token (0 is CLS).
    kept: one ``[B, P + K_l]`` array per applied pruning layer: original positions of
      the tokens that layer kept, in order.
    args: the call's `PruneArgs`.
  """

  pos: jax.Array
  kept: tuple[jax.Array, ...]
  args: PruneArgs


@dataclasses.dataclass(frozen=True)
class TokenPruner(TokenTransform):
  """Base class: hard-prunes tokens after the blocks in ``plans``.

  Attributes:
    plans: the schedule (one `LayerPlan` per pruning layer, Python ints).
    num_prefix: leading tokens never pruned (CLS, distillation).
  """

  plans: tuple[LayerPlan, ...] = ()
  num_prefix: int = 1

  def plan_for(self, layer: int) -> LayerPlan | None:
    for plan in self.plans:
      if plan.layer == layer:
        return plan
    return None

  def init_state(self, x, num_prefix, args=None) -> PruneState:
    if num_prefix != self.num_prefix:
      raise ValueError(
        f"{type(self).__name__} was built for num_prefix={self.num_prefix}, "
        f"but the model has {num_prefix} prefix tokens"
      )
    b, n, _ = x.shape
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    return PruneState(pos, (), PruneArgs() if args is None else PruneArgs(*args))

  def after_block(self, layer, x, out, state):
    plan = self.plan_for(layer)
    if plan is None or plan.is_noop:
      return x, state
    n = x.shape[1] - self.num_prefix
    if n != plan.num_patches_in:
      raise ValueError(
        f"Pruning layer after block {layer} expects {plan.num_patches_in} patch tokens, "
        f"got {n}; the schedule was built for another model/image size"
      )
    kept_idx = self.select(plan, x, out, state)  # [B, P + K]
    pos = jnp.take_along_axis(state.pos, kept_idx, axis=1)
    x = keep.gather_tokens(x, kept_idx)
    return x, state._replace(pos=pos, kept=(*state.kept, pos))

  def select(self, plan: LayerPlan, x, out: BlockOutput, state: PruneState) -> jax.Array:
    """Returns ``[B, P + plan.num_keep_i]`` sorted indices of the tokens to keep."""
    raise NotImplementedError


def _layer_key(args: PruneArgs, layer: int, who: str) -> jax.Array:
  if args.rng is None:
    raise ValueError(f"{who} needs a PRNG key: apply(..., transform_args=PruneArgs(rng=key))")
  return jax.random.fold_in(args.rng, layer)


@dataclasses.dataclass(frozen=True)
class ZeroTPrune(TokenPruner):
  """Zero-TPrune: an I′ → S → I pruning layer after each scheduled block.

  ``options.num_iters`` is replaced per layer by the plan's WPR iteration count.
  """

  options: ZeroTPruneOptions = ZeroTPruneOptions()

  def select(self, plan, x, out, state):
    options = dataclasses.replace(
      self.options, num_iters=plan.num_iters, num_prefix=self.num_prefix
    )
    args = state.args
    rng = (
      _layer_key(args, plan.layer, "partition='random'") if options.partition == "random" else None
    )
    hparams = ZeroTPruneHParams() if args.hparams is None else args.hparams
    res = zero_tprune_layer(
      x,
      out.attn,
      out,
      num_keep_s=plan.num_keep_s,
      num_keep_i=plan.num_keep_i,
      options=options,
      hparams=hparams,
      rng=rng,
    )
    return res.kept_idx


@dataclasses.dataclass(frozen=True)
class TopKClsAttn(TokenPruner):
  """EViT-style zero-shot baseline: keep the patches the CLS token attends to most.

  Scores are the head-mean of the CLS row of the block's attention (no fusion token).
  """

  def select(self, plan, x, out, state):
    scores = out.attn[:, :, 0, :].mean(axis=1)  # [B, N]
    return keep.topk_keep(scores, plan.num_keep_i, num_prefix=self.num_prefix)


@dataclasses.dataclass(frozen=True)
class RandomDrop(TokenPruner):
  """Baseline: keep a uniformly random subset of patches (seeded by `PruneArgs.rng`)."""

  def select(self, plan, x, out, state):
    key = _layer_key(state.args, plan.layer, "random pruning")
    scores = jax.random.uniform(key, x.shape[:2])  # [B, N]
    return keep.topk_keep(scores, plan.num_keep_i, num_prefix=self.num_prefix)
