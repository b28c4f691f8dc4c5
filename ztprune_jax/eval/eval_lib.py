"""The boundary between configs and the ztprune_jax kernels: the one path to a pruned model.

Only this module reads ztprune_jax's ConfigDicts; it builds the model and params, the data
loader, each method's options and schedule, the pruned model (`build_pruned`, for every
registered method) and its traced `PruneArgs`, and runs one (method, budget) point. Two
config layouts reach it: the evaluation layout (`configs/eval.py`, also the demo's, the
sweep's and visualize's: per-method ``method_options``, ``r`` or a FLOPs budget) and the
Zero-TPrune preset layout (`configs/zero_tprune.py`, read by the pruning benchmark: one
set of Zero-TPrune options ``pruner``, ``s_fraction``, ``wpr_iters`` and a ``schedule``).
The experiments (`evaluate`, `sweep`, `visualize`, `demo`, `bench_pruning`,
`dinov2_photos`, ...) are thin mains over it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ztprune_jax import data as data_lib
from ztprune_jax.checkpoints import load_checkpoint
from ztprune_jax.data.registry import model_label_names
from ztprune_jax.eval import evaluation
from ztprune_jax.models.registry import create_model
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning import pruners, tome
from ztprune_jax.pruning.transforms import PruneArgs, ZeroTPrune
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams

__all__ = [
  "append_csv",
  "build_loader",
  "build_model",
  "build_pruned",
  "build_transform",
  "hparams_for",
  "load_params",
  "method_options",
  "metric_writer",
  "model_overrides",
  "prune_args",
  "run_point",
  "schedule_for",
  "schedule_from_config",
  "tome_caps",
  "write_json",
]

UNPRUNED = evaluation.UNPRUNED


def model_overrides(config) -> dict[str, Any]:
  """The ``config.model`` fields that are set (None keeps the named model's value)."""
  return {k: v for k, v in config.model.to_dict().items() if v is not None}


def build_model(config) -> VisionTransformer:
  """``config.model_name`` with the ``config.model`` field overrides that are set."""
  try:
    return create_model(config.model_name, **model_overrides(config))
  except (ValueError, KeyError) as e:
    raise ValueError(f"config.model_name={config.model_name!r} / config.model: {e}") from e


def load_params(config, model: VisionTransformer) -> tuple[Any, str]:
  """``(params, description)``: ``config.checkpoint`` or a seeded random init."""
  if config.checkpoint:
    if not os.path.exists(config.checkpoint):
      raise FileNotFoundError(f"checkpoint {config.checkpoint!r} does not exist")
    return load_checkpoint(config.checkpoint, model), config.checkpoint
  c = getattr(model, "in_channels", 3)
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, c), jnp.float32)
  params = jax.jit(lambda key: model.lazy_init(key, x))(jax.random.key(config.seed))["params"]
  return params, f"random init (seed {config.seed}); no checkpoint configured"


def build_transform(config, model: VisionTransformer) -> data_lib.EvalTransform:
  """Eval preprocessing: the model's size/channels, its timm crop ratio, mean/std.

  ``config.data.crop_pct``/``mean``/``std`` override; unset, ``crop_pct`` follows
  `data.model_preprocess` (timm's ``pretrained_cfg``) and mean/std those of the model,
  except on Fashion-MNIST, whose own pixel statistics are used.
  """
  d = config.data
  channels = getattr(model, "in_channels", 3)
  defaults = data_lib.model_preprocess(config.model_name)
  if d.name == "fashion_mnist":  # its own statistics, images used whole
    defaults = data_lib.model_preprocess("vit_fmnist_patch4_28")
  mean = tuple(d.mean) if d.mean is not None else tuple(defaults["mean"])
  std = tuple(d.std) if d.std is not None else tuple(defaults["std"])
  if len(mean) == 1 and channels == 3:
    mean, std = mean * 3, std * 3
  return data_lib.EvalTransform(
    image_size=model.image_size,
    crop_pct=float(d.crop_pct) if d.crop_pct is not None else float(defaults["crop_pct"]),
    mean=mean,
    std=std,
    channels=channels,
  )


def _with_field(err: Exception, field: str) -> Exception:
  """``err`` with its message prefixed by the config field it is about (same type)."""
  if type(err) not in (ValueError, FileNotFoundError):
    return err
  return type(err)(f"{field}: {err}")


def build_loader(
  config, model: VisionTransformer, *, start: int | None = None, num_examples: int | None = None
) -> tuple[data_lib.BatchLoader, str]:
  """``(loader, description)`` of ``config.data`` for this host.

  ``start`` / ``num_examples`` replace ``config.data.start`` / ``num_examples`` (a
  calibration and an evaluation split carved from one config).

  Image folders are labelled with the model's output indices (``data.class_map`` or the
  rules of `data.folder.class_labels`); a dataset that cannot be matched to the model's
  head is an error.
  """
  d = config.data
  start = d.start if start is None else start
  num_examples = d.num_examples if num_examples is None else num_examples
  transform = build_transform(config, model)
  try:
    source = data_lib.make_source(
      d.name,
      transform,
      split=d.split,
      data_dir=d.data_dir,
      manual_dir=d.manual_dir,
      num_classes=model.num_classes,
      num_examples=num_examples or 64,
      seed=config.seed,
      imagenet_builder=d.imagenet_builder,
      class_map=d.get("class_map"),
      label_names=model_label_names(config.model_name),
    )
    loader = data_lib.BatchLoader(
      source,
      d.batch_size,
      start=start,
      num_examples=num_examples,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      num_threads=d.num_threads,
    )
  except (ValueError, FileNotFoundError) as e:
    raise _with_field(e, f"config.data (name={d.name!r})") from e
  where = d.data_dir or d.manual_dir or "default location"
  if isinstance(source, data_lib.ImageFolder):
    where = f"{source.root}, {len(source.class_names)} classes -> outputs by {source.mapping}"
  desc = (
    f"{d.name} split={d.split or 'default'} ({where}), examples {start}.."
    f"{start + loader.num_examples - 1} on this host, batch {d.batch_size}, crop_pct "
    f"{transform.crop_pct} (resize {transform.resize} -> crop {transform.image_size}), "
    f"mean {transform.mean}"
  )
  if d.name == "synthetic":
    desc += "; seeded Gaussian images with random labels: accuracy is chance level"
  return loader, desc


def loader_arrays(loader) -> tuple[np.ndarray, np.ndarray]:
  """All ``(images [N, H, W, C], labels [N])`` of a `build_loader` loader, padding dropped."""
  xs, ys = [], []
  for images, labels, mask in loader:  # the last batch is padded; `mask` marks real rows
    keep = np.asarray(mask)
    xs.append(np.asarray(images)[keep])
    ys.append(np.asarray(labels)[keep])
  return np.concatenate(xs), np.concatenate(ys)


def method_options(config, method: str) -> dict[str, Any]:
  """The keyword options `prune` gets for ``method`` from ``config``.

  Evaluation layout: ``config.method_options[method]`` (empty when none are configured).
  Zero-TPrune preset layout (``pruner``, ``s_fraction``, ``wpr_iters``): every method gets
  ``wpr_iters`` and ``s_fraction`` (0 for methods without an S-stage); the methods whose
  options are `ZeroTPruneOptions` fields (Zero-TPrune and its ablation rungs) also get
  ``config.pruner``, less ``head_reduce``/``vhf`` for the rungs (their presets fix them).
  Other configs: none.
  """
  if "method_options" in config:
    opts = config.method_options
    return opts[method].to_dict() if method in opts else {}
  if not all(k in config for k in ("pruner", "s_fraction", "wpr_iters")):
    return {}
  entry = pruners.get_pruner(method)
  options: dict[str, Any] = {"wpr_iters": tuple(config.wpr_iters)}
  options["s_fraction"] = float(config.s_fraction) if entry.s_stage else 0.0
  if entry.zero_tprune_options:
    options.update(config.pruner.to_dict())
    if not entry.s_stage:  # an ablation rung: its preset fixes the head reduction
      options.pop("head_reduce", None)
      options.pop("vhf", None)
  return options


def schedule_from_config(config) -> Any:
  """``config.schedule`` (preset layout) -> a schedule accepted by `prune`.

  Raises:
    ValueError: not exactly one of ``schedule.r`` and ``schedule.keep_ratios`` is set.
  """
  s = config.schedule
  if (s.r is None) == (s.keep_ratios is None):
    raise ValueError("config.schedule needs exactly one of `r` or `keep_ratios`")
  if s.r is not None:
    out = {"r": int(s.r), "decreasing": bool(s.decreasing)}
    if s.layers is not None:
      out["layers"] = [int(x) for x in s.layers]
    return out
  return [tuple(entry) for entry in s.keep_ratios]


def build_pruned(
  config, model: VisionTransformer, method: str | None = None, schedule: Any = None
) -> VisionTransformer:
  """``model`` pruned by ``method`` with the options ``config`` gives it (`method_options`).

  Works for every method in `pruners.PRUNERS`.

  Args:
    config: a config of either layout.
    model: the unpruned model.
    method: a name in `pruners.PRUNERS` (default ``config.method``).
    schedule: any schedule form of `prune`; None for the config's own: ``config.schedule``
      (preset layout) or `schedule_for` (``config.r`` or ``config.budget_gflops``).

  Returns:
    ``prune(model, method, schedule, **method_options(config, method))``.
  """
  method = method or config.method
  if schedule is None:
    if "schedule" in config:
      schedule = schedule_from_config(config)
    else:
      schedule = schedule_for(config, model, method).schedule
  return pruners.prune(model, method, schedule, **method_options(config, method))


def _hparams(config) -> ZeroTPruneHParams:
  h = config.hparams
  return ZeroTPruneHParams(
    v_range=tuple(jnp.float32(v) for v in h.v_range),
    cls_value=jnp.float32(h.cls_value),
    tol=jnp.float32(h.tol),
  )


def prune_args(config, rng=None) -> PruneArgs:
  """Traced `PruneArgs` from ``config.hparams`` and an optional PRNG key."""
  return PruneArgs(hparams=_hparams(config), rng=rng)


def hparams_for(config, pruned: VisionTransformer):
  """Traced `ZeroTPruneHParams` for Zero-TPrune-family pruned models (None for the others)."""
  if not isinstance(pruned.token_transform, ZeroTPrune):
    return None
  return _hparams(config)


def _check_method(method: str) -> None:
  if method == UNPRUNED:
    return
  try:
    pruners.get_pruner(method)
  except ValueError as e:
    raise ValueError(f"config.method: {e} (or {UNPRUNED!r}: the unpruned model)") from e


def _check_budget(budget, field: str) -> float:
  if isinstance(budget, bool) or not isinstance(budget, int | float):
    raise ValueError(f"{field}={budget!r} must be a number of GFLOPs")
  if not math.isfinite(budget) or budget <= 0:
    raise ValueError(f"{field}={budget!r} must be a positive finite number of GFLOPs")
  return float(budget)


def schedule_for(
  config, model, method: str, budget_gflops=None, *, field: str | None = None
) -> evaluation.BudgetSchedule:
  """The schedule of ``method``: ``config.r`` if set, else the budget's constant-r schedule.

  Never silently unpruned: ``r < 1``, a budget at or above the unpruned model's GFLOPs,
  or a budget whose nearest schedule removes nothing, is an error (``method="none"`` is
  the unpruned model); so is a budget below what ``method`` reaches, and an ``r`` that
  ToMe would cap in its first merging block (`tome_caps` reports later caps).

  Args:
    config: an eval-style config (``r``, ``budget_gflops``, ``layers``, method options).
    model: the unpruned model.
    method: a name in `pruners.PRUNERS`, or ``"none"``.
    budget_gflops: the budget (``config.budget_gflops`` when None).
    field: the config field ``budget_gflops`` came from, for messages.

  Raises:
    ValueError: as above; the message names the config field and what is valid.
  """
  _check_method(method)
  if field is None:
    field = "config.budget_gflops" if budget_gflops is None else "budget"
  budget = config.get("budget_gflops") if budget_gflops is None else budget_gflops
  if budget is not None:
    budget = _check_budget(budget, field)
  if method == UNPRUNED:
    return evaluation.schedule_for_budget(model, UNPRUNED, 1.0)
  options = method_options(config, method)
  layers = tuple(config.layers) if config.layers is not None else None
  unpruned = evaluation.method_gflops(model, UNPRUNED, None)[0]
  if config.r is not None:
    r = int(config.r)
    if r < 1:
      raise ValueError(
        f"config.r={r} removes no token, so {method!r} would run the unpruned model: pass "
        f"--config.r=<int >= 1>, --config.r=None to use the budget, or --config.method="
        f"{UNPRUNED} for the unpruned model"
      )
    sched = {"r": r, "decreasing": bool(config.decreasing)}
    if layers is not None:
      sched["layers"] = list(layers)
    try:
      g, o = evaluation.method_gflops(model, method, sched, **options)
    except ValueError as e:
      raise ValueError(f"config.r={r}: {e}") from e
    bs = evaluation.BudgetSchedule(sched, r, g, o)
    caps = _tome_capped(model, method, bs, options)
    if caps and caps[0][0] == _first_merge(model, method, bs, options):
      block, want, got = caps[0]
      raise ValueError(
        f"config.r={r} is out of range for ToMe on {model.num_patches} patch tokens: block "
        f"{block} can merge at most {got} (half the mergeable tokens); pass --config.r <= {got}"
      )
    return bs
  if budget is None:
    raise ValueError(
      f"method {method!r} needs a budget: set --config.budget_gflops=<GFLOPs> or --config.r=<int>"
    )
  if budget >= unpruned:
    raise ValueError(
      f"{field}={budget:.4g} is at or above the unpruned model's {unpruned:.4g} GFLOPs "
      f"(blocks-only), so {method!r} would prune nothing: pass a budget below {unpruned:.4g}, "
      f"or --config.method={UNPRUNED} for the unpruned model"
    )
  try:
    bs = evaluation.schedule_for_budget(
      model, method, budget, decreasing=bool(config.decreasing), layers=layers, **options
    )
  except ValueError as e:
    raise ValueError(f"{field}: {e}") from e
  if bs.r == 0:
    step = evaluation.method_gflops(model, method, {**_r_schedule(config, layers), "r": 1},
                                    **options)[0]  # fmt: skip
    raise ValueError(
      f"{field}={budget:.4g} is nearer the unpruned model's {unpruned:.4g} GFLOPs than "
      f"{method!r}'s cheapest step (r=1: {step:.4g} GFLOPs): pass a budget <= {step:.4g}, or "
      f"--config.method={UNPRUNED} for the unpruned model"
    )
  return bs


def _r_schedule(config, layers) -> dict:
  out = {"decreasing": bool(config.decreasing)}
  if layers is not None:
    out["layers"] = list(layers)
  return out


def _tome_r(model, method, bs, options) -> tuple[int, ...] | None:
  if method != "tome":
    return None
  return tuple(pruners.prune(model, method, bs.schedule, **options).token_transform.r)


def _first_merge(model, method, bs, options) -> int | None:
  r = _tome_r(model, method, bs, options) or ()
  return next((i for i, v in enumerate(r) if v > 0), None)


def _tome_capped(model, method, bs, options) -> tuple[tuple[int, int, int], ...]:
  r = _tome_r(model, method, bs, options)
  if r is None:
    return ()
  n = model.num_patches + model.num_prefix_tokens
  return tome.capped_blocks(r, num_tokens=n, num_prefix=model.num_prefix_tokens)


def tome_caps(config, model, method: str, bs: evaluation.BudgetSchedule) -> str:
  """A note naming the blocks where ToMe merges fewer tokens than ``r`` ("" if none).

  ToMe merges at most half the mergeable tokens of a block (`tome.merge_counts`), so a
  constant ``r`` can be cut short in late blocks; the record's ``r`` is the requested one.
  """
  caps = _tome_capped(model, method, bs, method_options(config, method))
  if not caps:
    return ""
  blocks = [c[0] for c in caps]
  merged = [c[2] for c in caps]
  return (
    f"ToMe caps r in blocks {blocks}: merges {merged} there instead of "
    f"{[c[1] for c in caps]} (at most half the mergeable tokens per block)"
  )


def run_point(
  config,
  model: VisionTransformer,
  params,
  loader,
  method: str,
  budget_gflops: float | None = None,
  *,
  throughput: bool | None = None,
  schedule: evaluation.BudgetSchedule | None = None,
) -> dict[str, Any]:
  """Evaluates one (method, budget) point; returns its record (JSON-serialisable).

  The record holds ``method``, ``budget_gflops``, ``r``, ``schedule``, ``gflops``
  (blocks-only, the paper's), ``overhead_gflops``, ``total_gflops`` (with patch embedding
  and head), ``top1``, ``top5``, ``num_examples``, ``eval_seconds`` and, when measured,
  ``img_per_s``; ``num_nonfinite`` and ``nonfinite`` (dataset indices of the examples
  left out for NaN/inf, ``config.data.nonfinite="skip"``); ``note`` (e.g. where ToMe caps
  ``r``, `tome_caps`). ``schedule`` (e.g. a searched one) replaces the budget's constant-r
  schedule. ``budget_gflops`` is None when ``config.r`` set the schedule.

  Raises:
    evaluation.NonFiniteError: an image (or its logits) holds NaN/inf and
      ``config.data.nonfinite`` is ``"raise"``; image folders name the files.
  """
  bs = schedule if schedule is not None else schedule_for(config, model, method, budget_gflops)
  if method == UNPRUNED:
    pruned = model
  else:
    pruned = build_pruned(config, model, method, bs.schedule)
  counts = pruners.count_flops(pruned)
  res = _evaluate(
    pruned,
    params,
    loader,
    rng=jax.random.key(config.seed),
    hparams=hparams_for(config, pruned),
    progress=config.progress,
    desc=f"{method} @ {bs.gflops:.3g} GFLOPs",
    nonfinite=_nonfinite_mode(config),
  )
  if budget_gflops is None:
    budget = None if config.get("r") is not None else config.get("budget_gflops")
  else:
    budget = budget_gflops
  note = "" if method == UNPRUNED or schedule is not None else tome_caps(config, model, method, bs)
  record = {
    "method": method,
    "budget_gflops": None if method == UNPRUNED or budget is None else float(budget),
    "r": bs.r,
    "schedule": json.dumps(bs.schedule),
    "gflops": bs.gflops,
    "overhead_gflops": bs.overhead_gflops,
    "total_gflops": counts["total"] / 1e9,
    "top1": res.top1,
    "top5": res.top5,
    "num_examples": res.num_examples,
    "eval_seconds": res.seconds,
    "img_per_s": None,
    "num_nonfinite": len(res.nonfinite),
    "nonfinite": list(res.nonfinite),
    "note": note,
  }
  t = config.throughput
  if t.enabled if throughput is None else throughput:
    record["img_per_s"] = point_throughput(config, model, pruned, params)
  if isinstance(pruned.token_transform, ZeroTPrune):
    record["num_pruning_layers"] = len(pruned.token_transform.plans)
  return record


def _nonfinite_mode(config) -> str:
  mode = config.data.get("nonfinite", "raise")
  if mode not in evaluation.NONFINITE:
    raise ValueError(f"config.data.nonfinite={mode!r}; valid: {list(evaluation.NONFINITE)}")
  return mode


def _evaluate(pruned, params, loader, **kwargs) -> evaluation.EvalResult:
  """`evaluation.evaluate`; a `NonFiniteError` on an image folder names the files."""
  try:
    return evaluation.evaluate(pruned, params, loader, **kwargs)
  except evaluation.NonFiniteError as e:
    files = getattr(getattr(loader, "source", None), "files", None)
    if files is None:
      raise
    names = [str(files[i]) for i in e.indices[:10]]
    raise evaluation.NonFiniteError(f"{e}; files: {names}", e.indices) from e


def point_throughput(config, model: VisionTransformer, pruned: VisionTransformer, params) -> float:
  """Images per second of ``pruned`` (``config.throughput``: batch size, iterations).

  When ``config.throughput.batch_size`` equals ``config.data.batch_size`` this times the
  program `evaluation.evaluate` compiles for ``pruned`` (no second compilation; called
  before any evaluation it compiles that program once); otherwise a separate forward
  pass is compiled at the throughput batch size.
  """
  t = config.throughput
  c = getattr(model, "in_channels", 3)
  shape = (model.image_size, model.image_size, c)
  if t.batch_size == config.data.batch_size:
    tp = evaluation.measure_eval_throughput(
      pruned, params, batch_size=t.batch_size, image_shape=shape,
      hparams=hparams_for(config, pruned), iters=t.iters, seed=config.seed,
      nonfinite=_nonfinite_mode(config),
    )  # fmt: skip
  else:
    tp = evaluation.measure_throughput(
      pruned, params, batch_size=t.batch_size, image_shape=shape, warmup=t.warmup,
      iters=t.iters, seed=config.seed,
    )  # fmt: skip
  return tp["img_per_s"]


def method_panel(config, model: VisionTransformer, params, images, method: str, budget_gflops=None):
  """What ``method`` keeps (or merges) per layer on ``images`` at its budget schedule.

  Args:
    config: an eval-style config (method options, hparams, seed, ``r``/``layers``).
    model: the unpruned model.
    params: its params.
    images: ``[B, H, W, C]`` normalised images.
    method: a name in `pruners.PRUNERS`.
    budget_gflops: the budget (``config.budget_gflops`` when None).

  Returns:
    ``(panel, schedule)``: `evaluation.token_panel`'s panel (or note) and the
    `evaluation.BudgetSchedule` used.
  """
  bs = schedule_for(config, model, method, budget_gflops)
  pruned = build_pruned(config, model, method, bs.schedule)
  args = PruneArgs(hparams_for(config, pruned), jax.random.key(config.seed))

  @jax.jit
  def state_of(params, images):
    return pruned.apply({"params": params}, images, return_state=True, transform_args=args)[1]

  grid = model.image_size // model.patch_size
  return evaluation.token_panel(model, pruned, state_of(params, images), grid), bs


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON, creating the folder."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=2)


def append_csv(path: str, row: dict[str, Any], columns: tuple[str, ...] | None = None) -> None:
  """Appends ``row`` to a CSV (header written when the file is new or empty).

  Raises:
    ValueError: the existing header has other columns than ``row``.
  """
  columns = tuple(columns or row)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  new = not os.path.exists(path) or os.path.getsize(path) == 0
  if not new:
    with open(path, newline="") as f:
      header = tuple(next(csv.reader(f), ()))
    if header != columns:
      raise ValueError(f"{path} has columns {list(header)}, the new row has {list(columns)}")
  with open(path, "a", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    if new:
      writer.writeheader()
    writer.writerow({k: row.get(k) for k in columns})


class _LogWriter:
  """Logs scalars with absl (clu's writer interface) when clu.metric_writers cannot load."""

  def write_scalars(self, step: int, scalars) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={v}" for k, v in scalars.items()))

  def write_hparams(self, hparams) -> None:
    logging.info("hparams %s", dict(hparams))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def metric_writer(workdir: str, tensorboard: bool = True):
  """``(writer, writes_tensorboard)`` for ``workdir``: clu's writer, which always logs.

  clu's TensorBoard summary writer needs TensorFlow and tensorboard (importing them costs
  about 5 s of CPU). Without them, or with ``tensorboard=False``, scalars go to absl
  logging and the flag is False.
  """
  primary = jax.process_index() == 0
  if not tensorboard:
    return _LogWriter(), False
  if importlib.util.find_spec("tensorboard") is None:  # clu.metric_writers cannot import
    logging.info("tensorboard is not installed: logging scalars only")
    return _LogWriter(), False
  try:
    from clu import metric_writers
  except ImportError as e:
    logging.warning("clu.metric_writers unavailable (%s): logging scalars only", e)
    return _LogWriter(), False
  try:
    return metric_writers.create_default_writer(workdir, just_logging=not primary), primary
  except ImportError:
    return metric_writers.create_default_writer(None), False
