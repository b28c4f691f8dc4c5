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


def test_wilcoxon_verdicts_from_known_cases():
  base = np.linspace(0.2, 0.5, 10)
  lower = base - np.linspace(0.01, 0.1, 10)  # 10 negative, distinct differences
  # Exact two-sided signed-rank p with all 10 ranks on one side: 2 / 2**10.
  v, p = report.wilcoxon_verdict(lower, base)
  assert v == "win" and p == pytest.approx(2 / 1024)
  assert report.wilcoxon_verdict(base, lower)[0] == "loss"
  assert report.wilcoxon_verdict(base, base) == ("tie", 1.0)
  mixed = base + np.array([1, -1] * 5) * np.linspace(0.01, 0.1, 10)
  v, p = report.wilcoxon_verdict(mixed, base)
  assert v == "tie" and p > 0.05
  # 4 seeds cannot reach p < 0.05 (smallest exact two-sided p: 2 / 16).
  assert report.wilcoxon_verdict(lower[:4], base[:4])[0] == "tie"
  with pytest.raises(ValueError):
    report.wilcoxon_verdict(lower[:3], base)


def test_early_windows_and_significance_in_summary():
  rows = []
  for seed in range(8):
    for m, first in (("eml", 0), ("opid", 1)):
      mist = np.zeros(150, bool)
      mist[:30] = first  # opid errs on its first 30 instances, EML never
      mist[100 + seed] = True
      rows.append(dict(dataset="toy", setting="one", seed=seed, method=m, mistakes=mist,
                       knn_error=0.1 + 0.01 * seed, online_error=float(mist.mean()),
                       sec_per_update=1e-3))  # fmt: skip
  assert report.early_error(rows[1]["mistakes"], 25) == 1.0
  assert report.early_error(rows[1]["mistakes"], 1000) == pytest.approx(31 / 150)
  s = report.summarize(rows, "one", baselines=("opid",))
  e = s["toy"]["eml"]
  assert (
    e["early25_online_error_mean"] == 0 and s["toy"]["opid"]["early50_online_error_mean"] == 0.6
  )
  assert e["early100_online_error_mean"] == 0 and e["n_last_stage"] == 150
  # Every seed: EML 0 vs OPID 0.3 over the first 100 (8 tied differences: normal
  # approximation, p ≈ 0.005); the 5-NN errors are identical: a tie with p = 1.
  assert e["significant"] == {
    "early100_online_error": {"opid": "win"},
    "knn_error": {"opid": "tie"},
  }
  assert e["wilcoxon_p"]["early100_online_error"]["opid"] < 0.05
  assert "significant" not in s["toy"]["opid"]
