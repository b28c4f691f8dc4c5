"""The Zero-TPrune pruning layer: I′ → S → I on one block's attention graph.

A pruning layer sits after a Transformer block and removes tokens for all later blocks:

1. I′: WPR scores every token (nothing is pruned);
2. S: the I′ ranking partitions the patch tokens and near-duplicate sources are dropped;
3. I: the survivors are ranked (WPR re-run on their attention sub-graph, or the I′ scores
   reused) and the least important are dropped.

Shapes are static: the counts are Python ints, the options a hashable frozen dataclass
(static under ``jax.jit``), and the numeric knobs users sweep live in a pytree
(:class:`ZeroTPruneHParams`) that is traced, so a sweep does not recompile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ztprune_jax.zero_tprune import heads, keep, partition, wpr

__all__ = [
  "PruneOutput",
  "ZeroTPruneHParams",
  "ZeroTPruneOptions",
  "zero_tprune_layer",
]


@dataclasses.dataclass(frozen=True)
class ZeroTPruneOptions:
  """Static options of one Zero-TPrune pruning layer (they change the compiled program).

  Attributes:
    num_iters: WPR iterations of the I-stage (the paper's depth rule, see
      ``schedule.wpr_iters_by_depth``); the cap when ``until_converged``.
    prime_iters: WPR iterations of the I′ stage. ``None`` (default) uses ``num_iters``
      (the full schedule); ``1`` is a single vote. Open in the paper; our default,
      because the partition is only as good as the ranking and WPR costs well under a
      few percent of a block.
    rerun_wpr: the I-stage re-runs WPR on the survivors' attention sub-graph (rows
      restricted and renormalised), default; ``False`` reuses the I′ scores. Open in the
      paper; re-running is the spec's default.
    until_converged: each head's WPR stops at the first step that moves no score by
      ``hparams.tol`` or more (at most ``num_iters`` steps). Ours, a speed variant: with
      ``tol=1e-5`` it keeps >= 99.7 % of the paper path's kept tokens in every layer on
      every model we measured, with top-1 unchanged, but on trained attention it was not
      measurably faster (docs/performance.md). Default ``False``: the paper's fixed step
      count.
    cls_init: WPR start, ``"uniform"`` (default, paper), ``"sqrt_n"`` or ``"value"``
      (weight ``hparams.cls_value``).
    head_reduce: ``"rms"`` (EIR, default) or ``"mean"``.
    vhf: apply the variance-based head filter (default True, the paper's full method).
    variance_scale: VHF variance scale, ``"mean_one"`` (default, ours) or ``"raw"``.
    include_cls: include prefix tokens in the VHF variance (default False, ours).
    partition: S-stage partition, ``"seq_u"`` (default, paper's best), ``"seq_i"``,
      ``"alternate"``, ``"random"`` (needs ``rng``) or ``"full"``.
    feature: S-stage feature, ``"key"`` head mean (default), ``"key_concat"``,
      ``"query"``, ``"value"``, ``"x_in"`` or ``"x_out"``.
    similarity: ``"cosine"`` (default), ``"dot"``, ``"l1"``, ``"l2"``, ``"linf"``.
    num_prefix: leading tokens never pruned (1 for CLS, 2 with a distillation token).
    head_axis: head axis of per-head features: 1 for ``[B, H, N, dh]``, 2 for Flax's
      ``[B, N, H, dh]``.
    wpr_batch_chunk: ``batch_chunk`` of ``wpr.weighted_pagerank`` (``"auto"``: cache-sized
      chunks on CPU, whole batch elsewhere).
    wpr_compact: with ``until_converged``, gather the heads still moving into smaller
      problems as the others freeze (``compact`` of ``wpr.weighted_pagerank``; same
      scores, less work). Default True.
    warm_start: fraction of the I-stage's WPR steps taken over from the I′ run (ours, a
      speed variant; docs/performance.md). With ``k = ⌊warm_start · num_iters⌋`` (at
      most the I′ steps) the I-stage starts from the I′ iterate after ``k`` steps,
      restricted to the survivors, and runs the remaining ``num_iters − k`` steps on
      their sub-graph, so each pruning layer runs ``k`` fewer WPR steps. ``0.0``
      (default) is the paper's restart from ``s_0``, computed exactly as before.
      Needs ``rerun_wpr`` and not ``until_converged``.
    warm_converged: with ``until_converged``, a head whose I′ run stopped at the tolerance
      starts its I-stage run from its I′ scores restricted to the survivors instead of
      ``s_0`` (ours, a speed variant: both runs then approximate the same fixed point,
      one from nearby); heads that reached the cap restart from ``s_0``. Default False.
  """

  num_iters: int = 30
  prime_iters: int | None = None
  rerun_wpr: bool = True
  until_converged: bool = False
  cls_init: str = "uniform"
  head_reduce: str = "rms"
  vhf: bool = True
  variance_scale: str = "mean_one"
  include_cls: bool = False
  partition: str = "seq_u"
  feature: str = "key"
  similarity: str = "cosine"
  num_prefix: int = 1
  head_axis: int = 1
  wpr_batch_chunk: int | str | None = "auto"
  wpr_compact: bool = True
  warm_start: float = 0.0
  warm_converged: bool = False

  def __post_init__(self):
    def check(name, valid):
      value = getattr(self, name)
      if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid: {list(valid)}")

    check("cls_init", wpr.CLS_INITS)
    check("head_reduce", heads.HEAD_REDUCTIONS)
    check("variance_scale", heads.VARIANCE_SCALES)
    check("partition", partition.PARTITIONS)
    check("feature", partition.FEATURES)
    check("similarity", partition.SIMILARITIES)
    check("head_axis", (1, 2))
    chunk = self.wpr_batch_chunk
    if chunk not in ("auto", None) and (
      not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0
    ):
      raise ValueError(f"wpr_batch_chunk must be 'auto', None or an int >= 0, got {chunk!r}")
    for name in ("rerun_wpr", "until_converged", "vhf", "include_cls", "wpr_compact",
                 "warm_converged"):  # fmt: skip
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
    ws = self.warm_start
    if isinstance(ws, bool) or not isinstance(ws, int | float) or not 0.0 <= ws <= 1.0:
      raise ValueError(f"warm_start must be a number in [0, 1], got {ws!r}")
    if self.warm_converged and not (self.until_converged and self.rerun_wpr):
      raise ValueError(
        "warm_converged needs until_converged=True and rerun_wpr=True "
        f"(got until_converged={self.until_converged}, rerun_wpr={self.rerun_wpr})"
      )
    if ws > 0 and (self.until_converged or not self.rerun_wpr):
      raise ValueError(
        "warm_start > 0 needs rerun_wpr=True and until_converged=False "
        f"(got rerun_wpr={self.rerun_wpr}, until_converged={self.until_converged})"
      )
    for name in ("num_iters", "prime_iters", "num_prefix"):
      value = getattr(self, name)
      if name == "prime_iters" and value is None:
        continue
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")

  @property
  def iprime_iters(self) -> int:
    """WPR iterations of the I′ stage."""
    return self.num_iters if self.prime_iters is None else self.prime_iters

  @property
  def shared_iters(self) -> int:
    """WPR steps the warm-started I-stage takes over from I′ (0: paper's restart)."""
    k = math.floor(self.warm_start * self.num_iters + 1e-9)
    return min(k, self.iprime_iters, self.num_iters)


class ZeroTPruneHParams(NamedTuple):
  """Traced numeric knobs: changing them does not recompile.

  Attributes:
    v_range: VHF ``(v_min, v_max)``, paper default ``(0.01, 0.7)``.
    cls_value: prefix-token start weight for ``cls_init="value"``.
    tol: WPR convergence tolerance for ``until_converged`` (default ``1e-5``, the value
      that passed the agreement bar of docs/performance.md; ``1e-4`` did not).
  """

  v_range: Any = heads.DEFAULT_V_RANGE
  cls_value: Any = 1.0
  tol: Any = 1e-5


class PruneOutput(NamedTuple):
  """What a pruning layer returns.

  Attributes:
    x: ``[B, P + num_keep_i, D]`` kept tokens, original order, same dtype as the input.
    kept_idx: ``[B, P + num_keep_i]`` int32 sorted indices of the kept tokens in the
      layer's input.
    scores: ``[B, P + num_keep_i]`` float32 I-stage scores of the kept tokens.
  """

  x: jax.Array
  kept_idx: jax.Array
  scores: jax.Array


def _head_scores(attn, num_iters, options, hparams, token_mask=None, **kwargs) -> jax.Array:
  """Per-head WPR: ``[B, H, N, N] -> [B, H, N]`` (zeros at masked-out tokens)."""
  return wpr.weighted_pagerank(
    attn,
    num_iters,
    cls_init=options.cls_init,
    cls_value=hparams.cls_value if options.cls_init == "value" else None,
    num_prefix=options.num_prefix,
    tol=hparams.tol if options.until_converged else None,
    token_mask=token_mask,
    batch_chunk=options.wpr_batch_chunk,
    compact=options.wpr_compact,
    **kwargs,
  )


def _reduce(s, options, hparams) -> jax.Array:
  """Head reduction (mean/EIR, optional VHF): ``[B, H, K] -> [B, K]``."""
  return heads.reduce_heads(
    s,
    options.head_reduce,
    vhf=options.vhf,
    v_range=hparams.v_range,
    variance_scale=options.variance_scale,
    include_cls=options.include_cls,
    num_prefix=options.num_prefix,
  )


def zero_tprune_layer(
  x: jax.Array,
  attn: jax.Array,
  features: Any,
  *,
  num_keep_s: int,
  num_keep_i: int,
  options: ZeroTPruneOptions | None = None,
  hparams: ZeroTPruneHParams | None = None,
  rng: jax.Array | None = None,
) -> PruneOutput:
  """One Zero-TPrune pruning layer (Zero-TPrune, I′-stage → S-stage → I-stage).

  Counts are patch tokens (prefix tokens are always kept on top of them): the S-stage
  drops ``M − num_keep_s`` of the ``M = N − P`` patch tokens, the I-stage keeps
  ``num_keep_i`` of those survivors. ``num_keep_s = M`` skips the S-stage;
  ``num_keep_i = num_keep_s = M`` returns ``x`` unchanged (identity gather).

  Args:
    x: ``[B, N, D]`` tokens after the block (any dtype; gathered exactly).
    attn: ``[B, H, N, N]`` the block's post-softmax attention, rows are queries.
    features: the block's outputs for the S-stage (a mapping or NamedTuple such as
      ``models.hooks.BlockOutput``; ``options.feature`` picks the field, ``"x_out"`` is
      ``x`` itself), or a ready ``[B, N, C]`` feature array.
    num_keep_s: patch tokens surviving the S-stage (static).
    num_keep_i: patch tokens surviving the I-stage, ``≤ num_keep_s`` (static).
    options: static :class:`ZeroTPruneOptions`; ``None`` uses the defaults.
    hparams: traced :class:`ZeroTPruneHParams`; ``None`` uses the defaults.
    rng: PRNG key, needed only for ``partition="random"``.

  Returns:
    :class:`PruneOutput` ``(x, kept_idx, scores)``.

  Raises:
    ValueError: naming ``num_keep_s``/``num_keep_i`` when the counts do not fit, or the
      invalid option.
  """
  options = ZeroTPruneOptions() if options is None else options
  hparams = ZeroTPruneHParams() if hparams is None else hparams
  B, N, _ = x.shape
  if attn.shape != (B, attn.shape[1], N, N):
    raise ValueError(f"attn must be [B, H, N, N] with B={B}, N={N}; got {attn.shape}")
  P = options.num_prefix
  M = N - P
  if not isinstance(num_keep_s, int) or not 0 <= num_keep_s <= M:
    raise ValueError(f"num_keep_s={num_keep_s!r} must be a Python int in [0, {M}]")
  if not isinstance(num_keep_i, int) or not 0 <= num_keep_i <= num_keep_s:
    raise ValueError(f"num_keep_i={num_keep_i!r} must be a Python int in [0, num_keep_s]")
  r_s = M - num_keep_s
  cap = partition.max_removable(M, options.partition)
  if r_s > cap:
    raise ValueError(
      f"num_keep_s={num_keep_s} removes {r_s} tokens in the S-stage, more than the "
      f"{cap} that partition={options.partition!r} allows with {M} patch tokens"
    )

  # I′: importance of every token (and, for a warm-started I-stage, its iterate at step k).
  k = options.shared_iters if options.rerun_wpr and r_s > 0 else 0
  if k > 0:
    s_h_prime, s_h_warm = _head_scores(
      attn, options.iprime_iters, options, hparams, snapshot_iter=k
    )  # [B, H, N] twice
  elif options.warm_converged and r_s > 0:
    s_h_prime, converged = _head_scores(
      attn, options.iprime_iters, options, hparams, return_converged=True
    )  # [B, H, N], [B, H]
    s_h_warm = jnp.where(converged[..., None], s_h_prime, 0.0)  # zero mass: start from s_0
  else:
    s_h_prime, s_h_warm = _head_scores(attn, options.iprime_iters, options, hparams), None
  s_prime = _reduce(s_h_prime, options, hparams)  # [B, N]

  # S: drop near-duplicate sources.
  if r_s > 0:
    if hasattr(features, "shape") and getattr(features, "ndim", 0) == 3:
      feat = features  # [B, N, C], already chosen by the caller
    elif options.feature == "x_out":
      feat = x  # the layer's input is the block's output
    else:
      feat = partition.select_feature(features, options.feature, head_axis=options.head_axis)
    kept_s = partition.s_stage(
      s_prime,
      feat,
      r_s,
      partition=options.partition,
      similarity_metric=options.similarity,
      num_prefix=P,
      rng=rng,
    )  # [B, P + num_keep_s]
  else:
    kept_s = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (B, N))

  # I: rank the survivors.
  if options.rerun_wpr and r_s > 0:
    # WPR on the survivors' sub-graph (rows restricted and renormalised), computed on the
    # full graph with a token mask rather than by gathering [B, H, K, K].
    alive = jnp.zeros((B, N), bool).at[jnp.arange(B)[:, None], kept_s].set(True)
    s_h = _head_scores(
      attn, options.num_iters - k, options, hparams, token_mask=alive, init=s_h_warm
    )  # [B, H, N]
    s = _reduce(keep.gather_scores(s_h, kept_s), options, hparams)  # [B, K]
  elif options.rerun_wpr and options.iprime_iters != options.num_iters:
    s = _reduce(_head_scores(attn, options.num_iters, options, hparams), options, hparams)
  else:
    s = keep.gather_scores(s_prime, kept_s)  # [B, K]
  keep_i = keep.topk_keep(s, num_keep_i, num_prefix=P)  # [B, P + num_keep_i]
  kept_idx = jnp.take_along_axis(kept_s, keep_i, axis=-1)
  return PruneOutput(
    x=keep.gather_tokens(x, kept_idx),
    kept_idx=kept_idx,
    scores=jnp.take_along_axis(s, keep_i, axis=-1),
  )
