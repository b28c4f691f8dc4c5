"""Demo: the shipped Fashion-MNIST ViT pruned by every method at two FLOPs budgets.

`python -m experiments.demo --config=configs/demo.py --workdir=results/demo` (`make demo`).
Evaluates the unpruned model, the baselines (random, top-k CLS attention, ToMe) and
Zero-TPrune with the constant-r schedule every method shares, Zero-TPrune with a schedule
found by the Monte-Carlo search on a calibration split, and the ablation ladder at the
first budget; prints a table and writes summary.json, table.md and two PNGs. See
configs/demo.py.
"""

import json
import os
import time

import tqdm.auto as tqdm
from absl import flags
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax import eval_lib, evaluation, plots

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Demo config.")
_WORKDIR = flags.DEFINE_string("workdir", "results/demo", "Where the outputs go.")

SEARCHED = "zero_tprune_searched"


def _loader(c, model, start, num):
  c = c.copy_and_resolve_references()
  c.data.start, c.data.num_examples = start, num
  return eval_lib.build_loader(c, model)


def _search(c, model, params, calib, budget, workdir):
  """The searched Zero-TPrune schedule at ``budget`` as a `BudgetSchedule`."""
  opts = eval_lib.method_options(c, "zero_tprune")
  opts.pop("s_fraction", None)  # sampled by the search
  res = zt.search_schedule(
    model, params, calib[0], budget_gflops=budget, num_samples=c.search.num_samples,
    seed=c.seed, score=c.search.score, labels=calib[1], batch_size=c.search.batch_size,
    progress=c.progress, **opts,
  )  # fmt: skip
  path = os.path.join(workdir, f"search_{budget:.4g}.csv")
  if os.path.exists(path):
    os.remove(path)  # one search per file
  for row in res.table:
    eval_lib.append_csv(path, {**row, "schedule": json.dumps(row["schedule"])})
  schedule = [list(e) for e in res.best]
  g, o = evaluation.method_gflops(model, "zero_tprune", schedule, **opts)
  return evaluation.BudgetSchedule(schedule, -1, g, o), opts, res


def _overlays(c, model, params, images, budget, path):
  panels = {m: eval_lib.method_panel(c, model, params, images, m, budget)[0] for m in c.methods}
  t = eval_lib.build_transform(c, model)
  plots.plot_kept_patches(images, panels, path, patch_size=model.patch_size, mean=t.mean,
                          std=t.std)  # fmt: skip


def _table(rows, base_ips):
  lines = [
    "| method | budget | GFLOPs | top-1 (%) | img/s | speed-up |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    ips = r["img_per_s"]
    budget = "-" if r["budget_gflops"] is None else f"{r['budget_gflops']:.4g}"
    lines.append(
      f"| {r['method']} | {budget} | {r['gflops']:.4g} | {100 * r['top1']:.2f} | "
      f"{ips:.0f} | {ips / base_ips:.2f}x |"
    )
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  common.setup_runtime()
  c = _CONFIG.value
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  t_start = time.perf_counter()
  model = eval_lib.build_model(c)
  params, weights = eval_lib.load_params(c, model)
  calib_loader, calib_desc = _loader(c, model, 0, c.calib_size)
  eval_loader, eval_desc = _loader(c, model, c.calib_size, c.eval_size)
  calib = eval_lib.loader_arrays(calib_loader)
  full = evaluation.method_gflops(model, "none", None)[0]
  budgets = [round(f * full, 6) for f in c.budget_fractions]
  print(f"model       {c.model_name}, weights {weights}")
  print(f"calibration {calib_desc}")
  print(f"evaluation  {eval_desc}")
  print(f"budgets     {budgets} GFLOPs ({list(c.budget_fractions)} of {full:.4g})")

  methods = [m for m in c.methods if m in zt.PRUNERS]
  ladder = [m for m in c.ladder_methods if m in zt.PRUNERS]
  plan = [("none", None)] + [(m, b) for b in budgets for m in methods]
  plan += [(m, budgets[0]) for m in ladder if m not in methods]
  rows, by_key = [], {}
  for method, budget in tqdm.tqdm(plan, desc="methods x budgets", disable=not c.progress):
    rec = eval_lib.run_point(c, model, params, eval_loader, method, budget)
    rows.append(rec)
    by_key[(method, budget)] = rec
  searches = {}
  if c.search.enabled:
    for budget in budgets:
      bs, opts, res = _search(c, model, params, calib, budget, workdir)
      c_s = c.copy_and_resolve_references()
      c_s.method_options.zero_tprune = {**opts, "s_fraction": 0.0}  # fixed by the schedule
      rec = eval_lib.run_point(c_s, model, params, eval_loader, "zero_tprune", budget,
                               schedule=bs)  # fmt: skip
      rec["method"] = SEARCHED
      rows.append(rec)
      by_key[(SEARCHED, budget)] = rec
      searches[budget] = {"best": bs.schedule, "calib_agreement": res.best_score,
                          "samples": len(res.table)}  # fmt: skip

  base = by_key[("none", None)]
  table = _table(rows, base["img_per_s"])
  print(table)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(table)
  plots.plot_accuracy_vs_gflops(
    rows, os.path.join(workdir, "accuracy_vs_gflops.png"),
    title=f"{c.model_name} on Fashion-MNIST test[{c.calib_size}:]",
  )  # fmt: skip
  images = eval_lib.loader_arrays(_loader(c, model, c.calib_size, c.num_overlay_images)[0])[0]
  _overlays(c, model, params, images, budgets[0], os.path.join(workdir, "kept_tokens.png"))

  # The paper's claims on this model, stated as measured (True/False), not asserted.
  b0 = budgets[0]
  top1 = {m: by_key[(m, b0)]["top1"] for m in (*methods, *ladder) if (m, b0) in by_key}
  claims = {}
  if {"zero_tprune", "tome", "random"} <= set(top1):
    claims["zero_tprune >= tome >= random"] = top1["zero_tprune"] >= top1["tome"] >= top1["random"]
  lad = [top1[m] for m in ladder if m in top1]
  claims["ladder non-decreasing (" + " <= ".join(ladder) + ")"] = all(
    a <= b for a, b in zip(lad, lad[1:], strict=False)
  )
  for claim, holds in claims.items():
    print(f"claim       {claim} at {b0:.4g} GFLOPs: {holds}")
  summary = {
    "model": {"name": c.model_name, "weights": weights, "test_top1": base["top1"],
              "test_images": f"{c.calib_size}..{c.calib_size + base['num_examples'] - 1}",
              "gflops": base["gflops"], "img_per_s": base["img_per_s"]},
    "methods": {},
    "ladder_budget_gflops": b0,
    "claims": claims,
    "search": {str(b): s for b, s in searches.items()},
    "seconds": time.perf_counter() - t_start,
  }  # fmt: skip
  for r in rows:
    if r["method"] == "none":
      continue
    summary["methods"].setdefault(r["method"], []).append(
      {k: r[k] for k in ("budget_gflops", "gflops", "top1", "top5", "img_per_s", "schedule")}
    )
  eval_lib.write_json(os.path.join(workdir, "summary.json"), summary)
  print(f"wrote       {workdir}/summary.json, table.md, accuracy_vs_gflops.png, kept_tokens.png")
  print(f"seconds     {summary['seconds']:.0f}")
  print("demo_ok=1")


if __name__ == "__main__":
  cli.run(main)
