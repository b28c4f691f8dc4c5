"""experiments/zero_tprune_findings.py in its runlocal mode: the table recomputes from its hits."""

import csv
import json

import numpy as np
import pytest
from entry_points_run import ROOT, run_ok

from ztprune_jax.eval import intervals


def test_findings_runlocal_pairs_every_run_with_the_paper_reading(tmp_path):
  config = "--config=configs/zero_tprune_findings.py:runlocal"
  out = run_ok("experiments.zero_tprune_findings", config, f"--workdir={tmp_path}")
  assert out.strip().splitlines()[-2].startswith("calib_better=")
  summary = json.loads((tmp_path / "findings.json").read_text())
  hits = np.load(tmp_path / "correct.npz")
  names = [r["name"] for r in summary["runs"]]
  assert names == ["paper_reading", "after_attention", "partition_full", "random"]
  base = {s: hits[f"paper_reading__{s}"] for s in ("calib", "eval")}
  assert base["calib"].shape == (48,) and base["eval"].shape == (64,)
  for r in summary["runs"]:
    for s in ("calib", "eval"):
      h = hits[f"{r['name']}__{s}"]
      assert r[f"{s}_top1"] == pytest.approx(h.mean())
      assert r[f"{s}_vs_baseline"] == pytest.approx(intervals.paired_difference(h, base[s]))
  by = {r["name"]: r for r in summary["runs"]}
  assert by["paper_reading"]["eval_vs_baseline"]["p"] == 1.0
  # Pruning before the MLP saves that MLP too, so the same budget removes fewer tokens.
  assert by["after_attention"]["r"] < by["paper_reading"]["r"] == by["random"]["r"]
  assert (tmp_path / "findings.md").read_text().count("\n| ") == 1 + len(names)
  # Re-analysis from the saved hits only: the same paired numbers, nothing evaluated.
  out = run_ok("experiments.zero_tprune_findings", f"--workdir={tmp_path}",
                "--pairs=random:paper_reading", timeout=300)  # fmt: skip
  d = by["random"]["eval_vs_baseline"]
  line = [x for x in out.splitlines() if x.startswith("random - paper_reading [eval]")]
  assert line and f"{100 * d['diff']:+.2f} points" in line[0]


def test_dinov2_photos_variants_pairs_each_variant_with_zero_tprune(tmp_path):
  pytest.importorskip("skimage", reason="needs scikit-image (`pip install -e .[test]`)")
  run_ok("experiments.dinov2_photos", "--config=configs/dinov2_photos.py:runlocal,variants",
         f"--workdir={tmp_path}")  # fmt: skip
  with open(tmp_path / "fidelity.csv") as f:
    rows = {r["method"]: r for r in csv.DictReader(f)}
  assert set(rows) == {"unpruned", "random", "tome", "zero_tprune",
                       "zero_tprune:after_attention", "zero_tprune:partition_full"}  # fmt: skip
  assert float(rows["zero_tprune"]["cls_cos_diff"]) == 0.0
  for name in ("zero_tprune:after_attention", "zero_tprune:partition_full", "random"):
    diff = float(rows[name]["cls_cos_diff"])
    assert diff == pytest.approx(
      float(rows[name]["cls_cos_mean"]) - float(rows["zero_tprune"]["cls_cos_mean"]), abs=1e-6
    )
  assert rows["unpruned"]["cls_cos_diff"] == ""
  assert not (tmp_path / "kept_tokens.png").exists()


def test_findings_table_has_a_row_per_variant_from_the_committed_runs():
  from configs.zero_tprune_findings import VARIANTS
  from experiments import findings_table

  text = findings_table.table(str(ROOT / "results" / "findings"))
  rows = [line for line in text.splitlines()[2:] if line.startswith("| ")]
  assert [r.split(" | ")[0][2:] for r in rows] == [*VARIANTS, *findings_table.REFERENCES]
  runs = json.loads((ROOT / "results/findings/textured/findings.json").read_text())["runs"]
  full = next(r for r in runs if r["name"] == "partition_full")["eval_vs_baseline"]
  assert f"{100 * full['diff']:+.2f} (" in next(r for r in rows if r.startswith("| partition_full"))
