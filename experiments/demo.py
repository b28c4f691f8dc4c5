"""Demo: the shipped Fashion-MNIST ViT pruned by every method at three FLOPs budgets.

`python -m experiments.demo --config=configs/demo.py --workdir=results/demo` (`make demo`).
Evaluates the unpruned model, the baselines (random, top-k CLS attention, ToMe) and
Zero-TPrune with the constant-r schedule every method shares, Zero-TPrune with a schedule
found by the Monte-Carlo search on a calibration split, and the ablation ladder at the
first budget; every top-1 carries a 95 % Wilson interval, and the paper's orderings are
stated as measured (an ordering between two methods only where their intervals do not
overlap). Prints a table and writes summary.json, table.md and two PNGs; one progress bar
with an ETA covers the whole run. See configs/demo.py.
"""

import concurrent.futures
import json
import os
import time

import jax
import tqdm.auto as tqdm
from absl import flags
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax.eval import eval_lib, evaluation, intervals, plots

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Demo config.")
_WORKDIR = flags.DEFINE_string("workdir", "results/demo", "Where the outputs go.")

SEARCHED = "zero_tprune_searched"


def _search(c, model, params, calib, budget, workdir, on_sample=None):
  """The searched Zero-TPrune schedule at ``budget`` as a `BudgetSchedule`."""
  opts = eval_lib.method_options(c, "zero_tprune")
  opts.pop("s_fraction", None)  # sampled by the search
  res = zt.search_schedule(
    model, params, calib[0], budget_gflops=budget, num_samples=c.search.num_samples,
    seed=c.seed, score=c.search.score, labels=calib[1], batch_size=c.search.batch_size,
    progress=False, on_sample=on_sample, **opts,
  )  # fmt: skip
  path = os.path.join(workdir, f"search_{budget:.4g}.csv")
  if os.path.exists(path):
    os.remove(path)  # one search per file
  for row in res.table:
    eval_lib.append_csv(path, {**row, "schedule": json.dumps(row["schedule"])})
  schedule = [list(e) for e in res.best]
  g, o = evaluation.method_gflops(model, "zero_tprune", schedule, **opts)
  return evaluation.BudgetSchedule(schedule, -1, g, o), opts, res


def _overlays(c, model, params, images, budget, path, bar):
  panels = {}
  for m in c.methods:
    panels[m] = eval_lib.method_panel(c, model, params, images, m, budget)[0]
    bar.update()
  t = eval_lib.build_transform(c, model)
  plots.plot_kept_patches(images, panels, path, patch_size=model.patch_size, mean=t.mean,
                          std=t.std)  # fmt: skip


def _table(rows, base_ips):
  lines = [
    "| method | budget | GFLOPs | top-1 (%) | 95 % interval | img/s | speed-up |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    ips = r["img_per_s"]
    budget = "-" if r["budget_gflops"] is None else f"{r['budget_gflops']:.4g}"
    lo, hi = r["top1_ci95"]
    lines.append(
      f"| {r['method']} | {budget} | {r['gflops']:.4g} | {100 * r['top1']:.2f} | "
      f"{100 * lo:.1f}–{100 * hi:.1f} | {ips:.0f} | {ips / base_ips:.2f}x |"
    )
  return "\n".join(lines) + "\n"


def _plan_units(c, plan, search_budgets):
  """Progress-bar units: per point its accuracy and its speed, per search its samples and
  its evaluation, and one per overlay panel."""
  searched = len(search_budgets) if c.search.enabled else 0
  return 2 * len(plan) + searched * (c.search.num_samples + 2) + len(c.methods)


def _enable_compilation_cache(path: str) -> None:
  """JAX's persistent compilation cache in ``path`` (every program, however quick)."""
  if not path:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _searched_point(c, model, params, calib, eval_loader, budget, workdir, bar):
  """Searches a schedule at ``budget`` and evaluates it: ``(record, config, search info)``."""
  bs, opts, res = _search(c, model, params, calib, budget, workdir,
                          on_sample=lambda _: bar.update())  # fmt: skip
  c_s = c.copy_and_resolve_references()
  c_s.method_options.zero_tprune = {**opts, "s_fraction": 0.0}  # fixed by the schedule
  rec = eval_lib.run_point(c_s, model, params, eval_loader, "zero_tprune", budget,
                           schedule=bs, throughput=False)  # fmt: skip
  bar.update()
  info = {"best": bs.schedule, "calib_agreement": res.best_score, "samples": len(res.table)}
  return rec, c_s, bs, info


def main(argv):
  del argv
  common.setup_runtime()
  c = _CONFIG.value
  workdir = _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  _enable_compilation_cache(c.compilation_cache_dir)
  t_start = time.perf_counter()
  quiet = c.copy_and_resolve_references()
  quiet.progress = False  # inner loops stay silent; the demo has one bar
  model = eval_lib.build_model(c)
  params, weights = eval_lib.load_params(c, model)
  calib_loader, calib_desc = eval_lib.build_loader(c, model, start=0, num_examples=c.calib_size)
  eval_loader, eval_desc = eval_lib.build_loader(
    c, model, start=c.calib_size, num_examples=c.eval_size
  )
  calib = eval_lib.loader_arrays(calib_loader)
  full = evaluation.method_gflops(model, "none", None)[0]
  budgets = [round(f * full, 6) for f in c.budget_fractions]
  for i in c.search_budgets:
    if not 0 <= i < len(budgets):
      raise ValueError(f"search_budgets holds {i}; valid indices 0..{len(budgets) - 1}")
  search_budgets = [budgets[i] for i in c.search_budgets] if c.search.enabled else []
  print(f"model       {c.model_name}, weights {weights}")
  print(f"calibration {calib_desc}")
  print(f"evaluation  {eval_desc}")
  print(f"budgets     {budgets} GFLOPs ({list(c.budget_fractions)} of {full:.4g})")

  methods = [m for m in c.methods if m in zt.PRUNERS]
  ladder = [m for m in c.ladder_methods if m in zt.PRUNERS]
  plan = [("none", None)] + [(m, b) for b in budgets for m in methods]
  plan += [(m, budgets[0]) for m in ladder if m not in methods]
  bar = tqdm.tqdm(total=_plan_units(c, plan, search_budgets), desc="demo", unit="step",
                  disable=not c.progress)  # fmt: skip
  overlay_loader, _ = eval_lib.build_loader(c, model, start=c.calib_size,
                                            num_examples=c.num_overlay_images)  # fmt: skip
  images = eval_lib.loader_arrays(overlay_loader)[0]
  overlay_path = os.path.join(workdir, "kept_tokens.png")

  def accuracy(method, budget):
    rec = eval_lib.run_point(quiet, model, params, eval_loader, method, budget, throughput=False)
    bar.update()
    return rec

  # Phase 1, accuracy: every point, the searches and the overlays, `workers` at a time
  # (compilation is single-threaded, so two jobs keep both cores busy). Each job is
  # deterministic (its own seeded key), so the numbers do not depend on the order.
  with concurrent.futures.ThreadPoolExecutor(max(1, c.workers)) as pool:
    searched = [pool.submit(_searched_point, quiet, model, params, calib, eval_loader, b,
                            workdir, bar) for b in search_budgets]  # fmt: skip
    points = [pool.submit(accuracy, m, b) for m, b in plan]
    overlays = pool.submit(_overlays, quiet, model, params, images, budgets[0], overlay_path, bar)
    rows = [f.result() for f in points]
    searched = [f.result() for f in searched]
    overlays.result()

  # Phase 2, speed: one point at a time on a quiet machine, timing the program that the
  # accuracy pass compiled (kept in memory or in the persistent cache: no recompilation).
  configs = [quiet] * len(rows)

  def pruned_at(method, budget):
    bs = eval_lib.schedule_for(quiet, model, method, budget)
    return eval_lib.build_pruned(quiet, model, method, bs.schedule)

  pruned = [model if m == "none" else pruned_at(m, b) for m, b in plan]
  searches = {}
  for budget, (rec, c_s, bs, info) in zip(search_budgets, searched, strict=True):
    rec["method"] = SEARCHED
    rows.append(rec)
    configs.append(c_s)
    pruned.append(eval_lib.build_pruned(c_s, model, "zero_tprune", bs.schedule))
    searches[budget] = info
  for r, cfg, pm in zip(rows, configs, pruned, strict=True):
    bar.set_postfix_str(f"img/s {r['method']}")
    r["img_per_s"] = eval_lib.point_throughput(cfg, model, pm, params)
    r["top1_ci95"] = intervals.accuracy_interval(r["top1"], r["num_examples"])
    bar.update()
  bar.close()
  by_key = {(r["method"], r["budget_gflops"]): r for r in rows}

  base = by_key[("none", None)]
  table = _table(rows, base["img_per_s"])
  print(table)
  with open(os.path.join(workdir, "table.md"), "w") as f:
    f.write(table)
  plots.plot_accuracy_vs_gflops(
    rows, os.path.join(workdir, "accuracy_vs_gflops.png"),
    title=f"{c.model_name} on {c.data.name} test[{c.calib_size}:{c.calib_size + c.eval_size}]",
    interval_key="top1_ci95",
  )  # fmt: skip

  # The paper's orderings on this model, judged with the intervals (stated, not asserted).
  b0 = budgets[0]
  top1_ci = {m: by_key[(m, b0)]["top1_ci95"] for m in (*methods, *ladder) if (m, b0) in by_key}
  claims = intervals.paper_claims(top1_ci, ladder)
  for name, claim in claims.items():
    print(f"claim       {name}: {claim['claim']} at {b0:.4g} GFLOPs: holds={claim['holds']} "
          f"{claim['steps']}")  # fmt: skip
  summary = {
    "model": {"name": c.model_name, "weights": weights, "test_top1": base["top1"],
              "test_top1_ci95": base["top1_ci95"],
              "test_images": f"{c.calib_size}..{c.calib_size + base['num_examples'] - 1}",
              "gflops": base["gflops"], "img_per_s": base["img_per_s"]},
    "methods": {},
    "ladder_budget_gflops": b0,
    "claims": claims,
    "search": {str(b): s for b, s in searches.items()},
    "seconds": time.perf_counter() - t_start,
  }  # fmt: skip
  keys = ("budget_gflops", "gflops", "top1", "top1_ci95", "top5", "num_examples", "img_per_s",
          "schedule")  # fmt: skip
  for r in rows:
    if r["method"] == "none":
      continue
    summary["methods"].setdefault(r["method"], []).append({k: r[k] for k in keys})
  eval_lib.write_json(os.path.join(workdir, "summary.json"), summary)
  print(f"wrote       {workdir}/summary.json, table.md, accuracy_vs_gflops.png, kept_tokens.png")
  print(f"unpruned    {base['img_per_s']:.0f} img/s (batch {c.throughput.batch_size})")
  print(f"seconds     {summary['seconds']:.0f}")
  print("demo_ok=1")


if __name__ == "__main__":
  cli.run(main)
