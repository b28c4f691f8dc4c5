"""Accuracy vs GFLOPs of every method over a range of budgets, and the ablation ladder.

`python -m experiments.sweep --config=configs/sweep.py:runlocal --workdir=/tmp/sweep`
writes `sweep.csv`, `accuracy_vs_gflops.png`, `ladder.csv` and `ladder.md` to the workdir;
the last line is `points=<rows of sweep.csv>`. See configs/sweep.py.
"""

import json
import os

from absl import flags
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax.eval import eval_lib, plots

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sweep.py", "Sweep config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the tables and the plot go.")

COLUMNS = (
  "method", "budget_gflops", "r", "gflops", "overhead_gflops", "total_gflops", "top1", "top5",
  "img_per_s", "num_examples", "eval_seconds", "schedule",
)  # fmt: skip


def _registered(methods, what):
  known = [m for m in methods if m in zt.PRUNERS]
  for m in methods:
    if m not in zt.PRUNERS:
      print(f"skip      {m}: not registered in ztprune_jax.PRUNERS ({what})")
  return known


def _ladder_markdown(rows, paper, budget):
  lines = [
    f"Ablation ladder at {budget:.4g} GFLOPs (blocks-only)",
    "",
    "| method | GFLOPs | top-1 (%) | top-5 (%) |" + (" paper top-1 (%) |" if paper else ""),
    "|---|---:|---:|---:|" + ("---:|" if paper else ""),
  ]
  for i, r in enumerate(rows):
    cells = [r["method"], f"{r['gflops']:.4g}", f"{100 * r['top1']:.2f}", f"{100 * r['top5']:.2f}"]
    if paper:
      cells.append(f"{paper[i]:.1f}" if i < len(paper) else "")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  model = eval_lib.build_model(c)
  methods = _registered(c.methods, "sweep")
  ladder = _registered(c.ladder_methods, "ladder")
  for i, b in enumerate(c.budgets_gflops):  # an unreachable budget fails before any run
    for m in methods:
      eval_lib.schedule_for(c, model, m, b, field=f"config.budgets_gflops[{i}]")
  for m in ladder:
    eval_lib.schedule_for(c, model, m, c.ladder_budget_gflops, field="config.ladder_budget_gflops")
  loader, data_desc = eval_lib.build_loader(c, model)
  params, weights = eval_lib.load_params(c, model)
  print(f"model     {c.model_name} {eval_lib.model_overrides(c)}")
  print(f"weights   {weights}")
  print(f"data      {data_desc}")
  writer, _ = eval_lib.metric_writer(workdir, c.tensorboard)

  cache = {}

  def point(method, budget):
    bs = eval_lib.schedule_for(c, model, method, budget)
    key = (method, json.dumps(bs.schedule))
    if key not in cache:
      rec = eval_lib.run_point(c, model, params, loader, method, budget)
      cache[key] = rec
      print(f"point     {method:<14} budget {budget if budget is not None else '-'}: "
            f"{rec['gflops']:.4g} G (r={rec['r']}), top1 {rec['top1']:.4f}"
            f"{'; ' + rec['note'] if rec['note'] else ''}"
            f"{f'; skipped {n} non-finite' if (n := rec['num_nonfinite']) else ''}")  # fmt: skip
      writer.write_scalars(int(round(rec["gflops"] * 1e3)), {f"sweep/{method}/top1": rec["top1"]})
    return {**cache[key], "budget_gflops": budget}

  rows = [point("none", None)] if c.include_unpruned else []
  rows += [point(m, b) for b in c.budgets_gflops for m in methods]
  ladder_rows = [point(m, c.ladder_budget_gflops) for m in ladder]
  writer.close()

  os.makedirs(workdir, exist_ok=True)
  csv_path = os.path.join(workdir, c.csv_file)
  if os.path.exists(csv_path):
    os.remove(csv_path)  # one sweep per file
  for r in rows:
    eval_lib.append_csv(csv_path, r, COLUMNS)
  plot_path = os.path.join(workdir, c.plot_file)
  plots.plot_accuracy_vs_gflops(rows, plot_path, title=f"{c.model_name}, {c.data.name}")
  ladder_csv = os.path.join(workdir, c.ladder_csv_file)
  if os.path.exists(ladder_csv):
    os.remove(ladder_csv)
  for r in ladder_rows:
    eval_lib.append_csv(ladder_csv, r, COLUMNS)
  paper = tuple(c.ladder_paper_top1) if c.ladder_paper_top1 is not None else ()
  md = _ladder_markdown(ladder_rows, paper, c.ladder_budget_gflops)
  with open(os.path.join(workdir, c.ladder_md_file), "w") as f:
    f.write(md)
  print(md)
  top1 = [r["top1"] for r in ladder_rows]
  ordered = all(a <= b for a, b in zip(top1, top1[1:], strict=False))
  print(f"ladder    non-decreasing in the listed order: {ordered}")
  print(f"wrote     {csv_path}, {plot_path}, {ladder_csv}, {c.ladder_md_file}")
  print(f"points={len(rows)}")


if __name__ == "__main__":
  cli.run(main)
