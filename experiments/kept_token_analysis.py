"""Which property of the kept token sets goes with the pruned model being right (issue 19).

`python -m experiments.kept_token_analysis --config=configs/kept_token_analysis.py
--workdir=results/kept_token_analysis` (see the config for what it reruns).

Per method, image and pruning layer it measures the kept set (`ztprune_jax.eval.
kept_tokens`): the share of kept patches on the garment, the garment's coverage (kept;
kept or 4-neighbour kept), the mean distance of a garment patch to the nearest kept
patch, the share of kept garment patches on its outline, the offset of the kept
centroid from the garment's, and redundancy (mean over kept patch tokens of the largest
cosine similarity to another kept patch token) on two features of the pruning block:
its head-mean keys (what the S-stage compares) and its output ``x``. It then links each
property (after the last pruning layer) to top-1 correctness over every image:
  * pooled: accuracy by pooled quintiles of the property, and a logistic regression of
    correct on the standardised property with one intercept per method;
  * paired, per method pair ``a:b`` (`config.pairs`): on the images where exactly one
    of them is right, ``d = prop_a - prop_b`` in each group, and the logistic regression
    ``P(a right | discordant) = σ(β0 + β1·d/sd(d))``: β1 says whether the property
    difference predicts which one is right; β0 is the log-odds left when ``d = 0`` (the
    gap the property does not account for);
  * within-image (`config.random_draws`): pairs of independent draws of random, whose
    kept sets vary independently of the image, the same regression without intercept.
Also per-class top-1 with paired differences, and 7x7 kept-frequency heatmaps.
Writes analysis.json, analysis.md, kept_frequency.png, kept_frequency_layers.png and
(``config.per_image``) per_image.npz; last line ``kept_token_analysis_ok=1``.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402
from scipy import stats  # noqa: E402

from experiments import cli, common  # noqa: E402
from ztprune_jax.data import FASHION_MNIST_CLASSES, load_fashion_mnist  # noqa: E402
from ztprune_jax.eval import eval_lib, evaluation, intervals  # noqa: E402
from ztprune_jax.eval import kept_tokens as kt  # noqa: E402
from ztprune_jax.pruning.transforms import PruneArgs  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/kept_token_analysis.py", "Analysis config."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the outputs go.")

# property -> (description, predicted sign of its effect on correctness: +1 higher is
# better, -1 lower is better, 0 no prediction)
PROPERTIES = {
  "object_share": ("share of kept patches on the garment (1 - blank share)", +1),
  "coverage": ("share of garment patches kept", +1),
  "neighbour_coverage": ("share of garment patches kept or with a kept 4-neighbour", +1),
  "distance_to_kept": ("mean distance (patches) of a garment patch to the nearest kept", -1),
  "boundary_share": ("share of kept garment patches on the garment's outline", 0),
  "centroid_offset": ("distance (patches) of the kept centroid from the garment's", -1),
  # added after looking at the first run's heatmaps and error flows (exploratory; the
  # `heldout` config arg re-tests it on test images the hypothesis was not formed on)
  "top_coverage": ("share of the garment's top two occupied rows kept (neckline)", +1),
  "redundancy_key": ("mean max cosine to another kept patch token, head-mean keys", -1),
  "redundancy_x": ("mean max cosine to another kept patch token, block output x", -1),
}


def _capture(mdl, name):
  del mdl
  return name in ("attention_residual", "mlp_residual")


@functools.lru_cache(maxsize=8)
def _forward(pruned):
  """Jitted ``(params, images, args) -> (logits, kept, keys, xs)`` of a pruned model:
  kept positions per pruning layer, and per pruning block its head-mean keys
  ``[B, N, dh]`` and output ``x [B, N, D]`` (before the layer prunes)."""
  layers = [p.layer for p in pruned.token_transform.plans if not p.is_noop]

  @jax.jit
  def f(params, images, args):
    (logits, state), inter = pruned.apply(
      {"params": params}, images, return_state=True, transform_args=args,
      capture_intermediates=_capture, mutable=["intermediates"],
    )  # fmt: skip
    it = inter["intermediates"]
    keys = [it[f"block_{l}"]["attention_residual"][0][1].keys.mean(axis=1) for l in layers]
    xs = [it[f"block_{l}"]["mlp_residual"][0] for l in layers]
    return logits, state.kept, keys, xs

  return f


def _set_features(feats, block_pos, kept_pos, p):
  """Features ``[B, K, F]`` of the kept patch tokens (prefix dropped) of one block."""
  idx = kt.block_indices(block_pos, kept_pos[:, p:])  # [B, K]
  return np.take_along_axis(np.asarray(feats), idx[:, :, None], axis=1)


def _measure(model, pruned, params, loader, obj, hparams, rng):
  """Per image: own top-1 prediction and, per pruning layer, every property.

  Returns ``(pred [M], kept [M, L, g, g], props {name: [M, L]})``.
  """
  f = _forward(pruned)
  p, g = model.num_prefix_tokens, model.image_size // model.patch_size
  preds, masks, props, row = [], [], {k: [] for k in PROPERTIES}, 0
  for i, (images, _, mask) in enumerate(loader):
    real = np.asarray(mask)
    args = PruneArgs(hparams=hparams, rng=jax.random.fold_in(rng, i))
    logits, kept, keys, xs = jax.device_get(f(params, jnp.asarray(images), args))
    n = int(real.sum())
    o = obj[row : row + n]
    top = kt.top_rows(o, 2)
    row += n
    preds.append(np.argmax(logits, axis=-1)[real])
    block_pos = np.broadcast_to(np.arange(p + g * g), (n, p + g * g))
    per = {k: [] for k in PROPERTIES}
    layer_masks = []
    for j, pos in enumerate(kept):
      pos = np.asarray(pos)[real]
      km = kt.kept_grid(pos, g, p)
      layer_masks.append(km)
      per["object_share"].append(kt.object_share(km, o))
      per["coverage"].append(kt.coverage(km, o))
      per["neighbour_coverage"].append(kt.neighbour_coverage(km, o))
      per["distance_to_kept"].append(kt.distance_to_kept(km, o))
      per["boundary_share"].append(kt.boundary_share(km, o))
      per["centroid_offset"].append(kt.centroid_offset(km, o))
      per["top_coverage"].append(kt.coverage(km, top))
      k_feat = _set_features(np.asarray(keys[j])[real], block_pos, pos, p)
      x_feat = _set_features(np.asarray(xs[j])[real], block_pos, pos, p)
      per["redundancy_key"].append(kt.redundancy(k_feat))
      per["redundancy_x"].append(kt.redundancy(x_feat))
      block_pos = pos
    masks.append(np.stack(layer_masks, axis=1))
    for k in PROPERTIES:
      props[k].append(np.stack(per[k], axis=1))
  return (np.concatenate(preds), np.concatenate(masks),
          {k: np.concatenate(v) for k, v in props.items()})  # fmt: skip


def _mean_ci(v):
  v = np.asarray(v, np.float64)
  v = v[np.isfinite(v)]
  if v.size < 2:
    return {"mean": float(v.mean()) if v.size else float("nan"), "low": None, "high": None,
            "n": int(v.size)}  # fmt: skip
  half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
  m = float(v.mean())
  return {"mean": m, "low": m - half, "high": m + half, "n": int(v.size)}


def _binned(values, correct):
  """Accuracy by pooled quintiles of ``values`` (Wilson intervals)."""
  ok = np.isfinite(values)
  v, c = values[ok], correct[ok]
  edges = np.quantile(v, np.linspace(0, 1, 6))
  bins = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, 4)
  out = []
  for b in range(5):
    sel = bins == b
    n = int(sel.sum())
    if n == 0:
      continue
    acc = float(c[sel].mean())
    lo, hi = intervals.accuracy_interval(acc, n)
    out.append({"low_edge": float(edges[b]), "high_edge": float(edges[b + 1]), "n": n,
                "top1": acc, "ci95": [lo, hi]})  # fmt: skip
  return out


def _pooled_logit(values, correct, method_ids, num_methods):
  """correct ~ per-method intercepts + standardised property."""
  ok = np.isfinite(values)
  v, c, m = values[ok], correct[ok], method_ids[ok]
  z = (v - v.mean()) / v.std()
  x = np.concatenate([np.eye(num_methods)[m], z[:, None]], axis=1)
  fit = kt.fit_logistic(x, c)
  return {"odds_ratio_per_sd": float(np.exp(fit["coef"][-1])),
          "or_ci95": [float(np.exp(fit["low"][-1])), float(np.exp(fit["high"][-1]))],
          "p": fit["p"][-1], "sd": float(v.std()), "n": fit["n"]}  # fmt: skip


def _paired(prop_a, prop_b, correct_a, correct_b, sign, intercept=True):
  """Paired analysis of one property on the images where exactly one method is right."""
  a_only, b_only = correct_a & ~correct_b, correct_b & ~correct_a
  d = prop_a - prop_b
  ok = np.isfinite(d)
  out = {"a_only": int(a_only.sum()), "b_only": int(b_only.sum()),
         "mean_d_all": _mean_ci(d[ok])}  # fmt: skip
  out["mean_d_a_only"] = _mean_ci(d[a_only & ok])
  out["mean_d_b_only"] = _mean_ci(d[b_only & ok])
  # Sign test within each group: is d in the direction that favours the right method?
  if sign:
    for name, grp, want in (("a_only", a_only, sign), ("b_only", b_only, -sign)):
      dd = d[grp & ok]
      hits, n = int(np.sum(np.sign(dd) == want)), int(np.sum(dd != 0))
      p = stats.binomtest(hits, n).pvalue if n else 1.0
      share = hits / n if n else float("nan")
      ci = intervals.accuracy_interval(share, n) if n else (None, None)
      out[f"sign_{name}"] = {"favouring": hits, "nonzero": n, "share": share, "ci95": list(ci),
                             "p": float(p)}  # fmt: skip
  disc = (a_only | b_only) & ok
  dd, y = d[disc], a_only[disc]
  if dd.size < 3 or dd.std() == 0:
    return out
  sd = float(dd.std())
  x = np.stack([np.ones_like(dd), dd / sd], axis=1) if intercept else (dd / sd)[:, None]
  fit = kt.fit_logistic(x, y)
  out["logit"] = {"sd_d": sd, **fit}
  if intercept:
    base = kt.fit_logistic(np.ones((dd.size, 1)), y)
    out["logit_intercept_only"] = base
    b0 = fit["coef"][0]
    m = len(prop_a)
    out["gap_observed"] = (int(a_only.sum()) - int(b_only.sum())) / m
    out["gap_at_d0"] = float(dd.size * (2 / (1 + np.exp(-b0)) - 1) / m)
  return out


def _explained(res, props, correct, pairs):
  """Each pair's log-odds gap that a property's within-image effect predicts.

  The effect per unit of the property is the random-draw slope (β1 / sd(d), kept sets
  that vary independently of the image); times the pair's mean property difference on
  its discordant images it gives the log-odds of ``a`` being the right one that the
  property alone predicts, next to the observed ``log(a_only / b_only)``.
  """
  out = {}
  for pair in pairs:
    a, b = pair.split(":")
    disc = correct[a] ^ correct[b]
    a_only, b_only = int(np.sum(correct[a] & ~correct[b])), int(np.sum(correct[b] & ~correct[a]))
    observed = float(np.log(a_only / b_only)) if a_only and b_only else float("nan")
    out[pair] = {}
    for k, r in res["random_draws"].items():
      if "logit" not in r:
        continue
      lg = r["logit"]
      d = (props[a][k][:, -1] - props[b][k][:, -1])[disc]
      md = float(np.nanmean(d))
      per_unit = [lg["coef"][0] / lg["sd_d"], lg["low"][0] / lg["sd_d"], lg["high"][0] / lg["sd_d"]]
      pred = sorted(u * md for u in per_unit[1:])
      out[pair][k] = {"mean_d": md, "predicted": per_unit[0] * md, "predicted_ci95": pred,
                      "observed": observed, "per_layer": []}  # fmt: skip
      for j, rj in enumerate(res["random_draws_per_layer"].get(k, [])):
        if "logit" not in rj:
          out[pair][k]["per_layer"].append(None)
          continue
        dj = float(np.nanmean((props[a][k][:, j] - props[b][k][:, j])[disc]))
        out[pair][k]["per_layer"].append(rj["logit"]["coef"][0] / rj["logit"]["sd_d"] * dj)
  return out


def _error_flows(pair, correct, preds, labels, top=8):
  """Where each method's extra errors go: ``(true, predicted)`` counts, largest first."""
  a, b = pair.split(":")
  names = list(FASHION_MNIST_CLASSES)

  def flows(wrong, right):
    sel = ~correct[wrong] & correct[right]
    pairs, counts = np.unique(np.stack([labels[sel], preds[wrong][sel]], 1), axis=0,
                              return_counts=True)  # fmt: skip
    order = np.argsort(-counts)[:top]
    return [[names[int(pairs[i, 0])] if pairs[i, 0] < len(names) else str(pairs[i, 0]),
             names[int(pairs[i, 1])] if pairs[i, 1] < len(names) else str(pairs[i, 1]),
             int(counts[i])] for i in order]  # fmt: skip

  return {f"{a}_wrong_{b}_right": flows(a, b), f"{b}_wrong_{a}_right": flows(b, a),
          f"{a}_predicted": np.bincount(preds[a], minlength=len(names)).tolist(),
          f"{b}_predicted": np.bincount(preds[b], minlength=len(names)).tolist()}  # fmt: skip


def _heatmaps(freq, obj_freq, path_last, path_layers, dpi):
  names = list(freq)
  n_layers = next(iter(freq.values())).shape[0]
  fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.0 * (len(names) + 1), 2.4))
  panels = [("garment (non-blank)", obj_freq)] + [(m, freq[m][-1]) for m in names]
  for ax, (title, f) in zip(axes, panels, strict=True):
    im = ax.imshow(f, vmin=0, vmax=1, cmap="viridis")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.colorbar(im, ax=axes, fraction=0.02)
  fig.suptitle("share of images in which each patch is kept (after the last layer)", fontsize=9)
  fig.savefig(path_last, dpi=dpi)
  plt.close(fig)
  fig, axes = plt.subplots(len(names), n_layers, figsize=(1.6 * n_layers, 1.7 * len(names)),
                           squeeze=False)  # fmt: skip
  for r, m in enumerate(names):
    for l in range(n_layers):
      ax = axes[r, l]
      ax.imshow(freq[m][l], vmin=0, vmax=1, cmap="viridis")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(f"layer {l + 1}", fontsize=8)
      if l == 0:
        ax.set_ylabel(m, fontsize=7)
  fig.suptitle("kept frequency per pruning layer", fontsize=9)
  fig.savefig(path_layers, dpi=dpi)
  plt.close(fig)


def _fmt_ci(r, scale=1.0, digits=3):
  if r.get("low") is None:
    return f"{scale * r['mean']:.{digits}f}"
  return (f"{scale * r['mean']:.{digits}f} [{scale * r['low']:.{digits}f}, "
          f"{scale * r['high']:.{digits}f}]")  # fmt: skip


def _markdown(res) -> str:
  methods = list(res["methods"])
  lines = [f"# Kept-token analysis ({res['model']}, {res['images']}, {res['budget']})", ""]
  lines += ["## Top-1", "", "| method | top-1 (%) evaluate | own argmax | demo | agree |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
  for m in methods:
    r = res["methods"][m]
    exp = r["expected_top1"]
    demo = "-" if exp is None else f"{100 * exp:.2f}"
    own = f"{100 * r['top1_own']:.2f}"
    lines.append(f"| {m} | {100 * r['top1']:.2f} | {own} | {demo} | {r['own_agrees']:.4f} |")
  lines += ["", "## Properties after the last pruning layer (mean [95 % CI] over images)", ""]
  lines += ["| property | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
  for k in PROPERTIES:
    cells = [_fmt_ci(res["methods"][m]["last"][k]) for m in methods]
    lines.append(f"| {k} | " + " | ".join(cells) + " |")
  lines += ["", "Per layer (means):", ""]
  for k in PROPERTIES:
    lines.append(f"- {k}: " + "; ".join(
      f"{m} " + ", ".join(f"{v:.3f}" for v in res["methods"][m]["per_layer"][k])
      for m in methods))  # fmt: skip
  lines += ["", "## Paired (images where exactly one of a, b is right)", "",
            "d = property(a) - property(b). β1: log-odds that a is the right one per SD of d; "
            "β0: log-odds at d = 0 (intercept-only: the raw gap).", "",
            "| a:b | property | a only | b only | mean d (a only) | mean d (b only) | "
            "β1 [95 % CI] | p | β0 alone | β0 with d | gap obs. | gap at d=0 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
  for pair, per_prop in res["paired"].items():
    for k, r in per_prop.items():
      if "logit" not in r:
        continue
      lg, b = r["logit"], r["logit_intercept_only"]
      lines.append(
        f"| {pair} | {k} | {r['a_only']} | {r['b_only']} | {_fmt_ci(r['mean_d_a_only'])} | "
        f"{_fmt_ci(r['mean_d_b_only'])} | {lg['coef'][1]:.2f} [{lg['low'][1]:.2f}, "
        f"{lg['high'][1]:.2f}] | {lg['p'][1]:.2g} | {b['coef'][0]:.2f} [{b['low'][0]:.2f}, "
        f"{b['high'][0]:.2f}] | {lg['coef'][0]:.2f} [{lg['low'][0]:.2f}, {lg['high'][0]:.2f}] | "
        f"{100 * r['gap_observed']:.2f} | {100 * r['gap_at_d0']:.2f} |"
      )
  lines += ["", "Sign tests within each discordant group (share of images whose d favours "
            "the method that is right):", ""]  # fmt: skip
  for pair, per_prop in res["paired"].items():
    for k, r in per_prop.items():
      if "sign_a_only" in r:
        sa, sb = r["sign_a_only"], r["sign_b_only"]
        lines.append(f"- {pair} {k}: a only {sa['favouring']}/{sa['nonzero']} (p={sa['p']:.2g}), "
                     f"b only {sb['favouring']}/{sb['nonzero']} (p={sb['p']:.2g})")  # fmt: skip
  lines += [
    "",
    "## Within image: independent draws of random (pairs of draws)",
    "",
    "| property | discordant | β1 per SD of d [95 % CI] | p |",
    "|---|---:|---:|---:|",
  ]
  for k, r in res["random_draws"].items():
    if "logit" in r:
      lg = r["logit"]
      lines.append(f"| {k} | {r['a_only'] + r['b_only']} | {lg['coef'][0]:.2f} "
                   f"[{lg['low'][0]:.2f}, {lg['high'][0]:.2f}] | {lg['p'][0]:.2g} |")  # fmt: skip
  lines += ["", "## Does a property's within-image effect predict each pair's gap?", "",
            "Predicted log-odds that a is the right one (discordant images) = random-draw "
            "slope per unit x mean d(a - b); observed = log(a only / b only).", "",
            "| a:b | property | mean d | predicted [95 % CI] | observed |",
            "|---|---|---:|---:|---:|"]  # fmt: skip
  for pair, per_prop in res["explained"].items():
    for k, r in per_prop.items():
      lo, hi = r["predicted_ci95"]
      lines.append(f"| {pair} | {k} | {r['mean_d']:+.3f} | {r['predicted']:+.2f} "
                   f"[{lo:+.2f}, {hi:+.2f}] | {r['observed']:+.2f} |")  # fmt: skip
  first = next(iter(res["explained"]), None)
  if first:
    lines += ["", f"Per pruning layer, {first} (predicted log-odds from each layer's kept set):",
              ""]  # fmt: skip
    for k, r in res["explained"][first].items():
      vals = ", ".join("-" if v is None else f"{v:+.2f}" for v in r["per_layer"])
      lines.append(f"- {k}: {vals} (observed {r['observed']:+.2f})")
  lines += ["", "## Error flows (true -> predicted, images only the other method gets right)", ""]
  for pair, fl in res["error_flows"].items():
    for key, rows in fl.items():
      if key.endswith("_right"):
        lines.append(f"- {pair} {key}: " + ", ".join(f"{t} -> {p_} {n}" for t, p_, n in rows))
  lines += ["", "## Pooled over methods (last layer)", "",
            "| property | OR per SD [95 % CI] | p | top-1 by pooled quintile (%) |",
            "|---|---:|---:|---|"]  # fmt: skip
  for k, r in res["pooled"].items():
    lg = r["logit"]
    bins = ", ".join(f"{100 * b['top1']:.1f}" for b in r["binned"])
    lines.append(f"| {k} | {lg['odds_ratio_per_sd']:.2f} [{lg['or_ci95'][0]:.2f}, "
                 f"{lg['or_ci95'][1]:.2f}] | {lg['p']:.2g} | {bins} |")  # fmt: skip
  lines += ["", "## Per class: top-1 (%) and paired difference wpr - random", "",
            "| class | n | " + " | ".join(methods) + " | wpr - random [95 % CI] | p |",
            "|---|---:|" + "---:|" * len(methods) + "---:|---:|"]  # fmt: skip
  for cls, r in res["per_class"].items():
    d = r.get("wpr_minus_random")
    if d is None:
      tail = "- | -"
    else:
      ci = f"[{100 * d['low']:.1f}, {100 * d['high']:.1f}]"
      tail = f"{100 * d['diff']:.1f} {ci} | {d['p']:.2g}"
    accs = " | ".join(f"{100 * r['top1'][m]:.1f}" for m in methods)
    lines.append(f"| {cls} | {r['n']} | {accs} | {tail} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  model = eval_lib.build_model(c)
  params, weights = eval_lib.load_params(c, model)
  loader, desc = eval_lib.build_loader(c, model)
  raw, raw_labels = load_fashion_mnist(c.data.split or "test", c.data.data_dir)
  idx = np.asarray(loader.indices)
  labels = np.concatenate([np.asarray(y)[np.asarray(m)] for _, y, m in loader])
  if not np.array_equal(labels, raw_labels[idx]):
    raise ValueError("loader labels differ from the raw Fashion-MNIST labels at its indices")
  obj = kt.object_mask(raw[idx], model.patch_size)  # [M, g, g]
  full = evaluation.method_gflops(model, "none", None)[0]
  budget = round(c.budget_fraction * full, 6)
  print(f"model       {c.model_name}, weights {weights}")
  print(f"evaluation  {desc}")
  print(f"budget      {budget:.4g} GFLOPs ({c.budget_fraction} of {full:.4g})")
  print(f"garment     {obj.mean():.3f} of all patches are non-blank")
  res = {"model": c.model_name, "weights": weights,
         "images": f"test {int(idx[0])}..{int(idx[-1])} ({len(idx)})",
         "budget": f"{budget:.4g} GFLOPs ({c.budget_fraction} of {full:.4g})",
         "object_patch_share": float(obj.mean()), "methods": {}}  # fmt: skip
  correct, props, freq, sched, preds = {}, {}, {}, {}, {}
  rng = jax.random.key(c.seed)
  for m in c.methods:
    bs = eval_lib.schedule_for(c, model, m, budget)
    pruned = eval_lib.build_pruned(c, model, m, bs.schedule)
    hp = eval_lib.hparams_for(c, pruned)
    ev = evaluation.evaluate(pruned, params, loader, rng=rng, hparams=hp, progress=False)
    pred, masks, p = _measure(model, pruned, params, loader, obj, hp, rng)
    own = pred == labels
    correct[m], props[m], freq[m], sched[m] = ev.correct, p, masks.mean(axis=0), bs.schedule
    preds[m] = pred
    exp = c.expected_top1.get(m)
    res["methods"][m] = {
      "schedule": bs.schedule, "gflops": bs.gflops, "top1": float(ev.top1),
      "top1_ci95": list(intervals.accuracy_interval(ev.top1, ev.num_examples)),
      "top1_own": float(own.mean()), "own_agrees": float(np.mean(own == ev.correct)),
      "expected_top1": exp, "reproduces_demo": None if exp is None else
      bool(abs(ev.top1 - exp) < 0.5 / ev.num_examples + 1e-4),
      "last": {k: _mean_ci(v[:, -1]) for k, v in p.items()},
      "per_layer": {k: [float(np.nanmean(v[:, j])) for j in range(v.shape[1])]
                    for k, v in p.items()},
    }  # fmt: skip
    print(f"{m:<14} top1 {100 * ev.top1:.2f} (own argmax {100 * own.mean():.2f}, demo "
          f"{'-' if exp is None else f'{100 * exp:.2f}'}), coverage "
          f"{np.nanmean(p['coverage'][:, -1]):.3f}, redundancy_key "
          f"{np.nanmean(p['redundancy_key'][:, -1]):.3f}")  # fmt: skip

  res["paired"] = {}
  for pair in c.pairs:
    a, b = pair.split(":")
    if a not in correct or b not in correct:
      raise ValueError(f"config.pairs: {pair!r} names a method not in config.methods")
    res["paired"][pair] = {
      k: _paired(props[a][k][:, -1], props[b][k][:, -1], correct[a], correct[b], sign)
      for k, (_, sign) in PROPERTIES.items()
    }

  # Independent draws of random on the same images: the kept set varies, the image not.
  draws_c, draws_p = [correct["random"]], [props["random"]]
  if c.random_draws and "random" in c.methods:
    pruned = eval_lib.build_pruned(c, model, "random", sched["random"])
    for d in range(c.random_draws):
      key = jax.random.fold_in(rng, 1_000_003 + d)  # our choice: keys apart from the demo's
      pred, _, p = _measure(model, pruned, params, loader, obj, None, key)
      draws_c.append(pred == labels)
      draws_p.append(p)
  res["random_draws"] = {}
  n_pairs = len(draws_c) // 2
  for k, (_, sign) in PROPERTIES.items():
    if n_pairs == 0:
      continue
    pa = np.concatenate([draws_p[2 * i][k][:, -1] for i in range(n_pairs)])
    pb = np.concatenate([draws_p[2 * i + 1][k][:, -1] for i in range(n_pairs)])
    ca = np.concatenate([draws_c[2 * i] for i in range(n_pairs)])
    cb = np.concatenate([draws_c[2 * i + 1] for i in range(n_pairs)])
    res["random_draws"][k] = _paired(pa, pb, ca, cb, sign, intercept=False)
  res["random_draw_top1"] = [float(x.mean()) for x in draws_c]
  # The same per pruning layer (the later kept sets are subsets of the earlier ones).
  res["random_draws_per_layer"] = {}
  for k, (_, sign) in PROPERTIES.items():
    if n_pairs == 0:
      continue
    fits = []
    for j in range(draws_p[0][k].shape[1]):
      pa = np.concatenate([draws_p[2 * i][k][:, j] for i in range(n_pairs)])
      pb = np.concatenate([draws_p[2 * i + 1][k][:, j] for i in range(n_pairs)])
      ca = np.concatenate([draws_c[2 * i] for i in range(n_pairs)])
      cb = np.concatenate([draws_c[2 * i + 1] for i in range(n_pairs)])
      fits.append(_paired(pa, pb, ca, cb, sign, intercept=False))
    res["random_draws_per_layer"][k] = fits
  res["explained"] = _explained(res, props, correct, c.pairs)
  res["error_flows"] = {pair: _error_flows(pair, correct, preds, labels) for pair in c.pairs}

  ids = np.repeat(np.arange(len(c.methods)), len(labels))
  all_correct = np.concatenate([correct[m] for m in c.methods])
  res["pooled"] = {}
  for k in PROPERTIES:
    v = np.concatenate([props[m][k][:, -1] for m in c.methods])
    res["pooled"][k] = {"logit": _pooled_logit(v, all_correct, ids, len(c.methods)),
                        "binned": _binned(v, all_correct)}  # fmt: skip

  res["per_class"] = {}
  for cls in range(model.num_classes):
    sel = labels == cls
    if not sel.any():
      continue
    name = FASHION_MNIST_CLASSES[cls] if cls < len(FASHION_MNIST_CLASSES) else str(cls)
    r = {"n": int(sel.sum()), "top1": {m: float(correct[m][sel].mean()) for m in c.methods},
         "garment_patches": float(obj[sel].sum(axis=(1, 2)).mean())}  # fmt: skip
    if "wpr" in correct and "random" in correct and sel.sum() > 1:
      r["wpr_minus_random"] = intervals.paired_difference(correct["wpr"][sel],
                                                          correct["random"][sel])  # fmt: skip
    res["per_class"][name] = r

  per_image = {"labels": labels, "index": idx}
  for m in c.methods:
    per_image[f"{m}/correct"] = correct[m]
    per_image[f"{m}/pred"] = preds[m]
    for k, v in props[m].items():
      per_image[f"{m}/{k}"] = v.astype(np.float32)  # [M, L]
  for d, (cd, pd) in enumerate(zip(draws_c, draws_p, strict=True)):
    per_image[f"random_draw{d}/correct"] = cd
    for k in PROPERTIES:
      per_image[f"random_draw{d}/{k}"] = pd[k].astype(np.float32)
  if c.per_image:
    np.savez_compressed(os.path.join(workdir, "per_image.npz"), **per_image)
  res["kept_frequency_last"] = {m: freq[m][-1].round(4).tolist() for m in c.methods}
  res["object_frequency"] = obj.mean(axis=0).round(4).tolist()
  _heatmaps(freq, obj.mean(axis=0), os.path.join(workdir, "kept_frequency.png"),
            os.path.join(workdir, "kept_frequency_layers.png"), c.heatmap_dpi)  # fmt: skip
  res["seconds"] = time.perf_counter() - t0
  eval_lib.write_json(os.path.join(workdir, "analysis.json"), res)
  with open(os.path.join(workdir, "analysis.md"), "w") as f:
    f.write(_markdown(res))
  print(f"wrote       {workdir}/analysis.json, analysis.md, kept_frequency*.png")
  print(f"seconds     {res['seconds']:.0f}")
  print("kept_token_analysis_ok=1")


if __name__ == "__main__":
  cli.run(main)
