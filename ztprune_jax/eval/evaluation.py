"""Accuracy, FLOPs and throughput of a (pruned) ViT: the functions the harness calls.

Methods are reached only through `pruners.prune` / `pruners.count_flops`, so whatever is
in `pruners.PRUNERS` can be evaluated. `schedule_for_budget` maps a GFLOPs budget to a
schedule the same way for every method (a constant ``r``: remove ``r`` patch tokens after
blocks ``0 … depth−2``, ToMe's schedule, the one our Zero-TPrune presets use), so all
methods at one budget process the same token counts. `eval_step` is a pure function of
one batch (wrap it in any jit / sharded jit); `evaluate` jits it once per model and batch
shape.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm.auto as tqdm

import parallel_jax as parallel
from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning import pruners
from ztprune_jax.pruning.transforms import PruneArgs

__all__ = [
  "NONFINITE",
  "BudgetSchedule",
  "EvalResult",
  "NonFiniteError",
  "eval_step",
  "evaluate",
  "kept_masks",
  "token_panel",
  "measure_eval_throughput",
  "measure_throughput",
  "method_gflops",
  "schedule_for_budget",
]

UNPRUNED = "none"  # the method name the harness uses for the unpruned model
NONFINITE = ("raise", "skip")  # what `evaluate` does with NaN/inf images or logits


class NonFiniteError(ValueError):
  """Examples whose images (or logits) hold NaN/inf; ``indices`` are their dataset indices."""

  def __init__(self, msg: str, indices: tuple[int, ...]):
    super().__init__(msg)
    self.indices = indices


class BudgetSchedule(NamedTuple):
  """A schedule meeting a GFLOPs budget.

  Attributes:
    schedule: what `prune` takes (``{"r": r, ...}``), or None for the unpruned model.
    r: tokens removed per pruning layer.
    gflops: blocks-only GFLOPs (the paper's number) the method reaches with it.
    overhead_gflops: the method's pruning overhead (not charged against the budget).
  """

  schedule: Any
  r: int
  gflops: float
  overhead_gflops: float


class EvalResult(NamedTuple):
  """Accuracy on the evaluated (unpadded) examples.

  Attributes:
    top1, top5: accuracies in ``[0, 1]`` (top-5 is top-``min(5, K)``).
    num_examples: examples counted.
    seconds: wall time of the loop (compilation included).
    nonfinite: dataset indices of the examples left out because their image or logits
      held NaN/inf (``nonfinite="skip"``); empty otherwise.
    correct: ``[M]`` bool, top-1 hit of every real example in ``batches`` order (padding
      dropped; an example left out as non-finite is False), for paired comparisons.
  """

  top1: float
  top5: float
  num_examples: int
  seconds: float
  nonfinite: tuple[int, ...] = ()
  correct: np.ndarray | None = None


def method_gflops(
  model: VisionTransformer, method: str, schedule, **options
) -> tuple[float, float]:
  """``(blocks GFLOPs, overhead GFLOPs)`` of ``model`` pruned by ``method`` with ``schedule``."""
  pruned = model if method == UNPRUNED else pruners.prune(model, method, schedule, **options)
  counts = pruners.count_flops(pruned)
  return counts["blocks"] / 1e9, counts["overhead"] / 1e9


def schedule_for_budget(
  model: VisionTransformer,
  method: str,
  budget_gflops: float,
  *,
  decreasing: bool = False,
  layers: Sequence[int] | None = None,
  **options,
) -> BudgetSchedule:
  """The constant-``r`` schedule whose blocks-only GFLOPs are nearest ``budget_gflops``.

  Tries ``r = 0, 1, …`` until the cost drops to the budget, counting each with
  `pruners.count_flops` on ``prune(model, method, {"r": r, ...})`` (no compilation), and
  keeps whichever of the last two ``r`` is nearer the budget (the cheaper one on ties).
  A budget at or above the unpruned cost gives ``r = 0``.

  Args:
    model: the unpruned `VisionTransformer`.
    method: a name in `pruners.PRUNERS`, or ``"none"`` (unpruned; the budget is ignored).
    budget_gflops: blocks-only GFLOPs per image (the paper's convention; DeiT-S: 4.55).
    decreasing: ToMe's decreasing ``r`` ramp instead of a constant ``r``.
    layers: blocks followed by a pruning layer (default ``0 … depth−2``).
    **options: options of `prune` for ``method``.

  Returns:
    A `BudgetSchedule`.

  Raises:
    ValueError: a non-finite or non-positive budget, an unknown method, or a budget below
      the cheapest schedule (the message gives the reachable range).
  """
  if isinstance(budget_gflops, bool) or not isinstance(budget_gflops, (int, float)):
    raise ValueError(f"budget_gflops={budget_gflops!r} must be a number")
  if not math.isfinite(budget_gflops) or budget_gflops <= 0:
    raise ValueError(f"budget_gflops={budget_gflops!r} must be a positive finite number")
  if method == UNPRUNED:
    g, o = method_gflops(model, method, None)
    return BudgetSchedule(None, 0, g, o)
  pruners.get_pruner(method)  # unknown names fail here, listing the valid ones

  def sched(r):
    out = {"r": r, "decreasing": decreasing}
    if layers is not None:
      out["layers"] = [int(x) for x in layers]
    return out

  costs = []
  for r in range(model.num_patches):
    try:
      costs.append((r, *method_gflops(model, method, sched(r), **options)))
    except ValueError:
      if r == 0:
        raise
      break  # r removes more tokens than exist: the cheapest schedule was the previous r
    if costs[-1][1] <= budget_gflops:
      break  # costs fall with r: the next r only moves further below the budget
  lowest = costs[-1][1]
  if lowest > budget_gflops:
    raise ValueError(
      f"budget_gflops={budget_gflops:.4g} is below what {method!r} reaches on this model "
      f"(constant-r schedules cost {lowest:.4g} … {costs[0][1]:.4g} GFLOPs)"
    )
  r, g, o = min(costs, key=lambda c: (abs(c[1] - budget_gflops), c[1]))
  return BudgetSchedule(sched(r), r, g, o)


def eval_step(
  params, images, labels, mask, args, *, model: VisionTransformer, k: int = 5, skip=False
):
  """Counts correct predictions in one batch (pure; jit or shard it).

  An example whose image or logits hold NaN/inf is flagged in ``bad_input`` /
  ``bad_logits``; with ``skip`` it is also left out of the counts (else it is counted,
  and `evaluate` raises before reporting anything).

  Args:
    params: model params.
    images: ``[B, H, W, C]`` float32.
    labels: ``[B]`` int32.
    mask: ``[B]`` bool, False for padding.
    args: `PruneArgs` for a pruned model (ignored for the unpruned one).
    model: the (pruned) model, static.
    k: top-k of the second accuracy (clipped to the number of classes).
    skip: static; leave non-finite examples out of the counts.

  Returns:
    ``{"correct1", "correct5", "count"}`` float32 scalars (sums over real examples),
    ``{"bad_input", "bad_logits"}`` ``[B]`` bool (real examples only) and ``"hit1"``
    ``[B]`` bool (top-1 hits of the counted examples).
  """
  if model.token_transform is None:
    logits = model.apply({"params": params}, images)  # [B, K]
  else:
    logits = model.apply({"params": params}, images, transform_args=args)
  finite_in = jnp.all(jnp.isfinite(images.reshape(images.shape[0], -1)), axis=-1)  # [B]
  finite_out = jnp.all(jnp.isfinite(logits), axis=-1)  # [B]
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)  # [B, k]
  hit = top == labels[:, None]  # [B, k]
  keep = mask & finite_in & finite_out if skip else mask
  m = keep.astype(jnp.float32)
  return {
    "correct1": jnp.sum(hit[:, 0] * m),
    "correct5": jnp.sum(jnp.any(hit, axis=-1) * m),
    "count": jnp.sum(m),
    "hit1": hit[:, 0] & keep,
    "bad_input": mask & ~finite_in,
    "bad_logits": mask & finite_in & ~finite_out,
  }


def evaluate(
  model: VisionTransformer,
  params,
  batches: Iterable,
  *,
  rng: jax.Array | None = None,
  hparams: Any = None,
  progress: bool = True,
  desc: str = "eval",
  mesh: jax.sharding.Mesh | None = None,
  nonfinite: str = "raise",
) -> EvalResult:
  """Top-1/top-5 accuracy of ``model`` over ``batches`` (one compile per batch shape).

  Data parallel over ``mesh`` (default: every device, `parallel.make_mesh`): params are
  replicated, each batch is padded to a multiple of the local devices (padding masked) and
  split along ``"data"``; the sums are global. With several hosts each host passes its own
  batches (`data.BatchLoader` slices by process index).

  Args:
    model: a `VisionTransformer`, pruned or not.
    params: its params.
    batches: iterable of ``(images [B, H, W, C], labels [B], mask [B])`` (e.g.
      `data.BatchLoader`; ``len`` is used for the progress bar when present).
    rng: PRNG key for random methods, folded with the batch index (default key 0).
    hparams: traced method hyperparameters (`PruneArgs.hparams`), or None.
    progress: show a tqdm bar.
    desc: the bar's label.
    mesh: a 1-D ``"data"`` mesh, or None for all devices.
    nonfinite: examples whose image (or logits) hold NaN/inf: ``"raise"`` a
      `NonFiniteError` listing them, or ``"skip"`` them (left out of the accuracies,
      listed in ``EvalResult.nonfinite``). Without this check a NaN image scores as a
      prediction of class 0.

  Returns:
    An `EvalResult`.

  Raises:
    ValueError: no examples (every mask False or no batches), or a bad ``nonfinite``.
    NonFiniteError: with ``nonfinite="raise"``, the dataset indices of the examples with
      NaN/inf images (positions in ``batches``, or the loader's source indices when it
      has ``indices`` like `data.BatchLoader`).
  """
  if nonfinite not in NONFINITE:
    raise ValueError(f"nonfinite={nonfinite!r} must be one of {NONFINITE}")
  rng = jax.random.key(0) if rng is None else rng
  mesh = parallel.make_mesh() if mesh is None else mesh
  step = _jitted_eval_step(model, mesh, nonfinite == "skip")
  params = parallel.replicate(mesh, params)
  multiple = parallel.local_multiple(mesh)
  total = len(batches) if hasattr(batches, "__len__") else None
  sums = {"correct1": 0.0, "correct5": 0.0, "count": 0.0, "bad_input": [], "bad_logits": [],
          "hit1": []}  # fmt: skip
  t0 = time.perf_counter()
  pending = []
  offset = 0  # position of the batch's first row in `batches`
  for i, (images, labels, mask) in enumerate(
    tqdm.tqdm(batches, total=total, desc=desc, disable=not progress, leave=False)
  ):
    args = PruneArgs(hparams=hparams, rng=jax.random.fold_in(rng, i))
    real = np.asarray(mask, bool)  # [B] host copy: which rows are examples, not padding
    (images, labels, mask), _ = parallel.pad_batch((images, labels, mask), multiple)
    images, labels, mask = parallel.shard_batch(mesh, (images, labels, mask))
    pending.append((offset, real, step(params, images, labels, mask, args)))
    offset += real.shape[0]
    if len(pending) > 2:  # keep the device busy, bound the queue
      _accumulate(sums, *pending.pop(0))
  for out in pending:
    _accumulate(sums, *out)
  source_index = getattr(batches, "indices", None)
  bad = {}
  for key in ("bad_input", "bad_logits"):
    pos = np.asarray(sums[key], np.int64)
    bad[key] = tuple(int(j) for j in (pos if source_index is None else source_index[pos]))
  if nonfinite == "raise" and (bad["bad_input"] or bad["bad_logits"]):
    raise NonFiniteError(_nonfinite_message(bad), bad["bad_input"] + bad["bad_logits"])
  n = int(round(sums["count"]))
  if n == 0:
    raise ValueError("evaluate saw no examples (no batches, every mask False, or all non-finite)")
  dt = time.perf_counter() - t0
  skipped = tuple(sorted(bad["bad_input"] + bad["bad_logits"]))
  correct = np.concatenate(sums["hit1"]) if sums["hit1"] else np.zeros(0, bool)
  return EvalResult(sums["correct1"] / n, sums["correct5"] / n, n, dt, skipped, correct)


@functools.lru_cache(maxsize=32)  # recent models' compiled programs, bounded memory
def _jitted_eval_step(model: VisionTransformer, mesh: jax.sharding.Mesh, skip: bool):
  """The data-parallel jitted `eval_step` of ``model``, one object per (model, mesh, skip).

  `evaluate` and `measure_eval_throughput` share it, so timing a model right after its
  evaluation reuses the compiled program instead of compiling a second one.
  """
  return parallel.data_parallel(
    mesh, functools.partial(eval_step, model=model, skip=skip), (1, 2, 3)
  )


def measure_eval_throughput(
  model: VisionTransformer,
  params,
  *,
  batch_size: int,
  image_shape: Sequence[int],
  hparams: Any = None,
  iters: int = 10,
  seed: int = 0,
  mesh: jax.sharding.Mesh | None = None,
  nonfinite: str = "raise",
) -> dict[str, float]:
  """Images per second of `evaluate`'s own jitted step on one fixed batch.

  Called after ``evaluate(model, ...)`` with the same batch size, ``hparams``, ``mesh`` and
  ``nonfinite``, it runs the program that evaluation compiled (no second compilation) and
  times ``iters`` calls; the forward pass dominates (the step adds a top-k over logits).

  Args:
    model: a `VisionTransformer`, pruned or not.
    params: its params.
    batch_size: ``B``, the evaluation's batch size (a multiple of the local devices).
    image_shape: ``(H, W, C)``.
    hparams: the traced hyperparameters evaluation used (same pytree structure).
    iters: timed calls (after one untimed call).
    seed: seeds the input images and the method's PRNG key.
    mesh: the evaluation's mesh (None: every device, as `evaluate`).
    nonfinite: the evaluation's setting (``"raise"`` or ``"skip"``).

  Returns:
    ``{"img_per_s", "ms_per_batch", "batch_size", "iters"}``.
  """
  if iters < 1:
    raise ValueError(f"iters={iters} must be >= 1")
  if nonfinite not in NONFINITE:
    raise ValueError(f"nonfinite={nonfinite!r} must be one of {NONFINITE}")
  mesh = parallel.make_mesh() if mesh is None else mesh
  if batch_size % parallel.local_multiple(mesh):
    raise ValueError(f"batch_size={batch_size} must be a multiple of the local devices")
  step = _jitted_eval_step(model, mesh, nonfinite == "skip")
  key = jax.random.key(seed)
  images = np.asarray(jax.random.normal(key, (batch_size, *image_shape), jnp.float32))
  labels, mask = np.zeros(batch_size, np.int32), np.ones(batch_size, bool)
  batch = parallel.shard_batch(mesh, (images, labels, mask))
  params = parallel.replicate(mesh, params)
  args = PruneArgs(hparams=hparams, rng=jax.random.fold_in(key, 0))
  return _timed_calls(lambda: step(params, *batch, args), batch_size, warmup=1, iters=iters)


def _timed_calls(call, batch_size: int, *, warmup: int, iters: int) -> dict[str, float]:
  """Runs ``call()`` ``warmup`` times untimed, then times ``iters`` calls (async dispatch,
  one final `block_until_ready`); returns the throughput record."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  t0 = time.perf_counter()
  for _ in range(iters):
    out = call()
  jax.block_until_ready(out)
  dt = time.perf_counter() - t0
  return {
    "img_per_s": batch_size * iters / dt,
    "ms_per_batch": 1e3 * dt / iters,
    "batch_size": float(batch_size),
    "iters": float(iters),
  }


def _nonfinite_message(bad: dict) -> str:
  def listed(ix):
    return f"{list(ix[:10])}{f' and {len(ix) - 10} more' if len(ix) > 10 else ''}"

  parts = []
  ins, outs = bad["bad_input"], bad["bad_logits"]
  if ins:
    parts.append(f"{len(ins)} image(s) contain NaN or inf, at dataset indices {listed(ins)}")
  if outs:
    parts.append(
      f"the model gives NaN/inf logits on {len(outs)} finite image(s), at dataset indices "
      f"{listed(outs)} (check the checkpoint)"
    )
  return "; ".join(parts) + ' (nonfinite="skip" leaves them out of the accuracies and counts them)'


def _accumulate(sums: dict, offset: int, real: np.ndarray, out: dict) -> None:
  rows = real.shape[0]
  for key, value in jax.device_get(out).items():
    if key in ("bad_input", "bad_logits"):
      sums[key].extend(offset + np.flatnonzero(np.asarray(value)[:rows]))
    elif key == "hit1":  # real rows only (a loader pads its last batch, masked)
      sums[key].append(np.asarray(value)[:rows][real].astype(bool))
    else:
      sums[key] += float(value)


def measure_throughput(
  model: VisionTransformer,
  params,
  *,
  batch_size: int,
  image_shape: Sequence[int],
  warmup: int = 2,
  iters: int = 10,
  seed: int = 0,
) -> dict[str, float]:
  """Images per second of the jitted forward pass on one fixed batch.

  Args:
    model: a `VisionTransformer`, pruned or not.
    params: its params.
    batch_size: ``B``.
    image_shape: ``(H, W, C)``.
    warmup: untimed calls first (the first compiles).
    iters: timed calls.
    seed: seeds the input images and the method's PRNG key.

  Returns:
    ``{"img_per_s", "ms_per_batch", "batch_size", "iters"}``.
  """
  if warmup < 1 or iters < 1:
    raise ValueError(f"warmup={warmup} and iters={iters} must be >= 1 (warm-up excludes compile)")
  key = jax.random.key(seed)
  x = jax.random.normal(key, (batch_size, *image_shape), jnp.float32)
  args = PruneArgs(hparams=None, rng=key)

  @jax.jit
  def forward(params, x, args):
    if model.token_transform is None:
      return model.apply({"params": params}, x)
    return model.apply({"params": params}, x, transform_args=args)

  return _timed_calls(lambda: forward(params, x, args), batch_size, warmup=warmup, iters=iters)


def kept_masks(model: VisionTransformer, state, grid: int) -> np.ndarray | None:
  """Which patches survive each pruning layer, from the state ``apply(..., return_state=True)``.

  Works with any transform whose state has ``kept``: one ``[B, P + K_l]`` array of original
  positions per pruning layer (`transforms.PruneState`). Returns None for states without
  it (e.g. merging methods that keep a source map instead).

  Args:
    model: the pruned model (gives the prefix-token count).
    state: the transform state.
    grid: patches per image side.

  Returns:
    ``[B, L, grid, grid]`` bool (True = kept after layer ``l``), or None.
  """
  kept = getattr(state, "kept", None)
  if kept is None:
    return None
  p = model.num_prefix_tokens
  out = []
  for positions in kept:
    pos = np.asarray(positions)  # [B, P + K]
    b = pos.shape[0]
    m = np.zeros((b, p + grid * grid), bool)
    np.put_along_axis(m, pos, True, axis=1)
    out.append(m[:, p:].reshape(b, grid, grid))
  if not out:
    return np.zeros((0, 0, grid, grid), bool)
  return np.stack(out, axis=1)


def token_panel(model: VisionTransformer, pruned: VisionTransformer, state, grid: int):
  """What a pruned model's state shows per layer, for `plots.plot_kept_patches`.

  Args:
    model: the unpruned model (prefix-token count).
    pruned: the pruned model whose ``apply(..., return_state=True)`` gave ``state``.
    state: that state.
    grid: patches per image side.

  Returns:
    ``("groups", maps [B, L, g, g] int, titles)`` for merging methods (every original
    patch -> the token it now belongs to), ``("kept", maps [B, L, g, g] bool, titles)``
    for dropping methods, or a note (str) when the state exposes neither.
  """
  p = model.num_prefix_tokens
  sources = getattr(state, "sources", None)
  if sources:
    maps = np.stack([np.asarray(s)[:, p:].reshape(-1, grid, grid) for s in sources], axis=1)
    return "groups", maps, [f"merge {i + 1}" for i in range(maps.shape[1])]
  masks = kept_masks(model, state, grid)
  if masks is None or masks.shape[1] == 0:
    return f"{type(pruned.token_transform).__name__}: state exposes no kept/source map"
  plans = getattr(pruned.token_transform, "plans", ())
  titles = [f"after block {pl.layer}" for pl in plans if not pl.is_noop]
  if len(titles) != masks.shape[1]:
    titles = [f"layer {i + 1}" for i in range(masks.shape[1])]
  return "kept", masks, titles
