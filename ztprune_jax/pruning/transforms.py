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
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from ztprune_jax.models.hooks import BlockOutput, TokenTransform
from ztprune_jax.pruning import flops
from ztprune_jax.zero_tprune import keep
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer
from ztprune_jax.zero_tprune.schedule import LayerPlan, tokens_per_block

if TYPE_CHECKING:
  from ztprune_jax.models.vit import VisionTransformer

__all__ = [
  "PLACEMENTS",
  "AtsLike",
  "PruneArgs",
  "PruneState",
  "RandomDrop",
  "TokenPruner",
  "TopKClsAttn",
  "ZeroTPrune",
]


# Where a pruning layer sits in its block: after the MLP residual (the spec's default
# reading of Zero-TPrune) or between the attention and the MLP (EViT's and ATS's place).
PLACEMENTS = ("after_block", "after_attention")


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
    bias: ``[B, N]`` additive attention-logit bias on keys (``ats_like`` masks its
      duplicate samples with it), or None.
  """

  pos: jax.Array
  kept: tuple[jax.Array, ...]
  args: PruneArgs
  bias: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class TokenPruner(TokenTransform):
  """Base class: hard-prunes tokens in the blocks named by ``plans``.

  Attributes:
    plans: the schedule (one `LayerPlan` per pruning layer, Python ints).
    num_prefix: leading tokens never pruned (CLS, distillation).
    placement: keyword-only, one of `PLACEMENTS`. ``"after_block"`` (default) prunes
      after the block's MLP residual; ``"after_attention"`` prunes between the attention
      residual and the MLP, so that block's MLP already runs on the kept tokens (EViT,
      ATS). Either way the layer reads the block's attention and keys.
  """

  plans: tuple[LayerPlan, ...] = ()
  num_prefix: int = 1
  placement: str = dataclasses.field(default="after_block", kw_only=True)

  def __post_init__(self):
    if self.placement not in PLACEMENTS:
      raise ValueError(f"Unknown placement {self.placement!r}; valid: {list(PLACEMENTS)}")

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

  def attn_bias(self, layer, state):
    del layer
    return state.bias

  def has_fused_token(self, layer: int) -> bool:
    """Whether a fusion token (EViT) enters block ``layer + 1``; False for plain pruners."""
    del layer
    return False

  def block_counts(self, model: VisionTransformer) -> flops.BlockCounts:
    """Tokens each block of ``model`` processes under ``plans``, for `pruners.count_flops`.

    A fusion token (EViT) adds one token to the blocks after its first layer; with
    ``placement="after_attention"`` a pruning block's MLP runs on the tokens it keeps;
    the overhead is `overhead_macs`.
    """
    tokens = tokens_per_block(
      self.plans, depth=model.depth, num_patches=model.num_patches,
      num_prefix=model.num_prefix_tokens,
    )  # fmt: skip
    tokens = tuple(n + int(self.has_fused_token(i - 1)) for i, n in enumerate(tokens))
    mlp = list(tokens)
    if self.placement == "after_attention":  # a pruning block's MLP sees the kept tokens
      for plan in self.plans:
        if not plan.is_noop:
          fused = int(self.has_fused_token(plan.layer))
          mlp[plan.layer] = model.num_prefix_tokens + plan.num_keep_i + fused
    return flops.BlockCounts(tokens, tuple(mlp), self.overhead_macs(model))

  def overhead_macs(self, model: VisionTransformer) -> int:
    """MACs of the pruning layers' own scoring; 0 here (selection is not counted)."""
    del model
    return 0

  def _check_tokens(self, layer: int, plan: LayerPlan, x: jax.Array, extra: int = 0) -> None:
    n = x.shape[1] - self.num_prefix - extra
    if n != plan.num_patches_in:
      raise ValueError(
        f"Pruning layer after block {layer} expects {plan.num_patches_in} patch tokens, "
        f"got {n}; the schedule was built for another model/image size"
      )

  def after_attention(self, layer, x, out, state):
    if self.placement != "after_attention":
      return x, state
    return self.prune_tokens(layer, x, out, state)

  def after_block(self, layer, x, out, state):
    if self.placement != "after_block":
      return x, state
    return self.prune_tokens(layer, x, out, state)

  def prune_tokens(self, layer, x, out: BlockOutput, state: PruneState):
    """The pruning layer of block ``layer`` (identity where it has no plan), at `placement`.

    Args: ``x [B, N, D]`` tokens, ``out`` the block's `BlockOutput`, ``state``.
    Returns: ``(x [B, P + K, D], state)`` with the layer's kept positions appended.
    """
    plan = self.plan_for(layer)
    if plan is None or plan.is_noop:
      return x, state
    self._check_tokens(layer, plan, x)
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

  def overhead_macs(self, model: VisionTransformer) -> int:
    """WPR and similarity MACs of every pruning layer (`flops.pruning_overhead_macs`)."""
    o = self.options
    return flops.schedule_overhead_macs(
      self.plans, num_heads=model.num_heads, width=model.width,
      num_prefix=model.num_prefix_tokens, feature=o.feature, partition=o.partition,
      rerun_wpr=o.rerun_wpr, prime_iters=o.prime_iters,
    )  # fmt: skip

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

  Liang et al., "Not All Patches are What You Need: Expediting Vision Transformers via
  Token Reorganizations" (EViT), ICLR 2022. Scores are the head-mean of the CLS row of
  the block's attention. With ``fuse_token``, the patches not kept are fused into one
  extra token appended last, ``Σ_j a_j x_j`` with ``a_j`` their CLS attention (EViT's
  unnormalised weighting); a later layer ranks an earlier fusion token like any patch.
  Departure from EViT by default: the layer sits after the block's MLP (the registry's
  default `placement`); ``placement="after_attention"`` is EViT's place.

  Attributes:
    fuse_token: append the fusion token (output ``P + K + 1`` tokens; its ``pos`` is -1).
  """

  fuse_token: bool = False

  def select(self, plan, x, out, state):
    scores = out.attn[:, :, 0, :].mean(axis=1)  # [B, N]
    return keep.topk_keep(scores, plan.num_keep_i, num_prefix=self.num_prefix)

  def has_fused_token(self, layer):
    return self.fuse_token and any(p.layer <= layer and not p.is_noop for p in self.plans)

  def prune_tokens(self, layer, x, out, state):
    if not self.fuse_token:
      return super().prune_tokens(layer, x, out, state)
    plan = self.plan_for(layer)
    if plan is None or plan.is_noop:
      return x, state
    self._check_tokens(layer, plan, x, extra=int(self.has_fused_token(layer - 1)))
    p = self.num_prefix
    cls_attn = out.attn[:, :, 0, :].mean(axis=1)  # [B, N]
    kept_idx = keep.topk_keep(cls_attn, plan.num_keep_i, num_prefix=p)  # [B, P + K]
    dropped = jnp.ones(x.shape[:2], x.dtype)  # [B, N]
    dropped = jax.vmap(lambda d, i: d.at[i].set(0))(dropped, kept_idx)
    w = (cls_attn.astype(x.dtype) * dropped)[:, p:]  # [B, M]
    fused = jnp.einsum("bm,bmd->bd", w, x[:, p:])[:, None]  # [B, 1, D]
    pos = jnp.take_along_axis(state.pos, kept_idx, axis=1)
    pos = jnp.concatenate([pos, jnp.full((x.shape[0], 1), -1, pos.dtype)], axis=1)
    x = jnp.concatenate([keep.gather_tokens(x, kept_idx), fused], axis=1)
    return x, state._replace(pos=pos, kept=(*state.kept, pos))


# Additive logit bias that masks a duplicate sample out of every later attention.
_MASKED = -1e9


@dataclasses.dataclass(frozen=True)
class AtsLike(TokenPruner):
  """ATS-like baseline: significance sampling by inverse transform, static shapes.

  Fayyaz et al., "Adaptive Token Sampling for Efficient Vision Transformers" (ATS),
  ECCV 2022. Significance of patch ``j`` is ``Σ_h A_h[0, j] · ‖V_j‖`` (CLS attention
  times the norm of its value, concatenated over heads), normalised over the patches.
  Sorting patches by significance, the layer draws ``K = plan.num_keep_i`` samples by
  inverse transform sampling of the cumulative distribution at the evenly spaced
  points ``(k + 1/2) / K``; a patch drawn more than once is kept once.

  Departures from ATS, all for static shapes: the ``K`` slots stay allocated, the
  duplicate slots are masked out of every later attention by a ``-1e9`` logit bias (so
  they cost compute but change no other token; with ``global_pool="avg"`` they still
  weigh in the average); ATS's sampling points run from the first non-zero CDF value
  to 1 and pick the nearest CDF point, ours are midpoints with the CDF's inverse; ATS
  samples inside the attention (dropping query rows), ours after the block's MLP (or
  after its attention residual with ``placement="after_attention"``).

  Consequence for comparisons: FLOPs are charged per slot, while ATS reports its cost
  on the distinct tokens. Significance is peaked (a few patches hold most of it), so
  a few patches take most of the ``K`` samples and far fewer distinct tokens survive
  than slots, fewer at each later layer; at a matched slot budget it therefore trails
  the methods that keep ``K`` distinct tokens.
  """

  def prune_tokens(self, layer, x, out, state):
    plan = self.plan_for(layer)
    if plan is None or plan.is_noop:
      return x, state
    self._check_tokens(layer, plan, x)
    p, k = self.num_prefix, plan.num_keep_i
    b, n, _ = x.shape
    v_norm = jnp.linalg.norm(out.values.transpose(0, 2, 1, 3).reshape(b, n, -1), axis=-1)
    s = (out.attn[:, :, 0, :].sum(axis=1) * v_norm)[:, p:]  # [B, M]
    if state.bias is not None:  # earlier duplicates carry no mass
      s = jnp.where(state.bias[:, p:] < 0, 0.0, s)
    s = s / jnp.maximum(s.sum(axis=-1, keepdims=True), 1e-30)
    order = jnp.argsort(s, axis=-1).astype(jnp.int32)  # ascending significance
    cdf = jnp.cumsum(jnp.take_along_axis(s, order, axis=-1), axis=-1)  # [B, M]
    u = (jnp.arange(k, dtype=cdf.dtype) + 0.5) / k  # [K]
    j = jax.vmap(lambda c: jnp.searchsorted(c, u, side="left"))(cdf)  # [B, K]
    picked = jnp.take_along_axis(order, jnp.minimum(j, n - p - 1), axis=-1)
    picked = jnp.sort(picked, axis=-1) + p  # [B, K], original order, repeats adjacent
    dup = jnp.concatenate([jnp.zeros((b, 1), bool), picked[:, 1:] == picked[:, :-1]], axis=1)
    kept_idx = jnp.concatenate([keep.prefix_indices(b, p), picked], axis=1)  # [B, P + K]
    bias = jnp.concatenate([jnp.zeros((b, p), jnp.float32), jnp.where(dup, _MASKED, 0.0)], 1)
    pos = jnp.take_along_axis(state.pos, kept_idx, axis=1)
    x = keep.gather_tokens(x, kept_idx)
    return x, state._replace(pos=pos, kept=(*state.kept, pos), bias=bias)


@dataclasses.dataclass(frozen=True)
class RandomDrop(TokenPruner):
  """Baseline: keep a uniformly random subset of patches (seeded by `PruneArgs.rng`)."""

  def select(self, plan, x, out, state):
    key = _layer_key(state.args, plan.layer, "random pruning")
    scores = jax.random.uniform(key, x.shape[:2])  # [B, N]
    return keep.topk_keep(scores, plan.num_keep_i, num_prefix=self.num_prefix)
