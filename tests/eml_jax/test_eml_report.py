"""Benchmark tables and summaries from hand-made rows (no learning involved)."""

import json

import numpy as np
import pytest

from eml_jax import report


def _rows():
  rows = []
  for seed, (e_eml, e_euc) in enumerate([(0.1, 0.2), (0.3, 0.2), (0.2, 0.2)]):
    for m, e in (("eml", e_eml), ("euclidean", e_euc)):
      rows.append(
        dict(
          dataset="toy",
          setting="one",
          seed=seed,
          method=m,
          knn_error=e,
          online_error=e / 2,
          sec_per_update=1e-3 * (10 if seed == 0 else 1),
          mistakes=np.array([1, 0, 0, 1], bool),
          ot_converged_frac=float("nan"),
        )
      )
  return rows


def test_summary_shape_and_values():
  s = report.summarize(_rows())
  assert set(s) == {"toy"} and set(s["toy"]) == {"eml", "euclidean"}
  e = s["toy"]["eml"]
  np.testing.assert_allclose(e["knn_error_mean"], 0.2)
  np.testing.assert_allclose(e["knn_error_std"], np.std([0.1, 0.3, 0.2], ddof=1))
  np.testing.assert_allclose(e["online_error_mean"], 0.1)
  np.testing.assert_allclose(e["ms_per_update"], 1.0)  # seed 0 (compilation) skipped
  json.dumps(s)  # serialisable


def test_paired_wins_and_tables(tmp_path):
  pw = report.paired_wins(_rows(), "eml", "euclidean")
  assert pw["toy"] == dict(lower=1, equal=1, higher=1, mean_diff=pytest.approx(0.0))
  md = report.markdown_table(report.summarize(_rows()), ["eml", "euclidean"])
  assert "| toy | **20.0 ± 10.0** | **20.0 ± 0.0** |" in md  # tie: both bold
  report.save_rows(_rows(), tmp_path / "rows.json.gz")
  back = report.load_rows(tmp_path / "rows.json.gz")
  assert back[0]["mistakes"].dtype == bool and len(back) == 6
  with pytest.raises(FileNotFoundError):
    report.load_rows(tmp_path / "missing.json.gz")
  one = report.write_all(_rows(), tmp_path / "out", baselines=("euclidean",), ablations=())
  assert "Goal check" in (tmp_path / "out" / "tables.md").read_text()
  assert (tmp_path / "out" / "online_toy_one.png").exists() and "toy" in one
