"""Token Merging (ToMe): bipartite soft matching, size-weighted merging, and its token transform.

Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023. In every block, between
the attention residual and the MLP, the tokens are split alternately into two sets
(even positions A, odd positions B); each A token is matched to its most similar B token
by cosine similarity of the head-mean keys; the ``r`` most similar pairs are merged by a
size-weighted average. Proportional attention adds ``log(size)`` to the attention logits
of every key, so a merged token counts as many times as the tokens it stands for. CLS
(and the distillation token) are never merged.

Shapes are static: a block with ``N`` tokens and ``r`` merges hands ``N − r`` tokens to
its MLP. Per-block ``r`` values are Python ints resolved on the host (`parse_r`), capped
like the reference at half the mergeable tokens (`merge_counts`).

The output order reproduces the reference implementation exactly (unmerged A tokens in
order, then the B tokens), because the next block's alternating split depends on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from ztprune_jax.models.hooks import BlockOutput, TokenTransform
from ztprune_jax.pruning import flops
from ztprune_jax.pruning.transforms import PruneArgs

if TYPE_CHECKING:
  from ztprune_jax.models.vit import VisionTransformer

__all__ = [
  "Matching",
  "ToMe",
  "ToMeState",
  "bipartite_soft_matching",
  "build",
  "capped_blocks",
  "destinations",
  "matching_macs",
  "merge",
  "merge_counts",
  "merge_wavg",
  "parse_r",
  "resolve_r",
]


def parse_r(depth: int, r: int | Sequence[int] | tuple[int, float]) -> tuple[int, ...]:
  """Per-block merge counts from ToMe's ``r`` forms (ToMe, Sec. 4 and its `parse_r`).

  Args:
    depth: number of blocks.
    r: an int (the same ``r`` in every block); a list of ints (``r`` of blocks
      ``0, 1, …``, padded with zeros to ``depth``); or a tuple ``(r, inflect)`` with
      ``inflect`` in ``[-1, 1]``: a linear ramp from ``r·(1 − inflect)`` to
      ``r·(1 + inflect)`` (``-1`` gives the paper's "decreasing schedule", ``2r`` → 0),
      each value truncated to an int as the reference does.

  Returns:
    ``depth`` Python ints ``>= 0``.

  Raises:
    ValueError: naming ``r`` when it is not one of those forms, negative or too long.
  """
  if isinstance(r, bool):
    raise ValueError(f"r must be an int, a list of ints or (r, inflect), got {r!r}")
  if isinstance(r, int):
    r, inflect = r, 0.0
  elif isinstance(r, tuple) and len(r) == 2 and not isinstance(r[1], int | bool):
    r, inflect = r
    if not isinstance(inflect, float) or not -1.0 <= inflect <= 1.0:
      raise ValueError(f"r=(r, inflect) needs inflect in [-1, 1], got {inflect!r}")
    if not isinstance(r, int) or isinstance(r, bool):
      raise ValueError(f"r=(r, inflect) needs an int r, got {r!r}")
  elif isinstance(r, Sequence):
    rs = tuple(r)
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in rs):
      raise ValueError(f"r as a list must hold non-negative ints, got {r!r}")
    if len(rs) > depth:
      raise ValueError(f"r lists {len(rs)} blocks, but the model has depth {depth}")
    return rs + (0,) * (depth - len(rs))
  else:
    raise ValueError(f"r must be an int, a list of ints or (r, inflect), got {r!r}")
  if r < 0:
    raise ValueError(f"r={r} must be >= 0")
  lo = int(r * (1.0 - inflect))
  hi = 2 * r - lo
  step = (hi - lo) / (depth - 1) if depth > 1 else 0.0
  return tuple(max(0, int(lo + step * i)) for i in range(depth))


def merge_counts(
  r: Sequence[int], *, num_tokens: int, num_prefix: int = 1
) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Tokens entering each block's attention and its MLP under per-block merges ``r``.

  Each block merges ``min(r_l, (N_l − P) // 2)`` tokens (the reference's cap: one set
  of the bipartite split holds at most half the tokens).

  Args:
    r: per-block merge counts (`parse_r`).
    num_tokens: tokens entering block 0, prefix included.
    num_prefix: CLS/distillation tokens (never merged).

  Returns:
    ``(attn_tokens, mlp_tokens)``, each ``len(r)`` Python ints.
  """
  attn, mlp, n = [], [], num_tokens
  for r_l in r:
    attn.append(n)
    n -= min(r_l, (n - num_prefix) // 2)
    mlp.append(n)
  return tuple(attn), tuple(mlp)


def capped_blocks(
  r: Sequence[int], *, num_tokens: int, num_prefix: int = 1
) -> tuple[tuple[int, int, int], ...]:
  """The blocks where `merge_counts` merges fewer tokens than ``r`` asks for.

  Args:
    r: per-block merge counts (`parse_r`).
    num_tokens: tokens entering block 0, prefix included.
    num_prefix: CLS/distillation tokens (never merged).

  Returns:
    ``(block, requested, merged)`` for every capped block (empty when none is).
  """
  attn, mlp = merge_counts(r, num_tokens=num_tokens, num_prefix=num_prefix)
  return tuple(
    (i, int(r_l), a - m)
    for i, (r_l, a, m) in enumerate(zip(r, attn, mlp, strict=True))
    if a - m < r_l
  )


def matching_macs(num_tokens: int, width: int, num_heads: int) -> int:
  """Approximate MACs of one matching step: head-mean keys ``N·d`` + scores ``N_A·N_B·d_h``."""
  n_a, n_b = -(-num_tokens // 2), num_tokens // 2
  return num_tokens * width + n_a * n_b * (width // num_heads)


class Matching(NamedTuple):
  """A bipartite matching between the even (A) and odd (B) tokens of ``N``.

  Attributes:
    unm_idx: ``[B, N_A − r]`` A-indices of the A tokens left unmerged, in output order.
    src_idx: ``[B, r]`` A-indices of the merged A tokens.
    dst_idx: ``[B, r]`` B-indices each merged A token goes to.
    distill: whether token 1 (B-index 0) is a distillation token kept second.
  """

  unm_idx: jax.Array
  src_idx: jax.Array
  dst_idx: jax.Array
  distill: bool = False


def bipartite_soft_matching(
  metric: jax.Array, r: int, *, class_token: bool = True, distill_token: bool = False
) -> Matching:
  """ToMe's bipartite soft matching with the alternating split (ToMe, Sec. 3).

  Args:
    metric: ``[B, N, C]`` token features (the head-mean keys).
    r: tokens to merge, a Python int ``0 <= r <= (N − P) // 2`` (``P`` protected tokens).
    class_token: token 0 is a CLS token: never merged, kept first.
    distill_token: token 1 is a distillation token: never merged into, kept second.

  Returns:
    A `Matching`.

  Raises:
    ValueError: naming ``r`` when out of range.
  """
  _, n, _ = metric.shape
  protected = int(class_token) + int(distill_token)
  if not isinstance(r, int) or not 0 <= r <= (n - protected) // 2:
    raise ValueError(f"r={r!r} must be a Python int in [0, {(n - protected) // 2}] for {n} tokens")
  metric = metric.astype(jnp.float32)
  metric = metric / jnp.linalg.norm(metric, axis=-1, keepdims=True)
  a, b = metric[:, ::2], metric[:, 1::2]  # [B, N_A, C], [B, N_B, C]
  scores = jnp.einsum("bic,bjc->bij", a, b)  # [B, N_A, N_B]
  if class_token:
    scores = scores.at[:, 0, :].set(-jnp.inf)
  if distill_token:
    scores = scores.at[:, :, 0].set(-jnp.inf)
  node_max = scores.max(axis=-1)  # [B, N_A]
  node_idx = jnp.argmax(scores, axis=-1).astype(jnp.int32)  # [B, N_A]
  edge_idx = jnp.argsort(-node_max, axis=-1, stable=True).astype(jnp.int32)  # best first
  unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
  dst_idx = jnp.take_along_axis(node_idx, src_idx, axis=-1)  # [B, r]
  if class_token:
    unm_idx = jnp.sort(unm_idx, axis=-1)  # puts CLS (A-index 0) first
  return Matching(unm_idx, src_idx, dst_idx, distill_token)


def _gather(x: jax.Array, idx: jax.Array) -> jax.Array:
  return jnp.take_along_axis(x, idx[..., None], axis=1)


def _arrange(m: Matching, unm: jax.Array, dst: jax.Array) -> jax.Array:
  """Concatenates the unmerged A and the B tokens in the reference's output order."""
  if m.distill:
    return jnp.concatenate([unm[:, :1], dst[:, :1], unm[:, 1:], dst[:, 1:]], axis=1)
  return jnp.concatenate([unm, dst], axis=1)


def merge(x: jax.Array, m: Matching, reduce: str = "sum") -> jax.Array:
  """Merges tokens along a `Matching`: ``[B, N, C] -> [B, N − r, C]``.

  Args:
    x: ``[B, N, C]``.
    m: the matching.
    reduce: how a B token combines with the A tokens merged into it, ``"sum"`` or ``"max"``.
  """
  if reduce not in ("sum", "max"):
    raise ValueError(f"reduce must be 'sum' or 'max', got {reduce!r}")
  src, dst = x[:, ::2], x[:, 1::2]
  unm = _gather(src, m.unm_idx)  # [B, N_A − r, C]
  moved = _gather(src, m.src_idx)  # [B, r, C]

  def scatter(d, i, s):
    return d.at[i].add(s) if reduce == "sum" else d.at[i].max(s)

  dst = jax.vmap(scatter)(dst, m.dst_idx, moved)  # [B, N_B, C]
  return _arrange(m, unm, dst)


def merge_wavg(
  m: Matching, x: jax.Array, size: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """Size-weighted average merge (ToMe, Sec. 3 "Tracking token size").

  Args:
    m: the matching.
    x: ``[B, N, D]`` tokens.
    size: ``[B, N]`` tokens each one stands for (None: all ones).

  Returns:
    ``(x [B, N − r, D], size [B, N − r])``.
  """
  if size is None:
    size = jnp.ones(x.shape[:2], jnp.float32)
  w = size[..., None].astype(x.dtype)  # [B, N, 1]
  num = merge(x * w, m)  # [B, N − r, D]
  den = merge(w, m)  # [B, N − r, 1]
  return num / den, den[..., 0].astype(jnp.float32)


def destinations(m: Matching, num_tokens: int) -> jax.Array:
  """Where each of ``N`` tokens lands after the merge: ``[B, N]`` int32 in ``[0, N − r)``."""
  b = m.unm_idx.shape[0]
  ids = jnp.broadcast_to(jnp.arange(num_tokens, dtype=jnp.int32), (b, num_tokens))
  old = _representative(m, ids)  # [B, N − r] old index of each survivor
  new = jnp.arange(old.shape[1], dtype=jnp.int32)
  out = jax.vmap(lambda o: jnp.zeros(num_tokens, jnp.int32).at[o].set(new))(old)  # [B, N]
  # merged A tokens follow their B destination (old index 2·dst + 1)
  to = jnp.take_along_axis(out, 2 * m.dst_idx + 1, axis=1)  # [B, r]
  return jax.vmap(lambda o, i, t: o.at[i].set(t))(out, 2 * m.src_idx, to)


class ToMeState(NamedTuple):
  """ToMe's state threaded through the blocks.

  Attributes:
    pos: ``[B, N]`` int32 original position of each current token's representative
      (the B token a group merged into, or the unmerged token itself; 0 is CLS).
    kept: one ``[B, N_l − r_l]`` ``pos`` per merging block, like `PruneState.kept`.
    args: the call's `PruneArgs` (unused by ToMe; kept for a uniform call signature).
    size: ``[B, N]`` float32 number of original tokens each current token stands for.
    source: ``[B, N0]`` int32, for every original token the index of the current token
      it was merged into (ToMe's source tracking, as an index map).
    sources: one ``source`` per merging block, for visualisation.
  """

  pos: jax.Array
  kept: tuple[jax.Array, ...]
  args: PruneArgs
  size: jax.Array
  source: jax.Array
  sources: tuple[jax.Array, ...]


@dataclasses.dataclass(frozen=True)
class ToMe(TokenTransform):
  """ToMe as a token transform: merge ``r[l]`` tokens between attention and MLP of block l.

  Attributes:
    r: per-block merge counts (Python ints, one per block; see `parse_r`).
    num_prefix: leading CLS/distillation tokens, never merged (ToMe protects at most
      these two).
    prop_attn: add ``log(size)`` to attention logits (proportional attention).
  """

  r: tuple[int, ...] = ()
  num_prefix: int = 1
  prop_attn: bool = True

  def __post_init__(self):
    if self.num_prefix not in (0, 1, 2):
      raise ValueError(
        "ToMe protects at most a CLS and a distillation token: num_prefix must be 0, 1 or 2, "
        f"got {self.num_prefix}"
      )
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in self.r):
      raise ValueError(f"ToMe r must hold non-negative ints, got {self.r!r}")

  def init_state(self, x, num_prefix, args=None) -> ToMeState:
    if num_prefix != self.num_prefix:
      raise ValueError(
        f"ToMe was built for num_prefix={self.num_prefix}, but the model has {num_prefix}"
      )
    b, n, _ = x.shape
    ids = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    args = PruneArgs() if args is None else PruneArgs(*args)
    return ToMeState(ids, (), args, jnp.ones((b, n), jnp.float32), ids, ())

  def block_r_list(self, depth: int) -> tuple[int, ...]:
    """Requested (uncapped) merges of blocks ``0 … depth−1``."""
    return tuple(self.r[i] if i < len(self.r) else 0 for i in range(depth))

  def block_counts(self, model: VisionTransformer) -> flops.BlockCounts:
    """`pruners.count_flops`'s hook: attention on ``N_l`` tokens, MLP on ``N_l − r_l``.

    The overhead is the bipartite matching of every block that merges (`matching_macs`).
    """
    attn, mlp = merge_counts(
      self.block_r_list(model.depth),
      num_tokens=model.num_prefix_tokens + model.num_patches,
      num_prefix=self.num_prefix,
    )
    overhead = sum(
      matching_macs(n, model.width, model.num_heads)
      for n, m in zip(attn, mlp, strict=True)
      if m < n
    )
    return flops.BlockCounts(attn, mlp, overhead)

  def block_r(self, layer: int, num_tokens: int) -> int:
    """Merges in block ``layer`` for ``num_tokens`` tokens, capped as in the reference."""
    r = self.r[layer] if layer < len(self.r) else 0
    return min(r, (num_tokens - self.num_prefix) // 2)

  def attn_bias(self, layer: int, state: Any) -> jax.Array | None:
    if not self.prop_attn or not any(self.r[:layer]):
      return None  # all sizes are 1 before the first merge: log(1) = 0
    return jnp.log(state.size)  # [B, N]

  def after_attention(self, layer: int, x, out: BlockOutput, state: ToMeState):
    n = x.shape[1]
    r = self.block_r(layer, n)
    if r <= 0:
      return x, state
    metric = out.keys.mean(axis=1)  # [B, N, dh]
    m = bipartite_soft_matching(
      metric, r, class_token=self.num_prefix >= 1, distill_token=self.num_prefix == 2
    )
    x, size = merge_wavg(m, x, state.size)
    pos = _representative(m, state.pos)
    source = jnp.take_along_axis(destinations(m, n), state.source, axis=1)  # [B, N0]
    return x, state._replace(
      pos=pos,
      kept=(*state.kept, pos),
      size=size,
      source=source,
      sources=(*state.sources, source),
    )


def _representative(m: Matching, pos: jax.Array) -> jax.Array:
  """Original positions of the surviving tokens themselves (unmerged A, then B)."""
  src, dst = pos[:, ::2], pos[:, 1::2]
  return _arrange(m, jnp.take_along_axis(src, m.unm_idx, axis=1), dst)


def build(plans, num_prefix: int, *, r=(), prop_attn: bool = True) -> ToMe:
  """ToMe from per-block ``r`` (a tuple of ints), or from a schedule's plans (registry builder).

  A plan after block ``l`` becomes ``r[l] = plan.num_remove`` merges inside block ``l``
  (between its attention and MLP); ToMe merges at most half the patch tokens of a block.

  Args:
    plans: `schedule.LayerPlan`s (empty when ``r`` is given).
    num_prefix: CLS/distillation tokens, never merged.
    r: per-block merge counts (`resolve_r` turns ToMe's other ``r`` forms into these).
    prop_attn: proportional attention.

  Raises:
    ValueError: both plans and ``r``, ``r`` in another form, or a plan removing more
      than half the patch tokens of its block.
  """
  if not isinstance(prop_attn, bool):
    raise ValueError(f"prop_attn must be a bool, got {prop_attn!r}")
  r = tuple(r) if isinstance(r, list | tuple) else r
  if not isinstance(r, tuple):
    raise ValueError(f"the ToMe factory takes r as per-block ints, got {r!r}; use prune()")
  if plans:
    if any(r):
      raise ValueError("ToMe takes either a schedule or r, not both")
    per_block = [0] * (max(p.layer for p in plans) + 1)
    for plan in plans:
      if plan.num_remove > plan.num_patches_in // 2:
        raise ValueError(
          f"ToMe merges at most half the tokens of a block: the schedule removes "
          f"{plan.num_remove} of {plan.num_patches_in} patch tokens at layer {plan.layer}"
        )
      per_block[plan.layer] = plan.num_remove
    r = tuple(per_block)
  return ToMe(r, num_prefix, prop_attn)


def resolve_r(depth: int, schedule: Any, options: dict) -> tuple[Any, dict]:
  """ToMe's ``r`` forms (an option, or an int/r-mapping schedule) as per-block ints.

  The registry's schedule hook, run by `pruners.prune` before the schedule is resolved.

  Args:
    depth: the model's number of blocks.
    schedule: as in `pruners.prune`; an int or ``{"r": r, "decreasing": bool,
      "layers": [...]}`` is ToMe's ``r``, anything else passes through.
    options: the method's options; ``r`` (int, per-block list or ``(r, inflect)``) and
      ``decreasing`` are consumed here.

  Returns:
    ``(schedule, options)``: with an ``r``, ``(None, {..., "r": per-block ints})``.

  Raises:
    ValueError: both a schedule and ``r``, or a malformed ``r`` form.
  """
  options = dict(options)
  r = options.pop("r", None)
  decreasing = options.pop("decreasing", False)
  layers = None
  if isinstance(schedule, int) and not isinstance(schedule, bool):
    schedule = {"r": schedule}
  if isinstance(schedule, Mapping) and "r" in schedule:
    extra = sorted(set(schedule) - {"r", "decreasing", "layers"})
    if extra:
      raise ValueError(f"a ToMe r-schedule takes 'r', 'decreasing', 'layers'; got also {extra}")
    if r is not None:
      raise ValueError("ToMe takes either a schedule or r, not both")
    r, decreasing = schedule["r"], schedule.get("decreasing", decreasing)
    layers = schedule.get("layers")
    schedule = None
  if not isinstance(decreasing, bool):
    raise ValueError(f"decreasing must be a bool, got {decreasing!r}")
  if r is None:
    if decreasing:
      raise ValueError("decreasing=True needs an int r")
    return schedule, options
  if schedule is not None:
    raise ValueError("ToMe takes either a schedule or r, not both")
  if decreasing:
    if not isinstance(r, int) or isinstance(r, bool):
      raise ValueError(f"decreasing=True needs an int r, got {r!r}")
    r = (r, -1.0)
  if layers is None:
    return None, {**options, "r": parse_r(depth, r)}
  # r (or its ramp) only in the listed blocks
  layers = sorted({int(i) for i in layers})
  if any(not 0 <= i < depth for i in layers):
    raise ValueError(f"layers={layers} must be blocks of a depth-{depth} model")
  per_layer = parse_r(len(layers), r) if layers else ()
  per_block = [0] * depth
  for i, r_i in zip(layers, per_layer, strict=True):
    per_block[i] = r_i
  return None, {**options, "r": tuple(per_block)}
