"""Zero-TPrune's open points, one at a time, on a trained model at one FLOPs budget.

`python -m experiments.zero_tprune_findings --config=configs/zero_tprune_findings.py:fmnist
--workdir=results/findings/fmnist` evaluates every variant of `configs/zero_tprune_findings.py`
(one open point of the spec changed, the rest as `paper_reading`) and the reference methods
on a calibration and an evaluation split, and writes `findings.json`, `findings.md` and
`correct.npz` (each run's per-image top-1 hits, for re-analysis). Top-1 carries a 95 %
Wilson interval; each variant's difference to `paper_reading` is paired (same images) with
McNemar's exact p-value. The last lines name the variants that beat `paper_reading` on the
calibration split (p < 0.05), the only split a default may be chosen on.

`--pairs=tome:random,...` with the same `--workdir` only re-analyses a finished run: the
paired difference of any two of its runs, from `correct.npz` (nothing is evaluated).
"""

import json
import os
import time

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags
from tqdm import tqdm

from configs.zero_tprune_findings import REFERENCES, VARIANTS
from experiments import cli, common
from ztprune_jax.eval import eval_lib, evaluation, intervals

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/zero_tprune_findings.py", "Findings config."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the tables go.")
_PAIRS = flags.DEFINE_list(
  "pairs",
  None,
  "Only re-analyse: paired differences 'a:b' (run names) from the workdir's correct.npz, "
  "e.g. --pairs=tome:random,random:wpr_eir_vhf; nothing is evaluated.",
)

BASELINE = "paper_reading"
SPLITS = ("calib", "eval")


def _runs(c) -> list[tuple[str, str, str, dict]]:
  """``(name, open point, method, option overrides)`` of every run, variants first."""
  for name in (*c.variants, *c.references):
    if name not in VARIANTS and name not in REFERENCES:
      valid = sorted({*VARIANTS, *REFERENCES})
      raise ValueError(f"config.variants/references: unknown {name!r}; valid: {valid}")
  if BASELINE not in c.variants:
    raise ValueError(f"config.variants must include {BASELINE!r} (the paired baseline)")
  runs = [(n, VARIANTS[n][0], "zero_tprune", VARIANTS[n][1]) for n in c.variants]
  runs += [(n, "reference", *REFERENCES[n]) for n in c.references]
  return runs


def _evaluate_run(c, model, params, loaders, method, overrides, budget):
  """One run on both splits: its record (without per-image hits) and ``{split: hits}``."""
  cv = c.copy_and_resolve_references()
  opts = {**eval_lib.method_options(cv, method), **overrides}
  if "wpr_iters" in opts:
    opts["wpr_iters"] = tuple(opts["wpr_iters"])
  with cv.unlocked():
    cv.method_options[method] = opts
  bs = eval_lib.schedule_for(cv, model, method, budget, field="config.budget_fraction")
  pruned = eval_lib.build_pruned(cv, model, method, bs.schedule)
  rec = {"method": method, "options": dict(overrides), "r": bs.r,
         "gflops": bs.gflops, "overhead_gflops": bs.overhead_gflops}  # fmt: skip
  hits = {}
  for split, loader in loaders.items():
    res = evaluation.evaluate(
      pruned, params, loader, rng=jax.random.key(c.seed), hparams=eval_lib.hparams_for(cv, pruned),
      progress=False,
    )  # fmt: skip
    hits[split] = res.correct
    rec[f"{split}_top1"] = res.top1
    rec[f"{split}_top1_ci95"] = intervals.accuracy_interval(res.top1, res.num_examples)
    rec[f"{split}_n"] = res.num_examples
  return rec, hits


def _pct(x: float) -> str:
  return f"{100 * x:.2f}"


def _markdown(c, rows, budget, full) -> str:
  head = (
    f"{c.model_name} ({c.checkpoint}), Zero-TPrune at {budget:.4g} GFLOPs "
    f"({c.budget_fraction:g} of {full:.4g}; blocks-only). calibration: test images "
    f"0..{c.calib_size - 1}; evaluation: {c.calib_size}..{c.calib_size + c.eval_size - 1}. "
    f"Δ: paired top-1 difference to `{BASELINE}` in points, with its 95 % interval and "
    "McNemar's exact p.\n\n"
    "| run | open point | r | GFLOPs | calib top-1 | calib Δ (p) | eval top-1 (95 % CI) | "
    "eval Δ (95 % CI) | eval p |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
  )
  lines = []
  for r in rows:
    lo, hi = r["eval_top1_ci95"]
    dc, de = r["calib_vs_baseline"], r["eval_vs_baseline"]
    lines.append(
      f"| {r['name']} | {r['open_point']} | {r['r']} | {r['gflops']:.4g} | "
      f"{_pct(r['calib_top1'])} | {100 * dc['diff']:+.2f} ({dc['p']:.2g}) | "
      f"{_pct(r['eval_top1'])} ({_pct(lo)}–{_pct(hi)}) | {100 * de['diff']:+.2f} "
      f"({100 * de['low']:+.2f}…{100 * de['high']:+.2f}) | {de['p']:.2g} |"
    )
  return head + "\n".join(lines) + "\n"


def _significant(rows, sign: int) -> list[str]:
  """Variants whose calibration top-1 differs from the baseline's in ``sign``, p < 0.05."""
  out = []
  for r in rows:
    d = r["calib_vs_baseline"]
    if r["name"] in VARIANTS and r["name"] != BASELINE and sign * d["diff"] > 0 and d["p"] < 0.05:
      out.append(r["name"])
  return out


def print_pairs(workdir: str, pairs: list[str]) -> list[dict]:
  """Paired top-1 differences ``a − b`` on both splits from ``<workdir>/correct.npz``."""
  path = os.path.join(workdir, "correct.npz")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run the findings into this workdir first")
  hits = np.load(path)
  names = sorted({k.rsplit("__", 1)[0] for k in hits.files})
  out = []
  for pair in pairs:
    a, sep, b = pair.partition(":")
    if not sep or a not in names or b not in names:
      raise ValueError(f"--pairs entry {pair!r} must be 'a:b' with run names from {names}")
    for s in SPLITS:
      d = intervals.paired_difference(hits[f"{a}__{s}"], hits[f"{b}__{s}"])
      out.append({"a": a, "b": b, "split": s, **d})
      print(f"{a} - {b} [{s}]: {100 * d['diff']:+.2f} points ({100 * d['low']:+.2f}…"
            f"{100 * d['high']:+.2f}), McNemar p={d['p']:.2g}, only a/b right "
            f"{d['a_only']}/{d['b_only']}")  # fmt: skip
  return out


def main(argv):
  del argv
  if _PAIRS.value:
    if not _WORKDIR.value:
      raise ValueError("--pairs needs --workdir (the folder holding correct.npz)")
    print_pairs(_WORKDIR.value, _PAIRS.value)
    return
  c, workdir = common.start(_CONFIG, _WORKDIR)
  os.makedirs(workdir, exist_ok=True)
  t0 = time.perf_counter()
  runs = _runs(c)
  model = eval_lib.build_model(c)
  params, weights = eval_lib.load_params(c, model)
  loaders, descs = {}, {}
  loaders["calib"], descs["calib"] = eval_lib.build_loader(
    c, model, start=0, num_examples=c.calib_size
  )
  loaders["eval"], descs["eval"] = eval_lib.build_loader(
    c, model, start=c.calib_size, num_examples=c.eval_size
  )
  full = evaluation.method_gflops(model, "none", None)[0]
  budget = round(c.budget_fraction * full, 6)
  print(f"model       {c.model_name}, weights {weights}")
  for s in SPLITS:
    print(f"{s:<11} {descs[s]}")
  print(f"budget      {budget} GFLOPs ({c.budget_fraction} of {full:.4g})")
  rows, hits = [], {}
  for name, point, method, overrides in tqdm(runs, desc="findings", disable=not c.progress):
    rec, hits[name] = _evaluate_run(c, model, params, loaders, method, overrides, budget)
    rows.append({"name": name, "open_point": point, **rec})
  for r in rows:
    for s in SPLITS:
      r[f"{s}_vs_baseline"] = intervals.paired_difference(hits[r["name"]][s], hits[BASELINE][s])
  table = _markdown(c, rows, budget, full)
  print(table)
  better = _significant(rows, +1)
  worse = _significant(rows, -1)
  summary = {
    "model": c.model_name, "weights": weights, "budget_gflops": budget, "unpruned_gflops": full,
    "splits": descs, "runs": rows, "calib_better": better, "calib_worse": worse,
    "seconds": time.perf_counter() - t0,
  }  # fmt: skip
  eval_lib.write_json(os.path.join(workdir, "findings.json"), summary)
  with open(os.path.join(workdir, "findings.md"), "w") as f:
    f.write(table)
  np.savez_compressed(
    os.path.join(workdir, "correct.npz"),
    **{f"{n}__{s}": hits[n][s] for n in hits for s in SPLITS},
  )
  print(f"wrote       {workdir}/findings.json, findings.md, correct.npz")
  print(f"seconds     {summary['seconds']:.0f}")
  print(f"calib_better={json.dumps(better)}")
  print(f"calib_worse={json.dumps(worse)}")


if __name__ == "__main__":
  cli.run(main)
