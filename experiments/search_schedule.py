"""Monte-Carlo schedule search: sample schedules under a GFLOPs budget, keep the best.

`python -m experiments.search_schedule --config=configs/search_schedule.py:runlocal
--workdir=/tmp/search` writes `<workdir>/search_table.csv` (one row per sample) and
`<workdir>/best_schedule.json`, and prints the best schedule; the last line is
`best_score=<x>`. The calibration images are the first `calib.num_images` examples of
`calib.dataset` (preprocessed for the model, with labels for `score=accuracy`) or, without
a dataset, seeded Gaussian noise. See configs/search_schedule.py.
"""

import csv
import json
import os

import jax
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax import data as data_lib
from ztprune_jax.eval import eval_lib
from ztprune_jax.pruning import search

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/search_schedule.py", "Schedule-search config."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the table and the best schedule go.")


def _data_config(c):
  """``c.calib`` as the eval configs' ``model_name``/``seed``/``data`` fields (`eval_lib`)."""
  k = c.calib
  data = dict(
    name=k.dataset, split=k.split, data_dir=k.data_dir, manual_dir=k.manual_dir,
    imagenet_builder=k.imagenet_builder, start=0, num_examples=k.num_images,
    batch_size=k.batch_size, num_threads=k.num_threads, crop_pct=k.crop_pct, mean=k.mean,
    std=k.std,
  )  # fmt: skip
  return ml_collections.ConfigDict(dict(model_name=c.model_name, seed=c.seed, data=data))


def _calibration(c, model):
  """Calibration images ``[N, H, W, C]``, labels ``[N]`` or None, and where they came from.

  With ``c.calib.dataset``: its first ``c.calib.num_images`` examples, preprocessed for
  the model by `eval_lib.build_loader` (as `experiments.evaluate` does). Without: seeded
  Gaussian images and no labels.
  """
  if c.calib.dataset:
    loader, source = eval_lib.build_loader(_data_config(c), model)
    return (*eval_lib.loader_arrays(loader), source)
  if c.score == "accuracy":
    raise ValueError(
      "score='accuracy' needs a labelled calibration dataset: set --config.calib.dataset "
      f"(one of {list(data_lib.DATASETS)})"
    )
  size = model.image_size
  channels = getattr(model, "in_channels", 3)
  images = jax.random.normal(jax.random.key(c.seed), (c.calib.num_images, size, size, channels))
  source = f"{c.calib.num_images} seeded Gaussian images (seed {c.seed}); no dataset configured"
  return np.asarray(images), None, source


def _write_outputs(workdir, c, res, meta):
  os.makedirs(workdir, exist_ok=True)
  columns = ["index", "schedule", "gflops", "overhead_gflops", "score", "top1_agreement", "kl"]
  if res.table and "accuracy" in res.table[0]:
    columns.append("accuracy")
  table_path = os.path.join(workdir, c.table_file)
  with open(table_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=[*columns, "is_best"])
    writer.writeheader()
    for i, row in enumerate(res.table):
      out = {k: row[k] for k in columns if k in row}
      out.update(index=i, schedule=json.dumps([list(e) for e in row["schedule"]]))
      writer.writerow({**out, "is_best": int(i == res.best_index)})
  best = res.table[res.best_index]
  best_path = os.path.join(workdir, c.best_file)
  with open(best_path, "w") as f:
    json.dump(
      {
        "schedule": [list(e) for e in res.best],
        "schedule_format": "[[block (0-indexed), keep_ratio, s_fraction], ...]",
        "score": res.score,
        "best_score": res.best_score,
        **{k: best[k] for k in ("gflops", "overhead_gflops", "top1_agreement", "kl")},
        "budget_gflops": res.budget_gflops,
        "unpruned_gflops": res.unpruned_gflops,
        **meta,
      },
      f,
      indent=2,
    )
  return table_path, best_path


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  model = zt.create_model(c.model_name, **c.model.to_dict())
  images, labels, source = _calibration(c, model)
  if c.checkpoint:
    params = zt.load_checkpoint(c.checkpoint, model)
    weights = c.checkpoint
  else:
    params = jax.jit(model.init)(jax.random.key(c.seed), images[:1])["params"]
    weights = f"random init (seed {c.seed}); no trained checkpoint configured"
  print(f"model        {c.model_name} {c.model.to_dict()}")
  print(f"weights      {weights}")
  print(f"calibration  {source}")
  res = search.search_schedule(
    model,
    params,
    images,
    budget_gflops=c.budget_gflops,
    num_samples=c.num_samples,
    seed=c.seed,
    method=c.method,
    score=c.score,
    labels=labels,
    batch_size=c.calib.batch_size,
    progress=c.progress,
    sampler_options=c.sampler.to_dict(),
    **c.pruner.to_dict(),
  )
  meta = dict(
    method=c.method,
    prune_options=c.pruner.to_dict(),
    model_name=c.model_name,
    model=c.model.to_dict(),
    weights=weights,
    calibration=source,
    seed=c.seed,
    num_samples=c.num_samples,
  )
  table_path, best_path = _write_outputs(workdir, c, res, meta)
  best = res.table[res.best_index]
  print(
    f"budget       {res.budget_gflops:.4g} GFLOPs blocks-only (unpruned {res.unpruned_gflops:.4g})"
  )
  print(f"samples      {len(res.table)} ({len({r['schedule'] for r in res.table})} distinct)")
  print(f"best         {json.dumps([list(e) for e in res.best])}")
  print(f"best gflops  {best['gflops']:.4g} (+{best['overhead_gflops']:.2g} pruning overhead)")
  print(f"best {res.score:<7} {res.best_score:.4g}  (agreement {best['top1_agreement']:.4g}, "
        f"kl {best['kl']:.4g})")  # fmt: skip
  print(f"wrote        {table_path}, {best_path}")
  print(f"best_score={res.best_score:.6g}")


if __name__ == "__main__":
  cli.run(main)
