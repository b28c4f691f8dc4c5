"""Pruning schedules: where pruning layers sit and how many tokens each keeps.

Everything here runs on the host and returns Python ints, so the pruned model's shapes
are fixed at trace time. A schedule is a tuple of :class:`LayerPlan`, one per pruning
layer, sorted by block.

Block indices are **0-indexed**: the paper's "after blocks 3, 6, 9" (1-indexed) is
``(2, 5, 8)`` here (see :data:`PAPER_FINETUNE_KEEP_RATIOS`). Counts are patch tokens;
prefix tokens (CLS, distillation) are never pruned and come on top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from ztprune_jax.zero_tprune import partition as partition_lib

__all__ = [
  "DEFAULT_S_FRACTION",
  "DEFAULT_WPR_ITERS",
  "PAPER_FINETUNE_KEEP_RATIOS",
  "LayerPlan",
  "keep_ratio_schedule",
  "removal_schedule",
  "split_budget",
  "tokens_per_block",
  "tome_r_schedule",
  "wpr_iters_by_depth",
]

# The paper's fine-tuning comparison: after blocks 3/6/9 (1-indexed), keep 0.9/0.8/0.7 of
# the remaining patch tokens (DeiT-S: 196 -> 176 -> 140 -> 98).
PAPER_FINETUNE_KEEP_RATIOS = ((2, 0.9), (5, 0.8), (8, 0.7))

# WPR iterations for (first three blocks, middle blocks, last three blocks). The paper
# gives ranges 30-50 / 5-10 / 1; we take the low end of each (cheapest; also the
# setting the spec's measurements on DINOv2 ViT-S/14 used). Our choice.
DEFAULT_WPR_ITERS = (30, 5, 1)

# Share of each layer's removals made by the S-stage. The paper searched the split per
# model and does not print it; an even split is our default.
DEFAULT_S_FRACTION = 0.5

_ROUNDINGS = ("floor", "round")
_EPS = 1e-9  # guards floor() against 0.7 * 140 = 97.99999999999999-style float error


class LayerPlan(NamedTuple):
  """One pruning layer, resolved to Python ints.

  Attributes:
    layer: 0-indexed block after which the pruning layer sits.
    num_patches_in: patch tokens entering the pruning layer.
    num_keep_s: patch tokens surviving the S-stage.
    num_keep_i: patch tokens leaving the layer (surviving the I-stage).
    num_iters: WPR iterations of the I-stage at this depth.
  """

  layer: int
  num_patches_in: int
  num_keep_s: int
  num_keep_i: int
  num_iters: int

  @property
  def num_remove(self) -> int:
    """Patch tokens this layer removes (S plus I)."""
    return self.num_patches_in - self.num_keep_i

  @property
  def is_noop(self) -> bool:
    """Whether the layer keeps every token."""
    return self.num_remove == 0


def wpr_iters_by_depth(
  layer: int,
  depth: int,
  iters: int | Sequence[int] = DEFAULT_WPR_ITERS,
  *,
  num_edge: int = 3,
) -> int:
  """WPR iterations for a pruning layer after block ``layer`` (Zero-TPrune, I-stage).

  The paper's rule: many iterations in the first three blocks (30–50; attention there
  is diffuse and WPR converges slowly), few in the middle (5–10), one in the last three.
  Where the first and last ``num_edge`` blocks overlap (depth < 2·num_edge) the first
  rule wins.

  Args:
    layer: 0-indexed block.
    depth: number of blocks.
    iters: ``(early, middle, late)`` iteration counts, or one int for every depth.
    num_edge: how many blocks count as "first" and "last".

  Returns:
    A Python int.

  Raises:
    ValueError: naming ``layer`` or ``iters`` when invalid.
  """
  _check_layer(layer, depth)
  if isinstance(iters, int):
    iters = (iters, iters, iters)
  if len(iters) != 3 or any(not isinstance(i, int) or i < 0 for i in iters):
    raise ValueError(f"iters must be an int or (early, middle, late) ints >= 0, got {iters!r}")
  early, middle, late = iters
  if layer < num_edge:
    return early
  if layer >= depth - num_edge:
    return late
  return middle


def split_budget(
  num_patches_in: int,
  num_remove: int,
  s_fraction: float = DEFAULT_S_FRACTION,
  *,
  partition: str = "seq_u",
) -> tuple[int, int]:
  """Splits one layer's removals between the S- and I-stage.

  ``r_S = round(s_fraction · r)`` (halves round up), ``r_I = r − r_S``.

  Args:
    num_patches_in: patch tokens entering the layer, ``M``.
    num_remove: patch tokens to remove in total, ``r``.
    s_fraction: share of ``r`` removed by the S-stage, in ``[0, 1]``.
    partition: S-stage partition; bounds ``r_S`` (see ``partition.max_removable``).

  Returns:
    ``(num_keep_s, num_keep_i)`` patch-token counts.

  Raises:
    ValueError: naming ``s_fraction``, ``num_remove`` or ``partition``.
  """
  if not 0 <= num_remove <= num_patches_in:
    raise ValueError(f"num_remove={num_remove} must lie in [0, {num_patches_in}] (patch tokens)")
  if not 0.0 <= s_fraction <= 1.0:
    raise ValueError(f"s_fraction={s_fraction!r} must lie in [0, 1]")
  r_s = math.floor(s_fraction * num_remove + 0.5)
  cap = partition_lib.max_removable(num_patches_in, partition)
  if r_s > cap:
    raise ValueError(
      f"s_fraction={s_fraction} asks the S-stage to remove {r_s} of {num_patches_in} patch "
      f"tokens, more than partition={partition!r} allows ({cap})"
    )
  return num_patches_in - r_s, num_patches_in - num_remove


def removal_schedule(
  removals: Sequence[Sequence[float]],
  *,
  depth: int,
  num_patches: int,
  s_fraction: float = DEFAULT_S_FRACTION,
  partition: str = "seq_u",
  wpr_iters: int | Sequence[int] = DEFAULT_WPR_ITERS,
) -> tuple[LayerPlan, ...]:
  """A schedule from tokens removed per layer: ``[(layer, r), ...]`` or ``(layer, r, s_frac)``.

  Args:
    removals: per pruning layer, the 0-indexed block, the number of patch tokens to
      remove, and optionally that layer's ``s_fraction``.
    depth: number of blocks.
    num_patches: patch tokens entering the first block.
    s_fraction: default share of removals made by the S-stage.
    partition: S-stage partition (bounds the S-stage's removals).
    wpr_iters: per-depth iteration rule, see :func:`wpr_iters_by_depth`.

  Returns:
    Tuple of :class:`LayerPlan`, sorted by layer.

  Raises:
    ValueError: naming the bad option (``layer``, ``r``, ``s_fraction``, ``partition``).
  """
  if partition not in partition_lib.PARTITIONS:
    raise ValueError(f"Unknown partition {partition!r}; valid: {list(partition_lib.PARTITIONS)}")
  entries = _sorted_entries(removals, depth)
  plans, m = [], num_patches
  for entry in entries:
    layer, r = entry[0], entry[1]
    frac = entry[2] if len(entry) == 3 else s_fraction
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
      raise ValueError(f"r={r!r} at layer {layer} must be a non-negative int")
    if r >= m:
      raise ValueError(
        f"r={r} at layer {layer} removes more tokens than exist: {m} patch tokens remain "
        "and at least one must be kept"
      )
    keep_s, keep_i = split_budget(m, r, frac, partition=partition)
    plans.append(LayerPlan(layer, m, keep_s, keep_i, wpr_iters_by_depth(layer, depth, wpr_iters)))
    m = keep_i
  return tuple(plans)


def keep_ratio_schedule(
  keep_ratios: Sequence[Sequence[float]],
  *,
  depth: int,
  num_patches: int,
  s_fraction: float = DEFAULT_S_FRACTION,
  partition: str = "seq_u",
  rounding: str = "floor",
  wpr_iters: int | Sequence[int] = DEFAULT_WPR_ITERS,
) -> tuple[LayerPlan, ...]:
  """A schedule from keep ratios: ``[(layer, keep_ratio), ...]`` or ``(layer, ratio, s_frac)``.

  Each ratio applies to the patch tokens *remaining* at that layer; the kept count is
  ``floor(ratio · M)`` by default, which reproduces the paper's DeiT-S numbers
  (196 → 176 → 140 → 98 for :data:`PAPER_FINETUNE_KEEP_RATIOS`).

  Args:
    keep_ratios: per pruning layer, the 0-indexed block, the keep ratio in ``(0, 1]``,
      and optionally that layer's ``s_fraction``.
    depth: number of blocks.
    num_patches: patch tokens entering the first block.
    s_fraction: default share of removals made by the S-stage (our default: 0.5).
    partition: S-stage partition (bounds the S-stage's removals).
    rounding: ``"floor"`` (default) or ``"round"`` for the kept count.
    wpr_iters: per-depth iteration rule, see :func:`wpr_iters_by_depth`.

  Returns:
    Tuple of :class:`LayerPlan`, sorted by layer.

  Raises:
    ValueError: naming the bad option (``keep_ratio``, ``layer``, ``s_fraction``,
      ``rounding``, ``partition``).
  """
  if rounding not in _ROUNDINGS:
    raise ValueError(f"Unknown rounding {rounding!r}; valid: {list(_ROUNDINGS)}")
  entries = _sorted_entries(keep_ratios, depth)
  removals, m = [], num_patches
  for entry in entries:
    layer, ratio = entry[0], entry[1]
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio <= 1.0:
      raise ValueError(f"keep_ratio={ratio!r} at layer {layer} must lie in (0, 1]")
    kept = math.floor(ratio * m + _EPS) if rounding == "floor" else math.floor(ratio * m + 0.5)
    if kept < 1:
      raise ValueError(f"keep_ratio={ratio} at layer {layer} keeps no patch token of {m}")
    removals.append((layer, m - kept, *entry[2:]))
    m = kept
  return removal_schedule(
    removals,
    depth=depth,
    num_patches=num_patches,
    s_fraction=s_fraction,
    partition=partition,
    wpr_iters=wpr_iters,
  )


def tome_r_schedule(
  r: int,
  *,
  depth: int,
  num_patches: int,
  decreasing: bool = False,
  layers: Sequence[int] | None = None,
  s_fraction: float = DEFAULT_S_FRACTION,
  partition: str = "seq_u",
  wpr_iters: int | Sequence[int] = DEFAULT_WPR_ITERS,
) -> tuple[LayerPlan, ...]:
  """A ToMe-style schedule: remove ``r`` tokens after every block.

  ``decreasing=True`` removes ``2r`` after the first pruning layer falling linearly to
  ``0`` after the last, about the same total as constant ``r`` (ToMe's decreasing
  schedule). By default pruning layers follow blocks ``0 … depth−2``: a layer after the
  last block would prune tokens no later block uses.

  Args:
    r: tokens removed per layer (constant) or the mean of the decreasing ramp.
    depth: number of blocks.
    num_patches: patch tokens entering the first block.
    decreasing: use the linearly decreasing ramp.
    layers: 0-indexed blocks with a pruning layer; default ``range(depth − 1)``.
    s_fraction: share of each layer's removals made by the S-stage.
    partition: S-stage partition.
    wpr_iters: per-depth iteration rule, see :func:`wpr_iters_by_depth`.

  Returns:
    Tuple of :class:`LayerPlan`, sorted by layer.

  Raises:
    ValueError: naming ``r`` when the schedule removes more tokens than exist, or the
      other bad option.
  """
  if not isinstance(r, int) or isinstance(r, bool) or r < 0:
    raise ValueError(f"r={r!r} must be a non-negative int")
  layers = tuple(range(depth - 1)) if layers is None else tuple(layers)
  n = len(layers)
  if decreasing and n > 1:
    rs = [math.floor(2 * r * (n - 1 - i) / (n - 1) + 0.5) for i in range(n)]
  else:
    rs = [r] * n
  total = sum(rs)
  if total >= num_patches:
    raise ValueError(
      f"r={r} removes {total} tokens over {n} layers, more than exist "
      f"({num_patches} patch tokens, at least one must be kept)"
    )
  return removal_schedule(
    list(zip(layers, rs, strict=True)),
    depth=depth,
    num_patches=num_patches,
    s_fraction=s_fraction,
    partition=partition,
    wpr_iters=wpr_iters,
  )


def tokens_per_block(
  plans: Sequence[LayerPlan], *, depth: int, num_patches: int, num_prefix: int = 1
) -> tuple[int, ...]:
  """Tokens each block processes, prefix included: ``N_l`` for ``l = 0 … depth−1``.

  A pruning layer after block ``l`` shrinks blocks ``l+1`` onwards.

  Args:
    plans: the schedule.
    depth: number of blocks.
    num_patches: patch tokens entering block 0.
    num_prefix: prefix tokens (CLS, distillation).

  Returns:
    Tuple of ``depth`` Python ints.
  """
  after = {p.layer: p.num_keep_i for p in plans}
  out, m = [], num_patches
  for layer in range(depth):
    out.append(num_prefix + m)
    m = after.get(layer, m)
  return tuple(out)


def _check_layer(layer, depth: int) -> None:
  if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < depth:
    raise ValueError(
      f"layer={layer!r} is not a block of this model: pruning layers follow 0-indexed "
      f"blocks 0 … {depth - 1}"
    )


def _sorted_entries(entries: Sequence[Sequence[float]], depth: int) -> list[tuple]:
  """Validates ``(layer, value[, s_fraction])`` entries and sorts them by layer."""
  out = []
  for entry in entries:
    entry = tuple(entry)
    if len(entry) not in (2, 3):
      raise ValueError(f"schedule entry {entry!r} must be (layer, value) or (layer, value, s_frac)")
    _check_layer(entry[0], depth)
    out.append(entry)
  out.sort(key=lambda e: e[0])
  layers = [e[0] for e in out]
  if len(set(layers)) != len(layers):
    raise ValueError(f"layer indices repeat in the schedule: {layers}")
  return out
