"""One table of Zero-TPrune's open points on the three test beds (docs/zero_tprune_findings.md).

`python -m experiments.findings_table` reads the committed outputs of
`experiments.zero_tprune_findings` (`results/findings/{fmnist,textured}/findings.json`) and of
`experiments.dinov2_photos` `:variants` (`results/findings/dinov2/fidelity.csv`) and prints
a markdown table: per variant, the paired top-1 difference to our reading on each trained
model's evaluation split (95 % CI, McNemar p; * where p < 0.05) and the paired CLS-cosine
difference on DINOv2 (95 % CI; * where it excludes 0). Nothing is evaluated.
"""

import csv
import json
import os

from absl import flags

from configs.zero_tprune_findings import REFERENCES, VARIANTS
from experiments import cli

_ROOT = flags.DEFINE_string("results", "results/findings", "Folder holding the three runs.")


def _top1_cell(run: dict) -> str:
  d = run["eval_vs_baseline"]
  star = "*" if d["p"] < 0.05 else ""
  return (
    f"{100 * d['diff']:+.2f} ({100 * d['low']:+.2f}…{100 * d['high']:+.2f}; p {d['p']:.2g}){star}"
  )


def _cos_cell(row: dict | None) -> str:
  if row is None or row.get("cls_cos_diff", "") == "":
    return "-"
  d, h = float(row["cls_cos_diff"]), float(row["cls_cos_diff_half95"])
  return f"{d:+.4f} (±{h:.4f}){'*' if h > 0 and abs(d) > h else ''}"


def table(root: str) -> str:
  """The markdown table from the runs under ``root``."""
  runs = {}
  for m in ("fmnist", "textured"):
    path = os.path.join(root, m, "findings.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: run experiments.zero_tprune_findings :{m}")
    with open(path) as f:
      runs[m] = {r["name"]: r for r in json.load(f)["runs"]}
  path = os.path.join(root, "dinov2", "fidelity.csv")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run `make dinov2-variants`")
  with open(path) as f:
    dino = {r["method"]: r for r in csv.DictReader(f)}
  lines = [
    "| variant | open point | shipped: top-1 Δ (points) | textured: top-1 Δ (points) "
    "| DINOv2: CLS cos Δ |",
    "|---|---|---:|---:|---:|",
  ]
  for name in (*VARIANTS, *REFERENCES):
    point = VARIANTS[name][0] if name in VARIANTS else "reference method"
    if name == "paper_reading":
      cells = [f"{100 * runs[m][name]['eval_top1']:.2f} %" for m in ("fmnist", "textured")]
      cells.append(f"cos {float(dino['zero_tprune']['cls_cos_mean']):.4f}")
    else:
      cells = [_top1_cell(runs[m][name]) for m in ("fmnist", "textured")]
      cells.append(_cos_cell(dino.get(f"zero_tprune:{name}" if name in VARIANTS else name)))
    lines.append(f"| {name} | {point} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  print(table(_ROOT.value), end="")


if __name__ == "__main__":
  cli.run(main)
