"""The registry of token-pruning methods and `prune(model, method, schedule, ...)`.

A method is a factory ``(plans, num_prefix, **options) -> TokenPruner``. `prune`
resolves a schedule to Python ints for the given model and returns the model cloned
with the pruner as its token transform: same parameter tree, same ``apply`` signature.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ztprune_jax import flops
from ztprune_jax import schedule as schedule_lib
from ztprune_jax.layer import ZeroTPruneOptions
from ztprune_jax.models.registry import create_model
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.transforms import RandomDrop, TokenPruner, TopKClsAttn, ZeroTPrune

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


PRUNERS: dict[str, Callable[..., TokenPruner]] = {
  "zero_tprune": _zero_tprune,
  "wpr": _ladder(head_reduce="mean", vhf=False),
  "wpr_eir": _ladder(head_reduce="rms", vhf=False),
  "wpr_eir_vhf": _ladder(head_reduce="rms", vhf=True),
  "topk_cls_attn": _no_options(TopKClsAttn),
  "random": _no_options(RandomDrop),
}
# Methods whose pruning layers have no S-stage: their schedules use s_fraction=0.
I_STAGE_ONLY = frozenset({"wpr", "wpr_eir", "wpr_eir_vhf", "topk_cls_attn", "random"})


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
      ``wpr_eir``, ``wpr_eir_vhf``, and the baselines ``topk_cls_attn``, ``random``).
    schedule: where and how much to prune; see `resolve_schedule`.
    **options: ``s_fraction`` (S-stage share of each layer's removals) and
      ``wpr_iters`` shape the schedule; the rest go to the method (for Zero-TPrune,
      the fields of `ZeroTPruneOptions`: ``partition``, ``feature``, ``similarity``,
      ``head_reduce``, ``vhf``, ``cls_init``, ``rerun_wpr``, ``prime_iters``, ...).

  Returns:
    ``model.clone(token_transform=pruner)``. Call it as
    ``pruned.apply({"params": params}, images)`` -> logits, or with
    ``return_state=True`` to also get the `PruneState` (original positions of the
    tokens kept at every layer); pass ``transform_args=PruneArgs(hparams, rng)`` for
    traced hyperparameters and PRNG keys.

  Raises:
    ValueError: unknown method or option, or a schedule that does not fit the model.
  """
  factory = get_pruner(method)
  sched_kw, method_kw = _split_options(method, dict(options))
  plans = resolve_schedule(schedule, depth=model.depth, num_patches=model.num_patches, **sched_kw)
  try:
    pruner = factory(plans, model.num_prefix_tokens, **method_kw)
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
    **options: as in `prune` (``s_fraction``, ``wpr_iters``, ``partition``, ``feature``,
      ``rerun_wpr``, ``prime_iters``) for the overhead count.

  Returns:
    `flops.count_flops`'s dict: ``blocks`` (the paper's GFLOPs x 1e9), ``total`` (with
    patch embedding and head), ``overhead`` (pruning), ``per_block``, ...
  """
  model = create_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
  pruner = model.token_transform
  if isinstance(pruner, TokenPruner):
    plans = pruner.plans
    opts = pruner.options if isinstance(pruner, ZeroTPrune) else None
  else:
    method = options.pop("method", "zero_tprune")
    sched_kw, _ = _split_options(method, options)
    plans = resolve_schedule(schedule, depth=model.depth, num_patches=model.num_patches, **sched_kw)
    opts = ZeroTPruneOptions(**{k: v for k, v in options.items() if k in _OVERHEAD_KEYS})
  tokens = schedule_tokens(model, plans)
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


_OVERHEAD_KEYS = ("feature", "partition", "rerun_wpr", "prime_iters")


def schedule_tokens(model: VisionTransformer, plans) -> tuple[int, ...]:
  """Tokens each block of ``model`` processes under ``plans`` (prefix included)."""
  return schedule_lib.tokens_per_block(
    plans, depth=model.depth, num_patches=model.num_patches, num_prefix=model.num_prefix_tokens
  )
