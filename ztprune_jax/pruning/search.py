"""Monte-Carlo schedule search: sample schedules under a GFLOPs budget, keep the best.

The paper chose per-layer keep ratios and the S/I split "by cheap search" without
training (spec §5). Here a schedule is sampled on the host (`sample_schedule`), the
pruned model is evaluated on a small calibration batch, and `search_schedule` keeps the
best of ``num_samples`` draws by one of three scores:

* ``"agreement"``: top-1 agreement with the unpruned model's logits (higher is better);
* ``"kl"``: mean ``KL(softmax(unpruned) || softmax(pruned))`` per image (lower is better);
* ``"accuracy"``: top-1 accuracy against calibration labels (higher is better).

Budgets are the paper's "GFLOPs": blocks-only multiply-accumulates per image,
``Σ_l (12·N_l·d² + 2·N_l²·d) / 1e9`` (see `flops`); the pruning overhead is reported
in the table but not charged against the budget, as in the paper's tables.

Every sampled schedule changes the pruned model's shapes, so each distinct schedule
compiles its own program; identical draws reuse the evaluation of the first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm.auto as tqdm

from ztprune_jax.models.vit import VisionTransformer
from ztprune_jax.pruning import flops, pruners
from ztprune_jax.pruning.transforms import PruneArgs, TokenPruner
from ztprune_jax.zero_tprune import partition as partition_lib
from ztprune_jax.zero_tprune import schedule as schedule_lib

__all__ = [
  "SCORES",
  "SearchResult",
  "blocks_macs_range",
  "draw_schedules",
  "sample_schedule",
  "search_schedule",
]

# Score name -> whether higher is better.
SCORES: dict[str, bool] = {"agreement": True, "kl": False, "accuracy": True}

# Lowest keep ratio the sampler gives one pruning layer. Our choice: the paper prints no
# bound; 0.25 still lets a single early layer reach about a quarter of the unpruned cost.
DEFAULT_MIN_KEEP_RATIO = 0.25

_EPS = 1e-9  # as in `schedule.keep_ratio_schedule`'s floor
_BISECT_STEPS = 200

ScheduleEntries = tuple[tuple[int, float, float], ...]


class SearchResult(NamedTuple):
  """What `search_schedule` found.

  Attributes:
    best: the best schedule, ``((layer, keep_ratio, s_fraction), ...)`` (0-indexed
      blocks); pass it to `prune` as is.
    best_score: its score.
    table: one dict per sample, in sampling order, with ``schedule``, ``gflops``
      (blocks-only, the budgeted number), ``overhead_gflops`` (pruning layers),
      ``score``, ``top1_agreement``, ``kl`` and, when labels were given, ``accuracy``.
    best_index: row of ``table`` holding ``best`` (the first row on ties).
    score: the score's name.
    budget_gflops: the budget searched under.
    unpruned_gflops: blocks-only GFLOPs of the unpruned model.
    unpruned_accuracy: the unpruned model's calibration accuracy, or None without labels.
  """

  best: ScheduleEntries
  best_score: float
  table: list[dict[str, Any]]
  best_index: int
  score: str
  budget_gflops: float
  unpruned_gflops: float
  unpruned_accuracy: float | None


# ------------------------------------------------------------------------------------------
# Sampling (host side, Python ints).


def _as_numpy_rng(rng) -> np.random.Generator:
  """An int seed, a `np.random.Generator` or a JAX PRNG key -> a numpy Generator."""
  if isinstance(rng, np.random.Generator):
    return rng
  if isinstance(rng, bool):
    raise TypeError(f"rng must be an int seed, a numpy Generator or a JAX key, got {rng!r}")
  if isinstance(rng, int | np.integer):
    return np.random.default_rng(int(rng))
  if isinstance(rng, jax.Array):
    data = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
    return np.random.default_rng(np.asarray(data, dtype=np.uint32).ravel().tolist())
  raise TypeError(f"rng must be an int seed, a numpy Generator or a JAX key, got {type(rng)}")


def _kept_counts(ratios: Sequence[float], num_patches: int) -> list[int]:
  """Patch tokens kept by each layer for keep ratios of the tokens remaining there."""
  out, m = [], num_patches
  for ratio in ratios:
    m = max(1, math.floor(ratio * m + _EPS))
    out.append(m)
  return out


def _blocks_macs(layers, kept, *, depth, num_patches, width, mlp_ratio, num_prefix) -> int:
  after = dict(zip(layers, kept, strict=True))
  total, m = 0, num_patches
  for layer in range(depth):
    total += flops.block_macs(num_prefix + m, width, mlp_ratio)
    m = after.get(layer, m)
  return total


def _candidate_layers(layers: Sequence[int] | None, depth: int) -> tuple[int, ...]:
  # A pruning layer after the last block would prune tokens no block uses.
  cands = tuple(range(depth - 1)) if layers is None else tuple(sorted(set(layers)))
  if not cands:
    raise ValueError(f"layers: no candidate pruning layers for depth={depth}")
  for layer in cands:
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < depth:
      raise ValueError(f"layers: {layer!r} is not a block of a depth-{depth} model")
  return cands


def blocks_macs_range(
  *,
  depth: int,
  num_patches: int,
  width: int,
  mlp_ratio: float = 4.0,
  num_prefix: int = 1,
  layers: Sequence[int] | None = None,
  max_layers: int | None = None,
  min_keep_ratio: float = DEFAULT_MIN_KEEP_RATIO,
) -> tuple[int, int]:
  """The blocks-only MACs `sample_schedule` can reach: ``(lowest, unpruned)``.

  The lowest cost prunes after the first ``max_layers`` candidate blocks, each keeping
  ``min_keep_ratio`` of its tokens (an earlier layer or a lower ratio never costs more).

  Args:
    depth: number of blocks.
    num_patches: patch tokens entering block 0.
    width: ``d``.
    mlp_ratio: MLP hidden size over ``d``.
    num_prefix: prefix tokens (CLS, distillation), never pruned.
    layers: candidate blocks for pruning layers; default ``0 … depth−2``.
    max_layers: most pruning layers per schedule; default all candidates.
    min_keep_ratio: lowest keep ratio per layer, in ``(0, 1]``.

  Returns:
    Two Python ints.
  """
  cands = _candidate_layers(layers, depth)
  max_layers = len(cands) if max_layers is None else max_layers
  if not 1 <= max_layers <= len(cands):
    raise ValueError(f"max_layers={max_layers} must lie in [1, {len(cands)}] (candidate layers)")
  if not 0.0 < min_keep_ratio <= 1.0:
    raise ValueError(f"min_keep_ratio={min_keep_ratio!r} must lie in (0, 1]")
  kw = dict(
    depth=depth, num_patches=num_patches, width=width, mlp_ratio=mlp_ratio, num_prefix=num_prefix
  )
  first = cands[:max_layers]
  low = _blocks_macs(first, _kept_counts([min_keep_ratio] * len(first), num_patches), **kw)
  return low, _blocks_macs((), (), **kw)


def _short_ratio(kept: int, m: int) -> float:
  """The shortest decimal ratio whose ``floor(ratio · m)`` is ``kept`` (for readable tables)."""
  for digits in range(1, 7):
    scale = 10**digits
    ratio = math.ceil(kept / m * scale) / scale
    if ratio <= 1.0 and math.floor(ratio * m + _EPS) == kept:
      return ratio
  return kept / m


def sample_schedule(
  rng,
  *,
  depth: int,
  num_patches: int,
  budget_blocks_macs: float,
  width: int,
  mlp_ratio: float = 4.0,
  num_prefix: int = 1,
  layers: Sequence[int] | None = None,
  max_layers: int | None = None,
  min_keep_ratio: float = DEFAULT_MIN_KEEP_RATIO,
  s_fraction_range: tuple[float, float] = (0.0, 1.0),
  partition: str = "seq_u",
  max_tries: int = 1000,
) -> ScheduleEntries:
  """Samples a schedule whose blocks-only MACs are at most, and close to, the budget.

  How (all on the host, Python ints):

  1. Pruning layers: a count ``k`` uniform in ``[1, max_layers]``, then ``k`` distinct
     candidate blocks uniformly. A set that cannot reach the budget even at
     ``min_keep_ratio`` everywhere is rejected and redrawn (at most ``max_tries`` times;
     then the cheapest set, the first ``max_layers`` candidates, is used).
  2. Keep ratios: raw ratios ``u_i ~ U(min_keep_ratio, 1)`` set the *shape* of the
     schedule; the ratios used are ``ρ_i(α) = max(u_i^α, min_keep_ratio)`` with one
     exponent ``α ≥ 0`` shared by all layers. Cost falls monotonically with ``α``
     (``α = 0`` keeps everything), so bisection finds the smallest ``α`` within budget:
     one token more in each block would exceed the budget.
  3. S/I split: ``s_fraction`` per layer uniform in ``s_fraction_range``, capped so the
     S-stage removes no more than the partition allows (``partition.max_removable``),
     then rounded down to 3 decimals.

  Layers that end up keeping every token are dropped. Keep ratios are written as the
  shortest decimals that `keep_ratio_schedule` (floor rounding) maps to the same counts.

  Args:
    rng: an int seed, a `np.random.Generator` (advanced in place) or a JAX PRNG key.
    depth: number of blocks.
    num_patches: patch tokens entering block 0.
    budget_blocks_macs: budget in blocks-only MACs per image (GFLOPs x 1e9).
    width: ``d``.
    mlp_ratio: MLP hidden size over ``d``.
    num_prefix: prefix tokens (CLS, distillation), never pruned.
    layers: candidate blocks for pruning layers (0-indexed); default ``0 … depth−2``.
    max_layers: most pruning layers per schedule; default all candidates.
    min_keep_ratio: lowest keep ratio per layer (our default 0.25).
    s_fraction_range: ``(low, high)`` of the S-stage share of each layer's removals;
      ``(0, 0)`` for methods without an S-stage.
    partition: S-stage partition (bounds the S-stage's removals).
    max_tries: redraws of the layer set before falling back to the cheapest one.

  Returns:
    ``((layer, keep_ratio, s_fraction), ...)`` sorted by layer, for `prune`.

  Raises:
    ValueError: a budget below `blocks_macs_range`'s lowest cost or above the unpruned
      cost, or an invalid ``layers``, ``max_layers``, ``min_keep_ratio``,
      ``s_fraction_range`` or ``partition``.
  """
  cands = _candidate_layers(layers, depth)
  max_layers = len(cands) if max_layers is None else max_layers
  kw = dict(
    depth=depth, num_patches=num_patches, width=width, mlp_ratio=mlp_ratio, num_prefix=num_prefix
  )
  low, high = blocks_macs_range(
    **kw, layers=cands, max_layers=max_layers, min_keep_ratio=min_keep_ratio
  )
  if budget_blocks_macs < low:
    raise ValueError(
      f"budget {budget_blocks_macs / 1e9:.6g} GFLOPs (blocks-only) is below what any sampled "
      f"schedule reaches ({low / 1e9:.6g} GFLOPs: pruning after blocks {cands[:max_layers]} "
      f"at keep ratio {min_keep_ratio}); raise the budget, max_layers or lower min_keep_ratio"
    )
  if budget_blocks_macs > high:
    raise ValueError(
      f"budget {budget_blocks_macs / 1e9:.6g} GFLOPs (blocks-only) is above the unpruned "
      f"model's {high / 1e9:.6g} GFLOPs; nothing to prune"
    )
  s_lo, s_hi = s_fraction_range
  if not 0.0 <= s_lo <= s_hi <= 1.0:
    raise ValueError(f"s_fraction_range={s_fraction_range!r} must satisfy 0 <= low <= high <= 1")
  if partition not in partition_lib.PARTITIONS:
    raise ValueError(f"Unknown partition {partition!r}; valid: {list(partition_lib.PARTITIONS)}")
  rng = _as_numpy_rng(rng)

  def cost(chosen, ratios):
    return _blocks_macs(chosen, _kept_counts(ratios, num_patches), **kw)

  chosen = None
  for _ in range(max_tries):
    k = int(rng.integers(1, max_layers + 1))
    trial = tuple(sorted(int(i) for i in rng.choice(cands, size=k, replace=False)))
    if cost(trial, [min_keep_ratio] * k) <= budget_blocks_macs:
      chosen = trial
      break
  if chosen is None:
    chosen = cands[:max_layers]
  k = len(chosen)
  # Draw every number whatever the bisection does, so a seed fixes the whole sample.
  raw = rng.uniform(min_keep_ratio, 1.0, size=k)
  s_raw = rng.uniform(s_lo, s_hi, size=k)

  def ratios_at(alpha):
    return [max(float(u) ** alpha, min_keep_ratio) for u in raw]

  # Every ratio is at min_keep_ratio once alpha >= log(min) / log(u) for all u.
  # (The margin guards against u ** alpha landing a rounding error above min_keep_ratio.)
  alpha_hi = 1.0 + 1.001 * max(
    (math.log(min_keep_ratio) / math.log(u) for u in raw if 0.0 < u < 1.0), default=0.0
  )
  alpha_lo = 0.0
  if cost(chosen, ratios_at(alpha_lo)) <= budget_blocks_macs:
    alpha_hi = alpha_lo
  for _ in range(_BISECT_STEPS):  # invariant: cost(alpha_hi) <= budget < cost(alpha_lo)
    if alpha_hi - alpha_lo <= 1e-15 * max(1.0, alpha_hi):
      break
    mid = 0.5 * (alpha_lo + alpha_hi)
    if cost(chosen, ratios_at(mid)) <= budget_blocks_macs:
      alpha_hi = mid
    else:
      alpha_lo = mid
  kept = _kept_counts(ratios_at(alpha_hi), num_patches)

  out, m = [], num_patches
  for layer, keep_i, s_u in zip(chosen, kept, s_raw, strict=True):
    r = m - keep_i
    if r > 0:
      cap = partition_lib.max_removable(m, partition)
      s = min(float(s_u), cap / r)
      s = math.floor(s * 1000 + _EPS) / 1000
      out.append((layer, _short_ratio(keep_i, m), s))
    m = keep_i
  out = tuple(out)
  # Cross-check with the schedule module that `prune` uses (also checks the S-stage caps).
  plans = schedule_lib.keep_ratio_schedule(
    out, depth=depth, num_patches=num_patches, partition=partition
  )
  got = _blocks_macs([p.layer for p in plans], [p.num_keep_i for p in plans], **kw)
  if got > budget_blocks_macs:  # a bug here, not a user error
    raise RuntimeError(f"sampled schedule {out} costs {got} MACs > budget {budget_blocks_macs}")
  return out


# ------------------------------------------------------------------------------------------
# Scoring.


def _batched_logits(fn, params, images: np.ndarray, batch_size: int, rng) -> np.ndarray:
  """Runs ``fn(params, x, key)`` over ``images`` in equal batches (the last one padded).

  Args:
    fn: jitted ``(params, [b, H, W, C], key) -> [b, K]``.
    params: model params.
    images: ``[N, H, W, C]``.
    batch_size: ``b``.
    rng: PRNG key, folded with the batch index.

  Returns:
    ``[N, K]`` float32 numpy logits.
  """
  n = images.shape[0]
  out = []
  for i, start in enumerate(range(0, n, batch_size)):
    x = images[start : start + batch_size]
    pad = batch_size - x.shape[0]
    if pad:  # keep one static batch shape: pad with copies of the first image
      x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
    logits = fn(params, jnp.asarray(x), jax.random.fold_in(rng, i))
    out.append(np.asarray(logits, dtype=np.float32)[: batch_size - pad])
  return np.concatenate(out)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _metrics(ref: np.ndarray, logits: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
  """Label-free agreement with the unpruned logits, and accuracy when labels are given.

  Args:
    ref: ``[N, K]`` unpruned logits.
    logits: ``[N, K]`` pruned logits.
    labels: ``[N]`` int class labels, or None.

  Returns:
    ``top1_agreement``, ``kl`` (mean over images of ``KL(p_ref || p)``) and ``accuracy``.
  """
  log_p, log_q = _log_softmax(ref.astype(np.float64)), _log_softmax(logits.astype(np.float64))
  kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)  # [N]
  out = {
    "top1_agreement": float(np.mean(ref.argmax(-1) == logits.argmax(-1))),
    "kl": float(np.mean(kl)),
  }
  if labels is not None:
    out["accuracy"] = float(np.mean(logits.argmax(-1) == labels))
  return out


def draw_schedules(
  model: VisionTransformer,
  *,
  budget_gflops: float,
  num_samples: int,
  seed: int,
  method: str = "zero_tprune",
  s_fraction: float | None = None,
  partition: str = "seq_u",
  sampler_options: Mapping[str, Any] | None = None,
) -> list[ScheduleEntries]:
  """The schedules `search_schedule` tries, in order, without running the model.

  One numpy Generator seeded by ``seed`` feeds `sample_schedule` ``num_samples`` times.

  Args:
    model: the unpruned `VisionTransformer` (reads depth, width, token counts).
    budget_gflops: blocks-only GFLOPs per image.
    num_samples: how many schedules, ``>= 1``.
    seed: numpy seed.
    method: pruning method; methods without an S-stage (`pruners.I_STAGE_ONLY`) get
      ``s_fraction = 0``.
    s_fraction: a fixed S/I split for every layer (still capped by the partition), or
      None to sample it from ``sampler_options["s_fraction_range"]`` (default ``[0, 1]``).
    partition: S-stage partition (bounds the S-stage's removals).
    sampler_options: extra keywords of `sample_schedule` (``layers``, ``max_layers``,
      ``min_keep_ratio``, ``s_fraction_range``, ``max_tries``).

  Returns:
    A list of ``((layer, keep_ratio, s_fraction), ...)`` schedules.

  Raises:
    ValueError: ``num_samples < 1``, an unknown method, a non-zero ``s_fraction`` for a
      method without an S-stage, or what `sample_schedule` raises.
  """
  if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"num_samples={num_samples!r} must be an int >= 1")
  pruners.get_pruner(method)  # fails early, listing the valid names
  sampler_kw = dict(sampler_options or {})
  if method in pruners.I_STAGE_ONLY:
    if s_fraction not in (None, 0, 0.0):
      raise ValueError(f"method {method!r} has no S-stage; s_fraction must be 0")
    sampler_kw["s_fraction_range"] = (0.0, 0.0)
  elif s_fraction is not None:
    sampler_kw["s_fraction_range"] = (s_fraction, s_fraction)
  sample = functools.partial(
    sample_schedule,
    depth=model.depth,
    num_patches=model.num_patches,
    budget_blocks_macs=budget_gflops * 1e9,
    width=model.width,
    mlp_ratio=model.mlp_dim / model.width,
    num_prefix=model.num_prefix_tokens,
    partition=partition,
    **sampler_kw,
  )
  np_rng = np.random.default_rng(seed)
  return [sample(np_rng) for _ in range(num_samples)]


def _forward(model: VisionTransformer, params, x, key, *, pruned: bool):
  if not pruned:
    return model.apply({"params": params}, x)
  return model.apply({"params": params}, x, transform_args=PruneArgs(hparams=None, rng=key))


def search_schedule(
  model: VisionTransformer,
  params,
  calib_images,
  *,
  budget_gflops: float,
  num_samples: int,
  seed: int,
  method: str = "zero_tprune",
  score: str = "agreement",
  labels=None,
  batch_size: int = 32,
  progress: bool = True,
  sampler_options: Mapping[str, Any] | None = None,
  on_sample: Callable[[int], None] | None = None,
  **prune_options,
) -> SearchResult:
  """Monte-Carlo search for the best schedule under a blocks-only GFLOPs budget (spec §5).

  Draws ``num_samples`` schedules with `draw_schedules` (numpy RNG seeded by ``seed``),
  prunes ``model`` with each, runs it on the calibration images and scores its logits
  against the unpruned model's (computed once) or the labels. Same seed, same table.

  Args:
    model: the unpruned `VisionTransformer`.
    params: its params (the pruned models share them).
    calib_images: ``[N, H, W, C]`` float calibration images (NHWC).
    budget_gflops: blocks-only GFLOPs per image (the paper's tables: DeiT-S 4.55).
    num_samples: schedules to try, ``>= 1``.
    seed: seeds the sampler and the pruners' PRNG key (random partitions/baselines).
    method: a pruning method of `pruners.PRUNERS`. Methods without an S-stage get
      ``s_fraction = 0``.
    score: ``"agreement"`` (top-1 agreement with the unpruned model, higher is better),
      ``"kl"`` (mean KL(unpruned || pruned), lower is better) or ``"accuracy"`` (needs
      ``labels``, higher is better).
    labels: ``[N]`` int class labels of ``calib_images``, or None.
    batch_size: images per forward pass; the last batch is padded to this size so each
      schedule compiles once.
    progress: show a tqdm progress bar.
    sampler_options: extra keywords of `sample_schedule` (``layers``, ``max_layers``,
      ``min_keep_ratio``, ``s_fraction_range``, ``max_tries``).
    on_sample: called with the sample's index after each sample is scored (e.g. to
      advance a caller's own progress bar).
    **prune_options: options of `prune` for every candidate (``partition``,
      ``wpr_iters``, ``feature``, ...). ``s_fraction`` fixes the S/I split instead of
      sampling it; ``partition`` also bounds the sampled S-stage removals.

  Returns:
    A `SearchResult`.

  Raises:
    ValueError: ``num_samples < 1``, an unknown ``score`` or ``method``, ``accuracy``
      without labels, labels whose shape is not ``[N]``, a model that is already pruned,
      or a budget outside what the sampler can reach (see `blocks_macs_range`).
  """
  if score not in SCORES:
    raise ValueError(f"Unknown score {score!r}; valid: {sorted(SCORES)}")
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
  if isinstance(model.token_transform, TokenPruner):
    raise ValueError("search_schedule needs the unpruned model, got one already wrapped by prune")
  images = np.asarray(calib_images, dtype=np.float32)
  if images.ndim != 4 or images.shape[0] < 1:
    raise ValueError(f"calib_images must be [N, H, W, C] with N >= 1, got {images.shape}")
  n = images.shape[0]
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (n,):
      raise ValueError(f"labels must have shape [N] = ({n},) like calib_images, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
  elif score == "accuracy":
    raise ValueError("score='accuracy' needs labels of the calibration images")

  prune_options = dict(prune_options)
  schedules = draw_schedules(  # validates the budget before anything compiles
    model,
    budget_gflops=budget_gflops,
    num_samples=num_samples,
    seed=seed,
    method=method,
    s_fraction=prune_options.pop("s_fraction", None),  # in each schedule entry instead
    partition=prune_options.get("partition", "seq_u"),
    sampler_options=sampler_options,
  )

  key = jax.random.key(seed)
  base_fn = jax.jit(functools.partial(_forward, model, pruned=False))
  ref = _batched_logits(base_fn, params, images, batch_size, key)  # [N, K]
  unpruned_macs = pruners.count_flops(model)["blocks"]
  unpruned_acc = None if labels is None else float(np.mean(ref.argmax(-1) == labels))

  higher = SCORES[score]
  score_key = {"agreement": "top1_agreement", "kl": "kl", "accuracy": "accuracy"}[score]
  cache: dict[ScheduleEntries, dict[str, Any]] = {}
  table: list[dict[str, Any]] = []
  best_index = 0
  bar = tqdm.tqdm(schedules, desc=f"search ({score})", disable=not progress, leave=False)
  for sched in bar:
    if sched not in cache:
      pruned = pruners.prune(model, method, sched, **prune_options)
      fn = jax.jit(functools.partial(_forward, pruned, pruned=True))
      logits = _batched_logits(fn, params, images, batch_size, key)
      counts = pruners.count_flops(pruned)
      cache[sched] = {
        "gflops": counts["blocks"] / 1e9,
        "overhead_gflops": counts["overhead"] / 1e9,
        **_metrics(ref, logits, labels),
      }
    row = {"schedule": sched, **cache[sched]}
    row["score"] = row[score_key]
    table.append(row)
    best = table[best_index]["score"]
    if (row["score"] > best) if higher else (row["score"] < best):
      best_index = len(table) - 1
    bar.set_postfix(best=f"{table[best_index]['score']:.4g}")
    if on_sample is not None:
      on_sample(len(table) - 1)
  bar.close()
  return SearchResult(
    best=table[best_index]["schedule"],
    best_score=table[best_index]["score"],
    table=table,
    best_index=best_index,
    score=score,
    budget_gflops=float(budget_gflops),
    unpruned_gflops=unpruned_macs / 1e9,
    unpruned_accuracy=unpruned_acc,
  )
