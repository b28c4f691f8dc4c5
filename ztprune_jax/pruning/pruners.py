"""The registry of token-pruning methods and `prune(model, method, schedule, ...)`.

A method is a factory ``(plans, num_prefix, **options) -> TokenTransform``. `prune`
resolves a schedule to Python ints for the given model and returns the model cloned
with the pruner as its token transform: same parameter tree, same ``apply`` signature.

Baselines: ``topk_cls_attn`` (EViT, optionally with its fusion token), ``ats_like``
(ATS), ``random``, and ``tome`` (ToMe, which merges inside every block; its ``r`` is
resolved per block with ToMe's own rules, see `tome.parse_r`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ztprune_jax.models.registry import create_model
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning import flops
from ztprune_jax.pruning import tome as tome_lib
from ztprune_jax.pruning.transforms import AtsLike, RandomDrop, TokenPruner, TopKClsAttn, ZeroTPrune
from ztprune_jax.zero_tprune import schedule as schedule_lib
from ztprune_jax.zero_tprune.layer import ZeroTPruneOptions

__all__ = ["PRUNERS", "count_flops", "get_pruner", "prune", "resolve_schedule"]

Schedule = Any  # see `resolve_schedule`


def _zero_tprune(plans, num_prefix, **options) -> ZeroTPrune:
  return ZeroTPrune(tuple(plans), num_prefix, ZeroTPruneOptions(**options))


def _ladder(**preset) -> Callable[..., ZeroTPrune]:
  """Zero-TPrune ablation rungs: I-stage only (no S-stage), preset head reduction."""

  def make(plans, num_prefix, **options):
    if any(p.num_keep_s != p.num_patches_in for p in plans):
      raise ValueError("This ablation has no S-stage: build its schedule with s_fraction=0")
    return _zero_tprune(plans, num_prefix, **{**options, **preset})

  return make


def _no_options(cls) -> Callable[..., TokenPruner]:
  def make(plans, num_prefix, **options):
    if options:
      raise ValueError(f"{cls.__name__} takes no options, got {sorted(options)}")
    return cls(tuple(plans), num_prefix)

  return make


def _topk_cls_attn(plans, num_prefix, *, fuse_token: bool = False) -> TopKClsAttn:
  if not isinstance(fuse_token, bool):
    raise ValueError(f"fuse_token must be a bool, got {fuse_token!r}")
  return TopKClsAttn(tuple(plans), num_prefix, fuse_token)


def _tome(plans, num_prefix, *, r=(), prop_attn: bool = True) -> tome_lib.ToMe:
  """ToMe from per-block ``r`` (a tuple of ints), or from a schedule's plans.

  A plan after block ``l`` becomes ``r[l] = plan.num_remove`` merges inside block ``l``
  (between its attention and MLP); ToMe merges at most half the patch tokens of a block.
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
  return tome_lib.ToMe(r, num_prefix, prop_attn)


PRUNERS: dict[str, Callable[..., TokenPruner | tome_lib.ToMe]] = {
  "zero_tprune": _zero_tprune,
  "wpr": _ladder(head_reduce="mean", vhf=False),
  "wpr_eir": _ladder(head_reduce="rms", vhf=False),
  "wpr_eir_vhf": _ladder(head_reduce="rms", vhf=True),
  "topk_cls_attn": _topk_cls_attn,
  "ats_like": _no_options(AtsLike),
  "random": _no_options(RandomDrop),
  "tome": _tome,
}
# Methods whose pruning layers have no S-stage: their schedules use s_fraction=0.
I_STAGE_ONLY = frozenset(
  {"wpr", "wpr_eir", "wpr_eir_vhf", "topk_cls_attn", "ats_like", "random", "tome"}
)


def get_pruner(name: str) -> Callable[..., TokenPruner]:
  """Returns the factory registered as ``name``; the error lists the valid names."""
  if name not in PRUNERS:
    close = difflib.get_close_matches(name, PRUNERS, n=2)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(f"Unknown pruning method {name!r}.{hint} Valid: {sorted(PRUNERS)}")
  return PRUNERS[name]


def resolve_schedule(
  sched: Schedule,
  *,
  depth: int,
  num_patches: int,
  s_fraction: float = schedule_lib.DEFAULT_S_FRACTION,
  partition: str = "seq_u",
  wpr_iters: int | Sequence[int] = schedule_lib.DEFAULT_WPR_ITERS,
) -> tuple[schedule_lib.LayerPlan, ...]:
  """Turns any accepted schedule form into `LayerPlan`s (Python ints).

  Accepted forms:
    * ``None``: no pruning;
    * a sequence of `LayerPlan`;
    * ``[(layer, keep_ratio), ...]`` or ``[(layer, keep_ratio, s_fraction), ...]``
      (0-indexed blocks; ratios of the patch tokens entering that layer);
    * an int ``r``: remove ``r`` tokens after every block (ToMe-style, constant);
    * a mapping ``{"r": 8, "decreasing": True, "layers": [...]}`` or
      ``{"keep_ratios": [...], "rounding": "floor"}`` or ``{"removals": [...]}``.
  """
  common = dict(
    depth=depth,
    num_patches=num_patches,
    s_fraction=s_fraction,
    partition=partition,
    wpr_iters=wpr_iters,
  )
  if sched is None:
    return ()
  if isinstance(sched, bool):
    raise ValueError(f"schedule must not be a bool, got {sched!r}")
  if isinstance(sched, int):
    return schedule_lib.tome_r_schedule(sched, **common)
  if isinstance(sched, Mapping):
    kw = dict(sched)
    if "r" in kw:
      return schedule_lib.tome_r_schedule(kw.pop("r"), **common, **kw)
    if "keep_ratios" in kw:
      return schedule_lib.keep_ratio_schedule(kw.pop("keep_ratios"), **common, **kw)
    if "removals" in kw:
      return schedule_lib.removal_schedule(kw.pop("removals"), **common, **kw)
    raise ValueError(f"schedule mapping needs 'r', 'keep_ratios' or 'removals'; got {sorted(kw)}")
  sched = tuple(sched)
  if all(isinstance(p, schedule_lib.LayerPlan) for p in sched):
    for p in sched:
      if not 0 <= p.layer < depth:
        raise ValueError(f"LayerPlan.layer={p.layer} is not a block of a depth-{depth} model")
    return tuple(sorted(sched, key=lambda p: p.layer))
  return schedule_lib.keep_ratio_schedule(sched, **common)


def _split_options(method: str, options: dict) -> tuple[dict, dict]:
  """Separates schedule-building options from the method's own options."""
  keys = ("s_fraction", "wpr_iters")
  sched_kw = {k: options.pop(k) for k in keys if k in options}
  if method in I_STAGE_ONLY:
    if sched_kw.get("s_fraction", 0.0) != 0.0:
      raise ValueError(f"method {method!r} has no S-stage; s_fraction must be 0")
    sched_kw["s_fraction"] = 0.0
  if "partition" in options:
    sched_kw["partition"] = options["partition"]
  return sched_kw, options


def prune(
  model: VisionTransformer, method: str = "zero_tprune", schedule: Schedule = None, **options
) -> VisionTransformer:
  """Wraps ``model`` with a token-pruning method; the params of ``model`` load unchanged.

  Args:
    model: a `VisionTransformer`.
    method: a name in `PRUNERS` (``zero_tprune``, its ablation rungs ``wpr``,
      ``wpr_eir``, ``wpr_eir_vhf``, and the baselines ``topk_cls_attn``,
      ``ats_like``, ``random``, ``tome``).
    schedule: where and how much to prune; see `resolve_schedule`. For ``tome`` an int
      or ``{"r": r, "decreasing": bool, "layers": [...]}`` means ToMe's ``r`` (every
      block, or each listed block, merges ``r``; ``decreasing`` ramps over them).
    **options: ``s_fraction`` (S-stage share of each layer's removals) and
      ``wpr_iters`` shape the schedule; the rest go to the method (for Zero-TPrune,
      the fields of `ZeroTPruneOptions`: ``partition``, ``feature``, ``similarity``,
      ``head_reduce``, ``vhf``, ``cls_init``, ``rerun_wpr``, ``prime_iters``, ...;
      ``topk_cls_attn``: ``fuse_token``; ``tome``: ``r`` (int, per-block list, or
      ``(r, inflect)``), ``decreasing`` (``(r, -1.0)``, ToMe's decreasing schedule),
      ``prop_attn`` (default True)).

  Returns:
    ``model.clone(token_transform=pruner)``. Call it as
    ``pruned.apply({"params": params}, images)`` -> logits, or with
    ``return_state=True`` to also get the `PruneState` (original positions of the
    tokens kept at every layer; ToMe returns a `tome.ToMeState` with the same ``pos``
    and ``kept`` plus token ``size`` and ``source`` maps); pass
    ``transform_args=PruneArgs(hparams, rng)`` for traced hyperparameters and PRNG keys.

  Raises:
    ValueError: unknown method or option, or a schedule that does not fit the model.
  """
  factory = get_pruner(method)
  sched_kw, method_kw = _split_options(method, dict(options))
  if method == "tome":
    schedule, method_kw = _tome_r(model.depth, schedule, method_kw)
  plans = resolve_schedule(schedule, depth=model.depth, num_patches=model.num_patches, **sched_kw)
  try:
    pruner = factory(plans, model.num_prefix_tokens, **method_kw)
  except TypeError as e:  # unknown keyword for the method's options
    valid = [f.name for f in dataclasses.fields(ZeroTPruneOptions)]
    raise ValueError(
      f"Invalid option for method {method!r}: {e}. Zero-TPrune options: {valid}"
    ) from e
  return model.clone(token_transform=pruner)


def _tome_r(depth: int, schedule: Schedule, options: dict) -> tuple[Schedule, dict]:
  """Resolves ToMe's ``r`` forms (option or int/r-mapping schedule) to per-block ints."""
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
    return None, {**options, "r": tome_lib.parse_r(depth, r)}
  # r (or its ramp) only in the listed blocks
  layers = sorted({int(i) for i in layers})
  if any(not 0 <= i < depth for i in layers):
    raise ValueError(f"layers={layers} must be blocks of a depth-{depth} model")
  per_layer = tome_lib.parse_r(len(layers), r) if layers else ()
  per_block = [0] * depth
  for i, r_i in zip(layers, per_layer, strict=True):
    per_block[i] = r_i
  return None, {**options, "r": tuple(per_block)}


def count_flops(
  model_or_name: VisionTransformer | str, schedule: Schedule = None, **options
) -> dict:
  """MACs per image of a (pruned) ViT, in the paper's convention.

  Args:
    model_or_name: a `VisionTransformer`, one already wrapped by `prune`, or a model
      name for `create_model`.
    schedule: as in `prune`; ignored when ``model_or_name`` is already pruned.
    **options: as in `prune` (``s_fraction``, ``wpr_iters``, ``partition``, ``feature``,
      ``rerun_wpr``, ``prime_iters``) for the overhead count; ``method="tome"``,
      ``"ats_like"`` or ``fuse_token=True`` count that method's pruned model (the
      other options as in `prune`).

  Returns:
    `flops.count_flops`'s dict: ``blocks`` (the paper's GFLOPs x 1e9), ``total`` (with
    patch embedding and head), ``overhead`` (pruning; for ToMe its matching),
    ``per_block``, ``tokens`` (tokens each block's attention sees, prefix included)
    and ``mlp_tokens`` (tokens its MLP sees; they differ only under ToMe), ...
  """
  model = create_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
  pruner = model.token_transform
  if pruner is None and (
    options.get("method") in ("tome", "ats_like") or options.get("fuse_token", False)
  ):
    options = dict(options)
    return count_flops(prune(model, options.pop("method", "topk_cls_attn"), schedule, **options))
  if isinstance(pruner, tome_lib.ToMe):
    return _count_tome(model, pruner)
  if isinstance(pruner, TokenPruner):
    plans = pruner.plans
    opts = pruner.options if isinstance(pruner, ZeroTPrune) else None
  else:
    method = options.pop("method", "zero_tprune")
    sched_kw, _ = _split_options(method, options)
    plans = resolve_schedule(schedule, depth=model.depth, num_patches=model.num_patches, **sched_kw)
    opts = ZeroTPruneOptions(**{k: v for k, v in options.items() if k in _OVERHEAD_KEYS})
  tokens = schedule_tokens(model, plans)
  if isinstance(pruner, TokenPruner):  # EViT's fusion token adds one after its first layer
    tokens = tuple(n + int(pruner.has_fused_token(i - 1)) for i, n in enumerate(tokens))
  overhead_kw = {}
  if opts is not None:
    overhead_kw = dict(
      feature=opts.feature,
      partition=opts.partition,
      rerun_wpr=opts.rerun_wpr,
      prime_iters=opts.prime_iters,
    )
  return flops.count_flops(
    model.depth,
    model.width,
    model.mlp_dim / model.width,
    tokens,
    num_heads=model.num_heads,
    patch_size=model.patch_size,
    image_size=model.image_size,
    num_classes=model.num_classes,
    num_prefix=model.num_prefix_tokens,
    pruning_layers=plans if opts is not None else (),
    **overhead_kw,
  )


def _count_tome(model: VisionTransformer, pruner: tome_lib.ToMe) -> dict:
  """`count_flops` for ToMe: attention on ``N_l`` tokens, MLP on ``N_l − r_l``, + matching."""
  r = tuple(pruner.block_r_list(model.depth))
  attn, mlp = tome_lib.merge_counts(
    r, num_tokens=model.num_prefix_tokens + model.num_patches, num_prefix=pruner.num_prefix
  )
  out = flops.count_flops(
    model.depth,
    model.width,
    model.mlp_dim / model.width,
    attn,
    num_mlp_tokens_per_block=mlp,
    patch_size=model.patch_size,
    image_size=model.image_size,
    num_classes=model.num_classes,
    num_prefix=model.num_prefix_tokens,
  )
  overhead = sum(
    tome_lib.matching_macs(n, model.width, model.num_heads)
    for n, m in zip(attn, mlp, strict=True)
    if m < n
  )
  out["overhead"] += overhead
  out["total_with_overhead"] += overhead
  return out


_OVERHEAD_KEYS = ("feature", "partition", "rerun_wpr", "prime_iters")


def schedule_tokens(model: VisionTransformer, plans) -> tuple[int, ...]:
  """Tokens each block of ``model`` processes under ``plans`` (prefix included)."""
  return schedule_lib.tokens_per_block(
    plans, depth=model.depth, num_patches=model.num_patches, num_prefix=model.num_prefix_tokens
  )
