"""Tables, summary and plots of the EML benchmark rows (see `run_lib.run_benchmark`).

Rows are dicts with ``dataset``, ``setting``, ``seed``, ``method``, ``knn_error``,
``online_error``, ``sec_per_update``, ``mistakes`` (``[n_I]`` bool, not written to CSV).
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

CSV_FIELDS = (
  "dataset", "setting", "seed", "method", "knn_error", "online_error", "sec_per_update",
  "clf_error", "ot_converged_frac",
)  # fmt: skip


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


def summarize(rows, setting="one") -> dict:
  """``{dataset: {method: {knn_error_mean, knn_error_std, online_error_mean, ...}}}``."""
  out = {}
  for ds, by_m in _group(rows, setting).items():
    out[ds] = {}
    for m, rs in by_m.items():
      ke = np.array([r["knn_error"] for r in rs])
      oe = np.array([r["online_error"] for r in rs])
      out[ds][m] = dict(
        knn_error_mean=float(ke.mean()),
        knn_error_std=float(ke.std(ddof=1)) if len(ke) > 1 else 0.0,
        online_error_mean=float(oe.mean()),
        online_error_std=float(oe.std(ddof=1)) if len(oe) > 1 else 0.0,
        ms_per_update=_ms(rs),
        n_seeds=len(rs),
      )
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
  write_csv(rows, os.path.join(workdir, "results.csv"))
  one = summarize(rows, "one")
  multi = summarize(rows, "multi")
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(one, f, indent=1, sort_keys=True)
  with open(os.path.join(workdir, "summary_multi.json"), "w") as f:
    json.dump(multi, f, indent=1, sort_keys=True)
  main = ["eml", *baselines]
  abl = ["eml", *ablations]
  parts = [f"Command: `{command}`\n"] if command else []
  parts.append(markdown_table(one, main, "knn_error", "## One-shot: 5-NN test error (%)"))
  parts.append(markdown_table(one, main, "online_error", "## One-shot: online mistake rate (%)"))
  parts.append(markdown_table(one, abl, "knn_error", "## EML ablations: 5-NN test error (%)"))
  parts.append(markdown_table(one, abl, "online_error", "## EML ablations: online mistakes (%)"))
  if multi:
    mm = [m for m in ["eml", *ablations, *baselines] if any(m in v for v in multi.values())]
    parts.append(markdown_table(multi, mm, "knn_error", "## Multi-shot: 5-NN test error (%)"))
    parts.append(markdown_table(multi, mm, "online_error", "## Multi-shot: online mistakes (%)"))
  parts.append("## ms per update (last stage; median over seeds after the first)\n")
  parts.append(ms_table(one, main + list(ablations)))
  parts.append("## Paired over seeds: EML lower / equal / higher 5-NN error than ...\n")
  for other in [*baselines, *ablations]:
    pw = paired_wins(rows, "eml", other)
    cells = ", ".join(f"{d} {v['lower']}/{v['equal']}/{v['higher']}" for d, v in pw.items())
    parts.append(f"- {other}: {cells}")
  parts.append("")
  parts.append(goal_text(one, baselines, ablations))
  with open(os.path.join(workdir, "tables.md"), "w") as f:
    f.write("\n".join(parts) + "\n")
  plot_online_curves(rows, os.path.join(workdir, "online_"), "one")
  if multi:
    plot_online_curves(rows, os.path.join(workdir, "online_"), "multi")
  return one


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
