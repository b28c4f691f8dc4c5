"""Benchmark: Zero-TPrune speed-up on CPU vs the FLOPs-ideal speed-up; methods at one budget.

Modes (configs/bench_pruning.py): presets (default), methods (`:methods`, `:fmnist`),
a per-part profile of one pruning layer (`:profile`) and the kept-token agreement of
the layer's speed variants with the paper-exact path (`:agreement`).
"""

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags
from tqdm import tqdm

import ztprune_jax as zt
from configs import bench_pruning as bench_config
from configs import dinov2_photos, zero_tprune
from experiments import cli
from ztprune_jax.data.fashion_mnist import load_fashion_mnist
from ztprune_jax.data.preprocess import model_preprocess
from ztprune_jax.eval import eval_lib, evaluation
from ztprune_jax.models.hooks import TokenTransform
from ztprune_jax.pruning import pruners
from ztprune_jax.train.training import preprocess
from ztprune_jax.zero_tprune import heads, keep, partition, wpr
from ztprune_jax.zero_tprune.layer import zero_tprune_layer

_CONFIG = config_flags.DEFINE_config_file("config", "configs/bench_pruning.py", "Bench config.")
_ZERO_TPRUNE_FAMILY = ("zero_tprune", "wpr", "wpr_eir", "wpr_eir_vhf")


def _load() -> str:
  """The machine's 1/5/15-minute load averages (speed figures depend on them)."""
  return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _setup(c):
  """``(zc, base, params, images)``: the Zero-TPrune config, model, weights, random images.

  Without ``c.model_name``: the `budget_preset` DeiT-S preset with random weights. With it:
  that model, ``c.checkpoint`` (or a seeded random init), and the preset's options on the
  constant-r schedule nearest ``c.budget_fraction`` of its unpruned blocks-only GMACs.
  """
  zc = zero_tprune.get_config(c.budget_preset + (",runlocal" if c.runlocal else ""))
  zc = zc.copy_and_resolve_references()
  if c.model_name is not None:
    if c.budget_fraction is None or not 0.0 < c.budget_fraction <= 1.0:
      raise ValueError(f"config.budget_fraction={c.budget_fraction!r} must lie in (0, 1]")
    with zc.unlocked():
      zc.model_name = c.model_name
      zc.model = type(zc.model)()
      if c.image_size is not None:
        zc.model.image_size = c.image_size
  base = eval_lib.build_model(zc)
  if c.model_name is not None:
    opts = eval_lib.method_options(zc, "zero_tprune")
    full = zt.count_flops(base)["blocks"] / 1e9
    budget = evaluation.schedule_for_budget(base, "zero_tprune", c.budget_fraction * full, **opts)
    with zc.unlocked():
      zc.schedule.r, zc.schedule.layers, zc.schedule.keep_ratios = budget.r, None, None
  zc = _with_variant(zc, c, c.variant)
  size, channels = base.image_size, base.in_channels
  if _image_source(c) != "random":  # a tolerance stop's speed depends on the attention
    images = jnp.asarray(_images_and_labels(c, base, c.batch_size)[0])
  else:
    images = jax.random.normal(jax.random.key(c.seed), (c.batch_size, size, size, channels))
  if c.checkpoint:
    if not os.path.exists(c.checkpoint):
      raise FileNotFoundError(f"config.checkpoint {c.checkpoint!r} does not exist")
    params = zt.load_checkpoint(c.checkpoint, base)
  else:
    params = jax.jit(base.init)(jax.random.key(c.seed), images[:1])["params"]
  return zc, base, params, images


def _time_interleaved(fns: dict, params, images, args: dict, num_runs: int) -> dict:
  """Compiles and warms each fn, then times them round-robin; seconds per call, per name."""
  for name, fn in fns.items():
    fn(params, images, args[name]).block_until_ready()  # compile + warm-up
  times = {name: [] for name in fns}
  for i in tqdm(range(num_runs), desc="interleaved runs"):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn(params, images, args[name]).block_until_ready()
      times[name].append(time.perf_counter() - t0)
    tqdm.write(f"run {i}: " + "  ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
  return times


def tome_r_for_budget(zc, model, budget_blocks_macs: float) -> int:
  """ToMe's constant ``r`` whose blocks-only MACs on ``model`` come closest to the budget."""
  best, best_gap = 0, float("inf")
  for r in range(model.num_patches // 2 + 1):
    blocks = zt.count_flops(eval_lib.build_pruned(zc, model, "tome", r))["blocks"]
    gap = abs(blocks - budget_blocks_macs)
    if gap < best_gap:
      best, best_gap = r, gap
  return best


def _with_variant(zc, c, variant):
  """``zc`` with the Zero-TPrune options (and ``tol``) of ``c.variants[variant]``."""
  if variant is None:
    return zc
  if variant not in c.variants:
    raise ValueError(f"Unknown variant {variant!r}; valid: {sorted(c.variants)}")
  return _with_options(zc, c.variants[variant].to_dict())


def _with_options(zc, options: dict):
  """``zc`` with ``options`` over its Zero-TPrune options (``tol``: the traced tolerance)."""
  zc = zc.copy_and_resolve_references()
  opts = dict(options)
  tol = opts.pop("tol", None)
  with zc.unlocked():
    zc.pruner.update(opts)
    if tol is not None:
      zc.hparams.tol = float(tol)
  return zc


def _methods_main(c) -> None:
  """img/s of each method at one budget; ToMe r FLOPs-matched, random on Zero-TPrune's schedule."""
  names = [m.strip() for m in c.methods.split(",") if m.strip()]
  unknown = [m for m in names if m != "unpruned" and m.partition("@")[0] not in pruners.PRUNERS]
  if unknown or not names:
    raise ValueError(
      f"config.methods={c.methods!r}: unknown {unknown}; valid: unpruned, {sorted(pruners.PRUNERS)}"
    )
  if "zero_tprune" in names and "random" not in names:
    names.append("random")  # the same-schedule reference of zero_tprune_over_random
  zc, base, params, images = _setup(c)
  budget = zt.count_flops(eval_lib.build_pruned(zc, base, "zero_tprune"))["blocks"]
  r = tome_r_for_budget(zc, base, budget) if c.tome_r is None else c.tome_r
  models, args = {}, {}
  for name in names:
    if name == "unpruned":
      models[name], args[name] = base, None
    elif name == "tome":
      models[name], args[name] = eval_lib.build_pruned(zc, base, "tome", r), None
    elif name.partition("@")[0] in _ZERO_TPRUNE_FAMILY:  # `method@variant`: a speed variant
      method, _, variant = name.partition("@")
      zv = _with_variant(zc, c, variant or None)
      models[name], args[name] = eval_lib.build_pruned(zv, base, method), eval_lib.prune_args(zv)
    else:  # baselines without options, on the preset's schedule
      models[name] = eval_lib.build_pruned(zc, base, name)
      args[name] = zt.PruneArgs(rng=jax.random.key(c.seed))
  fns = {
    name: jax.jit(lambda p, x, a, m=m: m.apply({"params": p}, x, transform_args=a))
    for name, m in models.items()
  }
  load_before = _load()
  times = _time_interleaved(fns, params, images, args, c.num_runs)
  print(
    f"model={zc.model_name} batch={c.batch_size} images={_images_label(c)} runs={c.num_runs} "
    "schedule="
    f"{eval_lib.schedule_from_config(zc)} variant={c.variant} "
    f"load_avg_before={load_before} load_avg_after={_load()}"
  )
  labels = {name: f"{name} (r={r})" if name == "tome" else name for name in models}
  width = max(20, *map(len, labels.values()))
  print(f"{'method':{width}s} {'GMACs':>7s} {'+ovh':>7s} {'img/s':>8s}")
  ips = {}
  for name, m in models.items():
    f = zt.count_flops(m)
    ips[name] = c.batch_size / float(np.median(times[name]))
    blocks, ovh = f["blocks"] / 1e9, f["overhead"] / 1e9
    print(f"{labels[name]:{width}s} {blocks:7.3f} {ovh:7.4f} {ips[name]:8.1f}")
  if "zero_tprune" in ips:
    kept = [p.num_keep_i for p in models["zero_tprune"].token_transform.plans]
    assert kept == [p.num_keep_i for p in models["random"].token_transform.plans], "schedules"
    print(f"zero_tprune_over_random_same_schedule={ips['zero_tprune'] / ips['random']:.3f}")
  for name in ips:  # speed variants, side by side with the default
    if name.startswith("zero_tprune@"):
      print(f"{name}_over_random_same_schedule={ips[name] / ips['random']:.3f}")
  if "zero_tprune" in ips and "tome" in ips:
    print(f"zero_tprune_over_tome_throughput={ips['zero_tprune'] / ips['tome']:.3f}")


@dataclasses.dataclass(frozen=True)
class _Capture(TokenTransform):
  """Returns, as its state, the tokens and block outputs after block ``layer``."""

  layer: int = 0

  def init_state(self, x, num_prefix, args=None):
    return None

  def after_block(self, layer, x, out, state):
    return x, ((x, out) if layer == self.layer else state)


def _layer_parts(options, hparams, num_keep_s: int, num_keep_i: int) -> dict:
  """The layer's pipeline cut into its parts: name -> (fn, names of its inputs, output).

  Each part calls the same public kernels, with the same arguments, as
  `layer.zero_tprune_layer` (checked by `_profile_main`: the composed parts keep the
  layer's indices).
  """
  k_warm = options.shared_iters if options.rerun_wpr else 0
  wpr_kw = dict(
    cls_init=options.cls_init,
    cls_value=hparams.cls_value if options.cls_init == "value" else None,
    num_prefix=options.num_prefix,
    tol=hparams.tol if options.until_converged else None,
    batch_chunk=options.wpr_batch_chunk,
    compact=options.wpr_compact,
  )
  reduce_kw = dict(
    vhf=options.vhf,
    v_range=hparams.v_range,
    variance_scale=options.variance_scale,
    include_cls=options.include_cls,
    num_prefix=options.num_prefix,
  )
  P = options.num_prefix

  def i_prime(attn):
    if k_warm:
      return wpr.weighted_pagerank(attn, options.iprime_iters, snapshot_iter=k_warm, **wpr_kw)
    if options.warm_converged:
      s, conv = wpr.weighted_pagerank(attn, options.iprime_iters, return_converged=True, **wpr_kw)
      return s, jnp.where(conv[..., None], s, 0.0)
    return wpr.weighted_pagerank(attn, options.iprime_iters, **wpr_kw), None

  def s_stage(s_prime, feat):
    M = feat.shape[1] - P
    return partition.s_stage(
      s_prime, feat, M - num_keep_s, partition=options.partition,
      similarity_metric=options.similarity, num_prefix=P,
    )  # fmt: skip

  def i_stage(attn, kept_s, warm):
    if not options.rerun_wpr:
      return None
    B, N = kept_s.shape[0], attn.shape[-1]
    alive = jnp.zeros((B, N), bool).at[jnp.arange(B)[:, None], kept_s].set(True)
    iters = options.num_iters - k_warm
    return wpr.weighted_pagerank(attn, iters, token_mask=alive, init=warm, **wpr_kw)

  def tail(s_h, s_prime, kept_s, x):
    if s_h is None:
      s = keep.gather_scores(s_prime, kept_s)
    else:
      s = heads.reduce_heads(keep.gather_scores(s_h, kept_s), options.head_reduce, **reduce_kw)
    keep_i = keep.topk_keep(s, num_keep_i, num_prefix=P)
    kept_idx = jnp.take_along_axis(kept_s, keep_i, axis=-1)
    return kept_idx, keep.gather_tokens(x, kept_idx)

  return {
    "I' WPR": (i_prime, ("attn",), ("s_h_prime", "warm")),
    "I' head reduction (EIR, VHF)": (
      lambda s: heads.reduce_heads(s, options.head_reduce, **reduce_kw),
      ("s_h_prime",),
      "s_prime",
    ),
    "S-stage feature (head-mean keys)": (
      lambda out: partition.select_feature(out, options.feature, head_axis=options.head_axis),
      ("out",),
      "feat",
    ),
    "S-stage split, similarity, selection": (s_stage, ("s_prime", "feat"), "kept_s"),
    "I-stage WPR (mask + iterations)": (i_stage, ("attn", "kept_s", "warm"), "s_h"),
    "I-stage reduction, top-k, gathers": (
      tail,
      ("s_h", "s_prime", "kept_s", "x"),
      ("idx", "x_out"),
    ),
  }


def _profile_main(c) -> None:
  """Times each part of the first pruning layer on its real inputs (captured from the model)."""
  zc, base, params, images = _setup(c)
  pruned = eval_lib.build_pruned(zc, base, "zero_tprune")
  pruner = pruned.token_transform
  if not 0 <= c.profile_layer < len(pruner.plans):
    raise ValueError(
      f"config.profile_layer={c.profile_layer} must index the {len(pruner.plans)} plans"
    )
  plan = pruner.plans[c.profile_layer]
  options = dataclasses.replace(
    pruner.options, num_iters=plan.num_iters, num_prefix=pruner.num_prefix
  )
  hparams = eval_lib.prune_args(zc).hparams
  cap = base.clone(token_transform=_Capture(plan.layer))
  _, (x, out) = jax.jit(lambda p, i: cap.apply({"params": p}, i, return_state=True))(params, images)
  env = {"attn": out.attn, "out": out, "x": x}
  parts = _layer_parts(options, hparams, plan.num_keep_s, plan.num_keep_i)
  fns, inputs = {}, {}
  for name, (fn, ins, outs) in parts.items():
    fns[name] = jax.jit(fn)
    inputs[name] = tuple(env[k] for k in ins)
    res = fns[name](*inputs[name])
    env.update(zip(outs, res, strict=True) if isinstance(outs, tuple) else {outs: res})

  def whole(x, out):
    return zero_tprune_layer(
      x, out.attn, out, num_keep_s=plan.num_keep_s, num_keep_i=plan.num_keep_i,
      options=options, hparams=hparams,
    ).kept_idx  # fmt: skip

  fns["whole layer"], inputs["whole layer"] = jax.jit(whole), (x, out)
  if not np.array_equal(np.asarray(fns["whole layer"](x, out)), np.asarray(env["idx"])):
    raise AssertionError("the profiled parts do not reproduce the layer's kept indices")
  fns["unpruned forward / depth"] = jax.jit(lambda p, i: base.apply({"params": p}, i))
  inputs["unpruned forward / depth"] = (params, images)
  load_before = _load()
  times = {name: [] for name in fns}
  for fn, ins in zip(fns.values(), inputs.values(), strict=True):
    jax.block_until_ready(fn(*ins))  # compile + warm-up
  for _ in tqdm(range(c.num_runs), desc="interleaved runs"):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*inputs[name]))
      times[name].append(time.perf_counter() - t0)
  ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
  ms_min = {name: 1e3 * float(np.min(t)) for name, t in times.items()}
  ms["unpruned forward / depth"] /= base.depth
  ms_min["unpruned forward / depth"] /= base.depth
  block = ms["unpruned forward / depth"]
  print(
    f"model={zc.model_name} batch={c.batch_size} images={_images_label(c)} runs={c.num_runs} "
    f"layer={plan.layer} "
    f"tokens={x.shape[1]} heads={out.attn.shape[1]} wpr_iters={plan.num_iters} "
    f"prime_iters={options.iprime_iters} variant={c.variant} warm_start={options.warm_start} "
    f"keep_s={plan.num_keep_s} keep_i={plan.num_keep_i} "
    f"load_avg_before={load_before} load_avg_after={_load()}"
  )
  print("| part | ms (median) | ms (min) | % of whole layer | % of one unpruned block |")
  print("| --- | ---: | ---: | ---: | ---: |")
  whole_ms = ms["whole layer"]
  for name, t in ms.items():
    pct_layer, pct_block = 100 * t / whole_ms, 100 * t / block
    print(f"| {name} | {t:.2f} | {ms_min[name]:.2f} | {pct_layer:.1f} | {pct_block:.1f} |")
  print(f"layer_over_block={whole_ms / block:.3f}")
  # How many heads a tolerance stop could spare: the share whose I′ WPR moves no score by
  # `tol` or more within the step cap (the others run every step on either path).
  _, converged = wpr.weighted_pagerank(
    out.attn, options.iprime_iters, tol=hparams.tol, return_converged=True
  )
  print(f"heads_converged_within_cap={float(jnp.mean(converged)):.3f} tol={float(hparams.tol):g}")


def _photo_crops(num: int, size: int, seed: int) -> np.ndarray:
  """``num`` seeded square crops of the photos bundled with scikit-image, normalised.

  Crops cover 25-100% of the shorter side at a random place, are resized to ``size``
  (bicubic) and flipped at random; ImageNet mean/std, as DINOv2 expects.
  """
  from PIL import Image
  from skimage import data as photos

  rng = np.random.default_rng(seed)
  pics = []
  for name in dinov2_photos.PHOTOS:
    fn = getattr(photos, name, None)
    pic = fn() if callable(fn) else None
    if isinstance(pic, np.ndarray) and pic.ndim in (2, 3):
      pics.append(np.stack([pic] * 3, -1) if pic.ndim == 2 else pic[..., :3])
  out = []
  for i in range(num):
    pic = pics[i % len(pics)]
    h, w = pic.shape[:2]
    side = int(min(h, w) * math.sqrt(rng.uniform(0.25, 1.0)))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(pic[y : y + side, x : x + side].astype(np.uint8))
    crop = np.asarray(crop.resize((size, size), Image.BICUBIC), np.float32) / 255.0
    out.append(crop[:, ::-1] if rng.uniform() < 0.5 else crop)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  return ((np.stack(out) - mean) / std).astype(np.float32)


def _image_source(c) -> str:
  """The images the model has here: ``"photos"`` (DINOv2), ``"fmnist"`` (the shipped
  model's Fashion-MNIST test split) or ``"random"``."""
  name = c.model_name or ""
  if name.startswith("dinov2"):
    return "photos"
  return "fmnist" if name == "vit_fmnist_patch4_28" else "random"


def _images_and_labels(c, base, num: int):
  """Fashion-MNIST test images ``[data_start, data_start + num)`` with labels, photo
  crops for DINOv2, or random images."""
  source = _image_source(c)
  if source == "photos":
    return _photo_crops(num, base.image_size, c.seed), None
  if source == "fmnist":
    images, labels = load_fashion_mnist("test")
    sl = slice(c.data_start, c.data_start + num)
    if len(images[sl]) != num:
      raise ValueError(f"config.data_start/num_images select {len(images[sl])} of {num} images")
    pp = model_preprocess("vit_fmnist_patch4_28")
    x = preprocess(
      jnp.asarray(images[sl]), mean=pp["mean"], std=pp["std"],
      image_size=base.image_size, in_channels=base.in_channels,
    )  # fmt: skip
    return np.asarray(x), labels[sl]
  shape = (num, base.image_size, base.image_size, base.in_channels)
  return np.asarray(jax.random.normal(jax.random.key(c.seed + 1), shape)), None


def _images_label(c) -> str:
  """Which images a speed or profile run used (printed with its figures)."""
  source = _image_source(c)
  if source == "fmnist":
    return f"test{c.data_start}+"
  return "photo-crops" if source == "photos" else "random"


def _mean_ci(x: np.ndarray) -> tuple[float, float]:
  """Mean and the half-width of its normal-approximation 95% interval."""
  x = np.asarray(x, np.float64)
  return float(x.mean()), 1.96 * float(x.std(ddof=1)) / math.sqrt(len(x)) if len(x) > 1 else 0.0


def _agreement_main(c) -> None:
  """Kept-token agreement (and top-1) of each speed variant with the paper-exact path."""
  if c.variant is not None:
    raise ValueError("config.variant applies to the speed/profile modes; agreement runs them all")
  zc, base, params, _ = _setup(c)
  num = c.num_images
  images, labels = _images_and_labels(c, base, num)
  pad = -num % c.batch_size  # the last batch is padded by repetition (one compile)
  images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
  sched = eval_lib.schedule_from_config(zc)
  results = {}
  variants = {"paper_exact": bench_config.PAPER_EXACT, **c.variants.to_dict()}
  for name, opts in tqdm(variants.items(), desc="variants"):
    zv = _with_options(zc, opts)
    model = eval_lib.build_pruned(zv, base, "zero_tprune", sched)
    args = zt.PruneArgs(eval_lib.prune_args(zv).hparams)
    fn = jax.jit(lambda p, x, a, m=model: m.apply({"params": p}, x, True, a))
    preds, kept = [], []
    for i in range(0, num, c.batch_size):
      logits, state = fn(params, images[i : i + c.batch_size], args)
      preds.append(np.asarray(logits).argmax(-1))
      kept.append([np.asarray(k) for k in state.kept])
    results[name] = (
      np.concatenate(preds)[:num],
      [np.concatenate(k)[:num] for k in zip(*kept, strict=True)],
    )
  ref_pred, ref_kept = results["paper_exact"]
  where = "random"
  if labels is not None:
    where = f"test {c.data_start}+"
  elif c.model_name and c.model_name.startswith("dinov2"):
    where = "scikit-image photo crops"
  print(
    f"model={zc.model_name} images={num} ({where}) schedule={sched} "
    f"wpr_iters={tuple(zc.wpr_iters)} load_avg={_load()}"
  )
  print(
    "| variant | kept-token agreement per pruning layer (%) | min | identical sets, last "
    "layer (%) | top-1 (%) | top-1 − paper-exact (points) |"
  )
  print("| --- | --- | ---: | ---: | ---: | ---: |")
  for name, (pred, kept) in results.items():
    agree = [
      np.mean([np.isin(r, v).mean() for v, r in zip(k, rk, strict=True)])
      for k, rk in zip(kept, ref_kept, strict=True)
    ]
    same = np.mean([np.array_equal(v, r) for v, r in zip(kept[-1], ref_kept[-1], strict=True)])
    top1 = diff = "-"
    if labels is not None:
      m, h = _mean_ci(pred == labels)
      d, hd = _mean_ci((pred == labels).astype(float) - (ref_pred == labels))
      top1, diff = f"{100 * m:.2f} ± {100 * h:.2f}", f"{100 * d:+.2f} ± {100 * hd:.2f}"
    per_layer = " ".join(f"{100 * a:.2f}" for a in agree)
    print(f"| {name} | {per_layer} | {100 * min(agree):.2f} | {100 * same:.1f} | {top1} | {diff} |")


def main(argv):
  del argv
  c = _CONFIG.value
  if c.mode == "profile":
    _profile_main(c)
    return
  if c.mode == "agreement":
    _agreement_main(c)
    return
  if c.methods:
    _methods_main(c)
    return
  suffix = ",runlocal" if c.runlocal else ""
  zcfgs = {p: zero_tprune.get_config(p + suffix) for p in c.presets}
  first = next(iter(zcfgs.values()))
  base = eval_lib.build_model(first)
  size = base.image_size
  images = jax.random.normal(jax.random.key(c.seed), (c.batch_size, size, size, 3))
  params = jax.jit(base.init)(jax.random.key(c.seed), images[:1])["params"]
  models = {"unpruned": base}
  args = {"unpruned": None}
  for name, zc in zcfgs.items():
    models[name] = eval_lib.build_pruned(zc, base)
    args[name] = eval_lib.prune_args(zc)
  fns = {
    name: jax.jit(lambda p, x, a, m=m: m.apply({"params": p}, x, transform_args=a))
    for name, m in models.items()
  }
  times = _time_interleaved(fns, params, images, args, c.num_runs)
  base_macs = zt.count_flops(base)["total"]
  base_t = float(np.median(times["unpruned"]))
  print(f"model={base.name or first.model_name} batch={c.batch_size} runs={c.num_runs}")
  print(f"{'model':10s} {'GMACs':>7s} {'img/s':>8s} {'speedup':>8s} {'ideal':>7s} {'ratio':>6s}")
  ratios = {}
  for name, m in models.items():
    f = zt.count_flops(m)
    macs = f["total_with_overhead"]
    t = float(np.median(times[name]))
    speedup, ideal = base_t / t, base_macs / macs
    ratios[name] = speedup / ideal
    print(
      f"{name:10s} {f['blocks'] / 1e9:7.3f} {c.batch_size / t:8.1f} {speedup:8.3f} "
      f"{ideal:7.3f} {ratios[name]:6.3f}"
    )
  print(f"speedup_over_ideal={ratios[c.presets[0]]:.3f}")


if __name__ == "__main__":
  cli.run(main)
