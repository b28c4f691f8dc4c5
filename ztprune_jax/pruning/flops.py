"""Multiply-accumulate counts of a (pruned) ViT, in the convention of Zero-TPrune's tables.

The paper's "GFLOPs" (DeiT-S: 4.55) are blocks-only multiply-accumulates, per image:
``Σ_l (12·N_l·d² + 2·N_l²·d)`` for MLP ratio 4, where ``N_l`` counts the tokens block
``l`` processes (prefix included) and ``d`` is the width. Per block: QKV ``3Nd²``,
output projection ``Nd²``, MLP ``2·N·d·d_mlp``, and ``QKᵀ`` plus ``AV`` ``2N²d``.
Layer norms, softmax, GELU and residual adds are not counted. Divide by ``1e9`` for the
tables' unit.

The functions take plain numbers, so a model-level ``count_flops(model, schedule)`` is a
thin wrapper that reads ``depth``, ``width``, ``mlp_dim``, ``num_heads``, ``patch_size``,
``image_size`` and ``num_prefix_tokens`` off the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ztprune_jax.zero_tprune import partition as partition_lib
from ztprune_jax.zero_tprune.schedule import LayerPlan

__all__ = [
  "BlockCounts",
  "block_macs",
  "count_flops",
  "pruning_overhead_macs",
  "schedule_overhead_macs",
  "wpr_macs",
]


class BlockCounts(NamedTuple):
  """What a token transform does to a model's cost: its hook for the model-level count.

  Every method's transform returns one from ``block_counts(model)``; `pruners.count_flops`
  turns it into MACs with `count_flops` below, so a new method needs no edit there.

  Attributes:
    tokens: ``depth`` ints, tokens each block's attention processes (prefix included).
    mlp_tokens: ``depth`` ints, tokens each block's MLP processes (fewer than ``tokens``
      only when a method merges inside the block, as ToMe does).
    overhead: MACs the method itself adds (Zero-TPrune's WPR and similarity, ToMe's
      matching); 0 for methods whose selection is not counted.
  """

  tokens: tuple[int, ...]
  mlp_tokens: tuple[int, ...]
  overhead: int = 0


def _mlp_dim(width: int, mlp_ratio: float) -> int:
  return int(round(width * mlp_ratio))


def block_macs(
  num_tokens: int, width: int, mlp_ratio: float = 4.0, num_mlp_tokens: int | None = None
) -> int:
  """MACs of one Transformer block on ``N`` tokens: ``(4 + 2·ratio)·N·d² + 2·N²·d``.

  Args:
    num_tokens: ``N``, tokens processed, prefix included.
    width: ``d``.
    mlp_ratio: MLP hidden size over ``d`` (4 gives the paper's ``12·N·d² + 2·N²·d``).
    num_mlp_tokens: tokens the MLP processes when fewer than ``N`` (ToMe merges
      between attention and MLP); None for ``N``.

  Returns:
    A Python int.
  """
  n, d = num_tokens, width
  n_mlp = n if num_mlp_tokens is None else num_mlp_tokens
  return 4 * n * d * d + 2 * n_mlp * d * _mlp_dim(d, mlp_ratio) + 2 * n * n * d


def wpr_macs(num_tokens: int, num_heads: int, num_iters: int) -> int:
  """MACs of ``num_iters`` WPR steps ``s ← Aᵀ s`` on ``H`` heads of ``N`` tokens."""
  return num_iters * num_heads * num_tokens * num_tokens


def pruning_overhead_macs(
  plan: LayerPlan,
  *,
  num_heads: int,
  width: int,
  num_prefix: int = 1,
  feature: str = "key",
  partition: str = "seq_u",
  rerun_wpr: bool = True,
  prime_iters: int | None = None,
) -> int:
  """Approximate MACs one Zero-TPrune pruning layer adds (WPR and similarity).

  Counts the I′ WPR on all ``N`` tokens, the head mean of the feature, the S-stage
  similarity matrix and the I-stage WPR re-run on the ``K`` survivors, mirroring
  ``layer.zero_tprune_layer``. Sorting, top-k and gathers are not counted.

  Args:
    plan: the layer's :class:`LayerPlan`.
    num_heads: ``H``.
    width: ``d``; head-mean features have ``d / H`` channels, the others ``d``.
    num_prefix: prefix tokens.
    feature: S-stage feature name.
    partition: S-stage partition.
    rerun_wpr: whether the I-stage re-runs WPR.
    prime_iters: I′ iterations; ``None`` means ``plan.num_iters``.

  Returns:
    A Python int.
  """
  if feature not in partition_lib.FEATURES:
    raise ValueError(f"Unknown feature {feature!r}; valid: {list(partition_lib.FEATURES)}")
  prime = plan.num_iters if prime_iters is None else prime_iters
  m = plan.num_patches_in
  n = num_prefix + m
  macs = wpr_macs(n, num_heads, prime)
  r_s = m - plan.num_keep_s
  if r_s > 0:
    head_mean = feature in ("key", "query", "value")
    c = width // num_heads if head_mean else width
    macs += n * width if head_mean else 0
    ma = m if partition == "full" else -(-m // 2)
    mb = m if partition == "full" else m - ma
    macs += ma * mb * c
  if rerun_wpr and (r_s > 0 or prime != plan.num_iters):
    macs += wpr_macs(num_prefix + plan.num_keep_s, num_heads, plan.num_iters)
  return macs


def schedule_overhead_macs(plans: Sequence[LayerPlan], **kwargs) -> int:
  """`pruning_overhead_macs` summed over a schedule's pruning layers (same keywords)."""
  return sum(pruning_overhead_macs(plan, **kwargs) for plan in plans)


def count_flops(
  depth: int,
  width: int,
  mlp_ratio: float,
  num_tokens_per_block: Sequence[int],
  *,
  num_heads: int | None = None,
  patch_size: int = 16,
  image_size: int = 224,
  in_chans: int = 3,
  num_classes: int = 1000,
  num_prefix: int = 1,
  pruning_layers: Sequence[LayerPlan] = (),
  feature: str = "key",
  partition: str = "seq_u",
  rerun_wpr: bool = True,
  prime_iters: int | None = None,
  num_mlp_tokens_per_block: Sequence[int] | None = None,
) -> dict:
  """MACs per image of a ViT whose block ``l`` processes ``num_tokens_per_block[l]`` tokens.

  Args:
    depth: number of blocks.
    width: ``d``.
    mlp_ratio: MLP hidden size over ``d``.
    num_tokens_per_block: ``depth`` ints, prefix included (``schedule.tokens_per_block``).
    num_heads: attention heads; needed only for the pruning overhead.
    patch_size: patch side in pixels.
    image_size: image side in pixels.
    in_chans: image channels.
    num_classes: classifier outputs (one head on one token).
    num_prefix: prefix tokens (for the overhead).
    pruning_layers: the schedule, for the pruning overhead; empty for none.
    feature: S-stage feature (for the overhead).
    partition: S-stage partition (for the overhead).
    rerun_wpr: whether the I-stage re-runs WPR (for the overhead).
    prime_iters: I′ iterations, ``None`` for each layer's ``num_iters`` (for the overhead).
    num_mlp_tokens_per_block: tokens each block's MLP processes, when fewer than its
      attention's (ToMe); None for the same counts.

  Returns:
    A dict of Python ints, all MACs (the paper's "GFLOPs" are ``blocks / 1e9``):
    ``blocks`` (the paper's number), ``per_block`` (tuple), ``patch_embed``, ``head``,
    ``total`` (blocks + patch embedding + head), ``overhead`` (pruning layers),
    ``total_with_overhead``, ``tokens`` and ``mlp_tokens`` (the counts used, tuples).

  Raises:
    ValueError: naming ``num_tokens_per_block`` or ``num_heads`` when inconsistent.
  """
  tokens = tuple(num_tokens_per_block)
  if len(tokens) != depth:
    raise ValueError(f"num_tokens_per_block has {len(tokens)} entries, expected depth={depth}")
  if any(not isinstance(n, int) or n < 1 for n in tokens):
    raise ValueError(f"num_tokens_per_block must hold positive ints, got {tokens}")
  if pruning_layers and num_heads is None:
    raise ValueError("num_heads is needed to count the pruning overhead")
  mlp_tokens = tokens if num_mlp_tokens_per_block is None else tuple(num_mlp_tokens_per_block)
  if len(mlp_tokens) != depth or any(
    not isinstance(m, int) or not 1 <= m <= n for m, n in zip(mlp_tokens, tokens, strict=True)
  ):
    raise ValueError(
      f"num_mlp_tokens_per_block must hold {depth} ints in [1, tokens of the block], "
      f"got {mlp_tokens} for {tokens}"
    )
  per_block = tuple(
    block_macs(n, width, mlp_ratio, m) for n, m in zip(tokens, mlp_tokens, strict=True)
  )
  blocks = sum(per_block)
  num_patches = (image_size // patch_size) ** 2
  patch_embed = num_patches * in_chans * patch_size * patch_size * width
  head = width * num_classes
  overhead = schedule_overhead_macs(
    pruning_layers,
    num_heads=num_heads,
    width=width,
    num_prefix=num_prefix,
    feature=feature,
    partition=partition,
    rerun_wpr=rerun_wpr,
    prime_iters=prime_iters,
  )
  total = blocks + patch_embed + head
  return {
    "blocks": blocks,
    "per_block": per_block,
    "patch_embed": patch_embed,
    "head": head,
    "total": total,
    "overhead": overhead,
    "total_with_overhead": total + overhead,
    "tokens": tokens,
    "mlp_tokens": mlp_tokens,
  }
