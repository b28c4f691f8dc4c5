"""Tables, summary and plots of the EML benchmark rows (see `run_lib.run_benchmark`).

Rows are dicts with ``dataset``, ``setting``, ``seed``, ``method``, ``knn_error``,
``online_error``, ``sec_per_update``, ``mistakes`` (``[n_I]`` bool, not written to CSV).

Issue 15 adds the early-I-stage online error (first 25 / 50 / 100 instances of the last
stage) and, for EML against each baseline, a paired Wilcoxon signed-rank test over seeds
(`significance`).
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from scipy import stats

EARLY = (25, 50, 100)  # early-I-stage windows (instances)
ALPHA = 0.05  # significance level of the paired tests (issue 15)
# The metrics of the paired tests: EML against each baseline.
SIG_METRICS = ("early100_online_error", "knn_error")

CSV_FIELDS = (
  "dataset", "setting", "seed", "method", "knn_error", "online_error",
  *(f"early{n}_online_error" for n in EARLY), "sec_per_update", "clf_error",
  "ot_converged_frac",
)  # fmt: skip


def early_error(mistakes, n: int) -> float:
  """Online mistake rate over the first ``min(n, len)`` instances of the last stage."""
  m = np.asarray(mistakes, np.float64)
  if m.size == 0:
    raise ValueError("no online mistakes recorded")
  return float(m[:n].mean())


def metric_value(row: dict, metric: str) -> float:
  """``knn_error``, ``online_error`` or ``early<n>_online_error`` of one row."""
  if metric.startswith("early"):
    return early_error(row["mistakes"], int(metric[5:].split("_")[0]))
  return float(row[metric])


def with_early(rows):
  """Rows with the ``early<n>_online_error`` fields filled in from ``mistakes``."""
  return [
    {**r, **{f"early{n}_online_error": early_error(r["mistakes"], n) for n in EARLY}} for r in rows
  ]


def wilcoxon_verdict(a, b, alpha: float = ALPHA) -> tuple[str, float]:
  """Paired two-sided Wilcoxon signed-rank test of ``a`` against ``b`` (lower is better).

  Args:
    a: ``[S]`` per-seed values of the method under test (e.g. EML's error).
    b: ``[S]`` the same seeds' values of the other method.
    alpha: significance level.

  Returns:
    ``(verdict, p)``: "win" (``p < alpha`` and ``a`` lower: the mean paired difference is
    negative), "loss" (``p < alpha``, ``a`` higher) or "tie"; ``p = 1`` when every pair
    is equal (scipy's default drops zero differences, ``zero_method="wilcox"``).
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  if d.shape[0] < 1 or np.asarray(b).shape != np.asarray(a).shape:
    raise ValueError(f"need equal, non-empty paired samples; got {np.shape(a)}, {np.shape(b)}")
  if np.all(d == 0):
    return "tie", 1.0
  p = float(stats.wilcoxon(d).pvalue)
  if p < alpha:
    return ("win" if d.mean() < 0 else "loss"), p
  return "tie", p


def significance(rows, a: str, others, setting="one", metrics=SIG_METRICS) -> dict:
  """Per data set: ``{metric: {other: (verdict, p)}}`` of ``a`` vs each method in ``others``.

  Seeds are paired (only seeds both methods ran count).
  """
  out: dict = {}
  for ds, by_m in _group(rows, setting).items():
    if a not in by_m:
      continue
    va = {m: {r["seed"]: metric_value(r, m) for r in by_m[a]} for m in metrics}
    res: dict = {m: {} for m in metrics}
    for o in others:
      if o not in by_m or o == a:
        continue
      for m in metrics:
        vo = {r["seed"]: metric_value(r, m) for r in by_m[o]}
        common = sorted(set(va[m]) & set(vo))
        res[m][o] = wilcoxon_verdict([va[m][s] for s in common], [vo[s] for s in common])
    out[ds] = res
  return out


def _group(rows, setting):
  out: dict = {}
  for r in rows:
    if r["setting"] == setting:
      out.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r)
  return out


def _ms(rs):
  """Median ms per update over seeds, skipping the first (it includes compilation)."""
  t = [r["sec_per_update"] for r in sorted(rs, key=lambda r: r["seed"])]
  return 1e3 * float(np.median(t[1:] if len(t) > 1 else t))


def summarize(rows, setting="one", baselines=()) -> dict:
  """``{dataset: {method: {knn_error_mean, knn_error_std, online_error_mean, ...}}}``.

  Each method also has ``early<n>_online_error_mean`` / ``_std`` (n in `EARLY`) and
  ``n_last_stage`` (instances of the last stage: a window longer than that covers the whole
  stage). With ``baselines``, EML's entry adds ``significant``: ``{metric: {baseline:
  "win" | "tie" | "loss"}}`` for the metrics of `SIG_METRICS` (paired Wilcoxon over seeds,
  p < `ALPHA`) and ``wilcoxon_p`` with the same keys holding the p-values.
  """
  out = {}
  for ds, by_m in _group(rows, setting).items():
    out[ds] = {}
    for m, rs in by_m.items():
      entry = dict(n_seeds=len(rs), ms_per_update=_ms(rs))
      entry["n_last_stage"] = int(min(len(r["mistakes"]) for r in rs))
      names = ("knn_error", "online_error", *(f"early{n}_online_error" for n in EARLY))
      for name in names:
        v = np.array([metric_value(r, name) for r in rs])
        entry[f"{name}_mean"] = float(v.mean())
        entry[f"{name}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
      out[ds][m] = entry
  if baselines:
    for ds, res in significance(rows, "eml", baselines, setting).items():
      out[ds]["eml"]["significant"] = {
        m: {b: v[0] for b, v in per.items()} for m, per in res.items()
      }
      out[ds]["eml"]["wilcoxon_p"] = {
        m: {b: v[1] for b, v in per.items()} for m, per in res.items()
      }
  return out


def paired_wins(rows, a: str, b: str, setting="one") -> dict:
  """Per data set: seeds where ``a`` has lower / equal / higher 5-NN error than ``b``."""
  out = {}
  for ds, by_m in _group(rows, setting).items():
    if a not in by_m or b not in by_m:
      continue
    ea = {r["seed"]: r["knn_error"] for r in by_m[a]}
    eb = {r["seed"]: r["knn_error"] for r in by_m[b]}
    common = sorted(set(ea) & set(eb))
    diff = np.array([ea[s] - eb[s] for s in common])
    out[ds] = dict(
      lower=int((diff < 0).sum()),
      equal=int((diff == 0).sum()),
      higher=int((diff > 0).sum()),
      mean_diff=float(diff.mean()) if len(diff) else float("nan"),
    )
  return out


def markdown_table(summary: dict, methods, metric="knn_error", title="") -> str:
  """Mean ± std (in %) per data set (rows) and method (columns); the best mean is bold."""
  lines = [title, ""] if title else []
  lines.append("| dataset | " + " | ".join(methods) + " |")
  lines.append("| --- " * (len(methods) + 1) + "|")
  for ds, by_m in summary.items():
    means = {m: by_m[m][f"{metric}_mean"] for m in methods if m in by_m}
    best = min(means.values()) if means else None
    cells = []
    for m in methods:
      if m not in by_m:
        cells.append("–")
        continue
      s = f"{100 * by_m[m][f'{metric}_mean']:.1f} ± {100 * by_m[m][f'{metric}_std']:.1f}"
      cells.append(f"**{s}**" if np.isclose(means[m], best) else s)
    lines.append(f"| {ds} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def ms_table(summary: dict, methods) -> str:
  """Median ms per update (last stage, seeds after the first) per data set and method."""
  lines = ["| dataset | " + " | ".join(methods) + " |", "| --- " * (len(methods) + 1) + "|"]
  for ds, by_m in summary.items():
    cells = [f"{by_m[m]['ms_per_update']:.3f}" if m in by_m else "–" for m in methods]
    lines.append(f"| {ds} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_csv(rows, path):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore", restval="")
    w.writeheader()
    for r in rows:
      w.writerow(r)


def plot_online_curves(rows, path_prefix, setting="one", methods=None) -> list[str]:
  """One PNG per data set: cumulative online mistake rate vs last-stage instances seen
  (mean over seeds). Returns the written paths."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  paths = []
  for ds, by_m in _group(rows, setting).items():
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, rs in by_m.items():
      if methods is not None and m not in methods:
        continue
      n = min(len(r["mistakes"]) for r in rs)
      cum = np.mean([np.cumsum(r["mistakes"][:n]) / np.arange(1, n + 1) for r in rs], axis=0)  # [n]
      ax.plot(np.arange(1, n + 1), cum, label=m, lw=2.0 if m == "eml" else 1.0)
    ax.set_xlabel("I-stage instances seen")
    ax.set_ylabel("online mistake rate (cumulative)")
    ax.set_title(f"{ds} ({setting}-shot, mean over {len(rs)} seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = f"{path_prefix}{ds}_{setting}.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
  return paths


def write_all(rows, workdir, *, baselines, ablations, command="") -> dict:
  """Writes results.csv, summary.json (one-shot), summary_multi.json, tables.md, PNGs.

  Returns:
    The one-shot summary.
  """
  os.makedirs(workdir, exist_ok=True)
  write_csv(with_early(rows), os.path.join(workdir, "results.csv"))
  one = summarize(rows, "one", baselines)
  multi = summarize(rows, "multi", baselines)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(one, f, indent=1, sort_keys=True)
  with open(os.path.join(workdir, "summary_multi.json"), "w") as f:
    json.dump(multi, f, indent=1, sort_keys=True)
  main = ["eml", *baselines]
  abl = ["eml", *ablations]
  parts = [f"Command: `{command}`\n"] if command else []
  parts.append(markdown_table(one, main, "knn_error", "## One-shot: 5-NN test error (%)"))
  parts.append(markdown_table(one, main, "online_error", "## One-shot: online mistake rate (%)"))
  for n in EARLY:
    parts.append(markdown_table(
      one, main, f"early{n}_online_error",
      f"## One-shot: online mistake rate over the first {n} I-stage instances (%)",
    ))  # fmt: skip
  parts.append(stage_length_text(one))
  parts.append(significance_table(one, baselines))
  parts.append(markdown_table(one, abl, "knn_error", "## EML ablations: 5-NN test error (%)"))
  parts.append(markdown_table(one, abl, "online_error", "## EML ablations: online mistakes (%)"))
  if multi:
    mm = [m for m in ["eml", *ablations, *baselines] if any(m in v for v in multi.values())]
    parts.append(markdown_table(multi, mm, "knn_error", "## Multi-shot: 5-NN test error (%)"))
    parts.append(markdown_table(multi, mm, "online_error", "## Multi-shot: online mistakes (%)"))
    parts.append(markdown_table(
      multi, mm, "early100_online_error",
      "## Multi-shot: online mistakes over the first 100 last-stage instances (%)",
    ))  # fmt: skip
    mb = [b for b in baselines if any(b in v for v in multi.values())]
    parts.append(significance_table(multi, mb, "Multi-shot: "))
  parts.append("## ms per update (last stage; median over seeds after the first)\n")
  parts.append(ms_table(one, main + list(ablations)))
  parts.append("## Paired over seeds: EML lower / equal / higher 5-NN error than ...\n")
  for other in [*baselines, *ablations]:
    pw = paired_wins(rows, "eml", other)
    cells = ", ".join(f"{d} {v['lower']}/{v['equal']}/{v['higher']}" for d, v in pw.items())
    parts.append(f"- {other}: {cells}")
  parts.append("")
  parts.append(goal_text(one, baselines, ablations))
  parts.append(significance_goal_text(one, baselines))
  with open(os.path.join(workdir, "tables.md"), "w") as f:
    f.write("\n".join(parts) + "\n")
  plot_online_curves(rows, os.path.join(workdir, "online_"), "one")
  if multi:
    plot_online_curves(rows, os.path.join(workdir, "online_"), "multi")
  return one


def stage_length_text(summary: dict) -> str:
  """Which windows are shorter than asked (the last stage has fewer instances)."""
  short = {ds: by_m["eml"]["n_last_stage"] for ds, by_m in summary.items()
           if "eml" in by_m and by_m["eml"]["n_last_stage"] < max(EARLY)}  # fmt: skip
  if not short:
    return ""
  cells = ", ".join(f"{ds} {n}" for ds, n in short.items())
  return (f"I-stage instances where a window is longer than the stage (the window then "
          f"covers the whole stage): {cells}.\n")  # fmt: skip


def significance_table(summary: dict, baselines, prefix="One-shot: ") -> str:
  """EML vs each baseline: paired Wilcoxon verdicts (win / tie / loss at p < ALPHA)."""
  lines = [
    f"## {prefix}EML vs each baseline, paired Wilcoxon signed-rank over seeds "
    f"(win / tie / loss at p < {ALPHA})",
    "",
    "Cells: verdict (p). win = EML significantly lower error.",
    "",
  ]
  for metric in SIG_METRICS:
    lines += [f"**{metric}**", "", "| dataset | " + " | ".join(baselines) + " |",
              "| --- " * (len(baselines) + 1) + "|"]  # fmt: skip
    for ds, by_m in summary.items():
      sig = by_m.get("eml", {}).get("significant", {}).get(metric, {})
      pv = by_m.get("eml", {}).get("wilcoxon_p", {}).get(metric, {})
      cells = [f"{sig[b]} ({pv[b]:.3f})" if b in sig else "–" for b in baselines]
      lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines) + "\n"


def significance_goal_text(one: dict, baselines) -> str:
  """Issue 15's goal, checked: EML significantly better than every baseline in early-100
  online error on >= 6 of 8 data sets, never significantly worse in 5-NN test error."""
  early, losses = [], []
  for ds, by_m in one.items():
    sig = by_m.get("eml", {}).get("significant", {})
    e = sig.get("early100_online_error", {})
    if e and all(e.get(b) == "win" for b in baselines if b in by_m):
      early.append(ds)
    losses += [f"{ds} vs {b}" for b, v in sig.get("knn_error", {}).items() if v == "loss"]
  return "\n".join([
    f"- Issue 15: EML significantly lower early-100 online error than every baseline "
    f"(Wilcoxon, p < {ALPHA}) on {len(early)} of {len(one)} data sets "
    f"({', '.join(early) or 'none'}); goal: >= 6 of 8.",
    f"- Significantly worse 5-NN test error: {len(losses)} comparisons "
    f"({', '.join(losses) or 'none'}); goal: none.",
  ]) + "\n"  # fmt: skip


def goal_text(one: dict, baselines, ablations) -> str:
  """The issue's goal, checked: data sets where EML's mean 5-NN error beats every baseline,
  and each ablation's mean change (positive: removing the component hurts)."""
  wins = [
    ds
    for ds, by_m in one.items()
    if all(
      by_m["eml"]["knn_error_mean"] < by_m[b]["knn_error_mean"] for b in baselines if b in by_m
    )
  ]
  lines = [
    "## Goal check",
    "",
    f"- EML lowest mean 5-NN error vs every baseline on {len(wins)} of {len(one)} data sets"
    f" ({', '.join(wins) or 'none'}); goal: >= 6 of 8.",
  ]
  for ab in ablations:
    d = [by_m[ab]["knn_error_mean"] - by_m["eml"]["knn_error_mean"] for by_m in one.values()
         if ab in by_m]  # fmt: skip
    if d:
      lines.append(
        f"- {ab}: mean 5-NN error change vs EML {100 * np.mean(d):+.2f} points "
        f"(worse on {sum(x > 0 for x in d)}/{len(d)} data sets)"
      )
  return "\n".join(lines) + "\n"


def save_rows(rows, path):
  """Writes rows (``mistakes`` as 0/1 lists) to a gzip JSON file, for merging runs."""
  import gzip

  out = [{**r, "mistakes": np.asarray(r["mistakes"]).astype(int).tolist()} for r in rows]
  with gzip.open(path, "wt") as f:
    json.dump(out, f)


def load_rows(path):
  """Reads `save_rows` output; ``mistakes`` back to bool arrays."""
  import gzip

  if not os.path.exists(path):
    raise FileNotFoundError(f"rows file {path} not found")
  with gzip.open(path, "rt") as f:
    rows = json.load(f)
  return [{**r, "mistakes": np.asarray(r["mistakes"], bool)} for r in rows]
