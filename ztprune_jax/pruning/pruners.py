"""The registry of token-pruning methods and `prune(model, method, schedule, ...)`.

A method is one registry entry, a `Method`: a builder ``(plans, num_prefix, **options)
-> TokenTransform``, whether its layers have an S-stage, and optionally a hook for
schedule forms of its own. `prune` resolves a schedule to Python ints for the given model
and returns the model cloned with the built transform: same parameter tree, same
``apply`` signature. Every transform reports its cost through ``block_counts(model)``
(`flops.BlockCounts`), which `count_flops` turns into MACs, so adding a method (pruning
or merging) edits neither `prune` nor `count_flops`.

Baselines: ``topk_cls_attn`` (EViT, optionally with its fusion token), ``ats_like``
(ATS), ``random``, and ``tome`` (ToMe, which merges inside every block; its ``r`` is
resolved per block with ToMe's own rules, `tome.resolve_r`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ztprune_jax.models.hooks import TokenTransform
from ztprune_jax.models.registry import create_model
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning import flops, tome
from ztprune_jax.pruning.transforms import AtsLike, RandomDrop, TopKClsAttn, ZeroTPrune
from ztprune_jax.zero_tprune import schedule as schedule_lib
from ztprune_jax.zero_tprune.layer import ZeroTPruneOptions

__all__ = ["PRUNERS", "Method", "count_flops", "get_pruner", "prune", "resolve_schedule"]

Schedule = Any  # see `resolve_schedule`


class Method(NamedTuple):
  """A registry entry: how `prune` builds one method.

  Attributes:
    build: ``(plans, num_prefix, **options) -> TokenTransform``; the transform gives its
      cost to `count_flops` through ``block_counts(model)``.
    s_stage: whether its pruning layers have an S-stage; False forces ``s_fraction=0``
      when the schedule is built.
    resolve: ``(depth, schedule, options) -> (schedule, options)``, run by `prune`
      before the schedule is resolved, for schedule forms of the method's own (ToMe's
      per-block ``r``); None for none.
    zero_tprune_options: whether its options are `ZeroTPruneOptions` fields (Zero-TPrune
      and its ablation rungs); config boundaries give such methods the Zero-TPrune options.
  """

  build: Callable[..., TokenTransform]
  s_stage: bool = False
  resolve: Callable[[int, Schedule, dict], tuple[Schedule, dict]] | None = None
  zero_tprune_options: bool = False


def _zero_tprune(plans, num_prefix, *, placement: str = "after_block", **options) -> ZeroTPrune:
  return ZeroTPrune(tuple(plans), num_prefix, ZeroTPruneOptions(**options), placement=placement)


def _ladder(**preset) -> Method:
  """Zero-TPrune ablation rungs: I-stage only (no S-stage), preset head reduction."""

  def make(plans, num_prefix, **options):
    if any(p.num_keep_s != p.num_patches_in for p in plans):
      raise ValueError("This ablation has no S-stage: build its schedule with s_fraction=0")
    clash = {k: options[k] for k in preset if k in options and options[k] != preset[k]}
    if clash:  # the rung is defined by its preset: a different value is a mistake
      raise ValueError(
        f"this ablation rung fixes {preset}; got {clash} (use method='zero_tprune' with "
        "s_fraction=0 for other head reductions)"
      )
    return _zero_tprune(plans, num_prefix, **{**options, **preset})

  return Method(make, zero_tprune_options=True)


def _no_options(cls) -> Method:
  def make(plans, num_prefix, *, placement: str = "after_block", **options):
    if options:
      raise ValueError(f"{cls.__name__} takes no options but placement, got {sorted(options)}")
    return cls(tuple(plans), num_prefix, placement=placement)

  return Method(make)


def _topk_cls_attn(
  plans, num_prefix, *, fuse_token: bool = False, placement: str = "after_block"
) -> TopKClsAttn:
  if not isinstance(fuse_token, bool):
    raise ValueError(f"fuse_token must be a bool, got {fuse_token!r}")
  return TopKClsAttn(tuple(plans), num_prefix, fuse_token, placement=placement)


PRUNERS: dict[str, Method] = {
  "zero_tprune": Method(_zero_tprune, s_stage=True, zero_tprune_options=True),
  "wpr": _ladder(head_reduce="mean", vhf=False),
  "wpr_eir": _ladder(head_reduce="rms", vhf=False),
  "wpr_eir_vhf": _ladder(head_reduce="rms", vhf=True),
  "topk_cls_attn": Method(_topk_cls_attn),
  "ats_like": _no_options(AtsLike),
  "random": _no_options(RandomDrop),
  "tome": Method(tome.build, resolve=tome.resolve_r),
}
# Methods whose pruning layers have no S-stage: their schedules use s_fraction=0.
I_STAGE_ONLY = frozenset(name for name, m in PRUNERS.items() if not m.s_stage)


def get_pruner(name: str) -> Method:
  """Returns the registry entry ``name``; the error lists the valid names."""
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
  if not get_pruner(method).s_stage:
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
      ``prop_attn`` (default True)). Every method but ToMe also takes ``placement``
      (`transforms.PLACEMENTS`: prune after the block's MLP, the default, or between
      its attention and MLP).

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
  entry = get_pruner(method)
  sched_kw, method_kw = _split_options(method, dict(options))
  if entry.resolve is not None:
    schedule, method_kw = entry.resolve(model.depth, schedule, method_kw)
  plans = resolve_schedule(schedule, depth=model.depth, num_patches=model.num_patches, **sched_kw)
  try:
    pruner = entry.build(plans, model.num_prefix_tokens, **method_kw)
  except TypeError as e:  # unknown keyword for the method's options
    valid = [f.name for f in dataclasses.fields(ZeroTPruneOptions)]
    raise ValueError(
      f"Invalid option for method {method!r}: {e}. Zero-TPrune options: {valid}"
    ) from e
  return model.clone(token_transform=pruner)


def count_flops(
  model_or_name: VisionTransformer | str, schedule: Schedule = None, **options
) -> dict:
  """MACs per image of a (pruned) ViT, in the paper's convention.

  Args:
    model_or_name: a `VisionTransformer`, one already wrapped by `prune`, or a model
      name for `create_model`.
    schedule: as in `prune`; ignored when ``model_or_name`` is already pruned.
    **options: ``method`` (default ``"zero_tprune"``) and the options of `prune`, for a
      model not yet pruned: it is counted as ``prune(model, method, schedule, **options)``
      (no schedule: the unpruned model). Ignored when the model is already pruned.

  Returns:
    `flops.count_flops`'s dict: ``blocks`` (the paper's GFLOPs x 1e9), ``total`` (with
    patch embedding and head), ``overhead`` (the method's own MACs: Zero-TPrune's WPR and
    similarity, ToMe's matching), ``per_block``, ``tokens`` (tokens each block's attention
    sees, prefix included) and ``mlp_tokens`` (tokens its MLP sees; they differ when a
    method merges or prunes inside blocks: ToMe, ``placement="after_attention"``), ...

  Raises:
    ValueError: the model's token transform has no ``block_counts`` hook.
  """
  model = create_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
  pruner = model.token_transform
  if pruner is None:
    options = dict(options)
    return count_flops(prune(model, options.pop("method", "zero_tprune"), schedule, **options))
  if not hasattr(pruner, "block_counts"):
    raise ValueError(
      f"{type(pruner).__name__} has no block_counts(model) -> flops.BlockCounts: "
      "count_flops cannot tell how many tokens its blocks process"
    )
  counts = pruner.block_counts(model)
  out = flops.count_flops(
    model.depth,
    model.width,
    model.mlp_dim / model.width,
    counts.tokens,
    num_mlp_tokens_per_block=counts.mlp_tokens,
    patch_size=model.patch_size,
    image_size=model.image_size,
    num_classes=model.num_classes,
    num_prefix=model.num_prefix_tokens,
  )
  out["overhead"] += counts.overhead
  out["total_with_overhead"] += counts.overhead
  return out
