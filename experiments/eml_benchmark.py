"""EML on real offline data: baselines, ablations, multi-shot, 10 seeds (issue 7).

`python -m experiments.eml_benchmark --config=configs/eml_benchmark.py --workdir=results/eml`
writes `results.csv` (one row per data set, setting, seed, method), `summary.json`
(one-shot: ``{dataset: {method: {knn_error_mean, knn_error_std, online_error_mean, ..}}}``),
`summary_multi.json`, `rows.json.gz` (every row with its online mistakes), `tables.md`
(mean ± std tables, ms per update, paired wins, goal check),
`online_<dataset>_<setting>.png` and `command.txt`. With `:validate` it runs the
hyperparameter search on validation splits of the training stream instead and writes
`validation.csv` and `chosen.json`. The last two lines of a benchmark are
`eml_early100_sig_wins=<n>/<datasets> knn_sig_losses=<m>` (data sets where EML's online
error over the first 100 I-stage instances is significantly lower than every baseline's,
paired Wilcoxon over seeds, p < 0.05; comparisons where its 5-NN test error is significantly
higher) and `eml_wins=<n>/<datasets>` (lowest mean 5-NN error); a validation ends with
`validated=<n methods>`. `--merge=dir1,dir2` rebuilds the outputs from
partial runs (e.g. one process per data set) instead of running. `--config.parallel_seeds=True`
runs each method on all seeds at once over every device (a 1-D ``"data"`` mesh).
"""

import csv
import json
import math
import os
import sys

from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

import parallel_jax as parallel
from eml_jax import report, run_lib
from experiments import cli, common

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/eml_benchmark.py", "EML benchmark config."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the tables, summary and plots go.")
_MERGE = flags.DEFINE_list(
  "merge",
  None,
  "Workdirs of partial runs (e.g. one per data set) whose rows.json.gz to merge "
  "into --workdir's tables instead of running.",
)


def _grid_size(grid) -> int:
  return math.prod(len(vals) for vals in dict(grid).values())


def _n_runs(c):
  if c.task == "validate":
    v = c.validation
    n_points = sum(map(_grid_size, v.eml_grids)) + sum(map(_grid_size, v.baseline_grid.values()))
    return len(c.datasets) * len(v.seeds) * n_points
  per = 1 + len(c.ablations) + len(c.baselines)
  n_multi = len([d for d in c.datasets if d in c.multi.datasets])
  return len(c.seeds) * (len(c.datasets) * per + n_multi * len(c.multi.methods))


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  command = "python -m experiments.eml_benchmark " + " ".join(sys.argv[1:])
  bar = tqdm(total=_n_runs(c), desc=f"eml {c.task}", disable=not c.progress, mininterval=5)
  mesh = parallel.make_mesh() if c.parallel_seeds else None  # after the runtime is set up
  if c.task == "validate":
    rows, chosen = run_lib.run_validation(c, bar, mesh)
    bar.close()
    os.makedirs(workdir, exist_ok=True)
    fields = ["dataset", "seed", "method", "params", "stage", "knn_error", "online_error",
              "early100_online_error"]  # fmt: skip
    rows = report.with_early(rows)
    with open(os.path.join(workdir, "validation.csv"), "w", newline="") as f:
      w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
      w.writeheader()
      w.writerows(rows)
    with open(os.path.join(workdir, "chosen.json"), "w") as f:
      json.dump(dict(command=command, chosen=chosen), f, indent=1, sort_keys=True)
    with open(os.path.join(workdir, "command.txt"), "w") as f:
      f.write(command + "\n")
    for m, ch in chosen.items():
      print(
        f"{m:10s} {json.dumps(ch['params'])} mean validation 5-NN error {ch['mean_val_error']:.4f}"
      )
    print(f"validated={len(chosen)}")
    return
  if _MERGE.value:
    rows, seen = [], set()
    for d in _MERGE.value:  # a (data set, setting, seed, method) run twice counts once
      for r in report.load_rows(os.path.join(d, "rows.json.gz")):
        key = (r["dataset"], r["setting"], r["seed"], r["method"])
        if key not in seen:
          seen.add(key)
          rows.append(r)
  else:
    rows = run_lib.run_benchmark(c, bar, mesh)
  bar.close()
  os.makedirs(workdir, exist_ok=True)
  report.save_rows(rows, os.path.join(workdir, "rows.json.gz"))
  one = report.write_all(
    rows, workdir, baselines=tuple(c.baselines), ablations=tuple(c.ablations), command=command
  )
  with open(os.path.join(workdir, "command.txt"), "w") as f:
    f.write(command + "\n")
  for ds, by_m in one.items():
    best = min(by_m, key=lambda m: by_m[m]["knn_error_mean"])
    print(f"{ds:14s} eml {100 * by_m['eml']['knn_error_mean']:5.1f}%  best {best} "
          f"{100 * by_m[best]['knn_error_mean']:5.1f}%")  # fmt: skip
  wins = sum(
    all(by_m["eml"]["knn_error_mean"] < by_m[b]["knn_error_mean"] for b in c.baselines if b in by_m)
    for by_m in one.values()
  )
  sig = {ds: by_m["eml"].get("significant", {}) for ds, by_m in one.items()}  # none: no baseline
  sig_wins = sum(
    bool(s) and all(s["early100_online_error"].get(b) == "win" for b in c.baselines if b in by_m)
    for s, by_m in zip(sig.values(), one.values(), strict=True)
  )
  knn_losses = sum(v == "loss" for s in sig.values() for v in s.get("knn_error", {}).values())
  print(f"eml_early100_sig_wins={sig_wins}/{len(one)} knn_sig_losses={knn_losses}")
  print(f"eml_wins={wins}/{len(one)}")


if __name__ == "__main__":
  cli.run(main)
