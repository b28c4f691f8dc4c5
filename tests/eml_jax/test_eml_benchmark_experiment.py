"""The whole benchmark protocol end to end (slow): 2 data sets x 2 seeds, every method."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from eml_jax import datasets

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=1800):
  cmd = [sys.executable, "-m", "experiments.eml_benchmark", *args]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env={**os.environ})  # fmt: skip


@pytest.mark.slow
def test_benchmark_two_datasets_two_seeds(tmp_path):
  proc = _run("--config=configs/eml_benchmark.py:datasets=wine+vehicle,seeds=2",
              "--config.progress=False", f"--workdir={tmp_path}")  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[-1].startswith("eml_wins=") and lines[-2].startswith("eml_early100_sig_wins=")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert sorted(summary) == ["vehicle", "wine"]
  for ds, by_m in summary.items():
    chance = 1 - 1 / datasets.DATASETS[ds][2]
    assert {"eml", "euclidean", "opml", "opml_warm", "oasis", "rdml", "lego", "opid"} <= set(by_m)
    assert {"no_tstage", "no_inherit", "with_ot", "reading_a", "lowrank", "spec_design",
            "no_memory"} <= set(by_m)  # fmt: skip
    sig = by_m["eml"]["significant"]
    assert set(sig) == {"early100_online_error", "knn_error"}
    assert set(sig["knn_error"]) == {"euclidean", "opml", "opml_warm", "oasis", "rdml", "lego",
                                     "opid"}  # fmt: skip
    assert set(sig["knn_error"].values()) <= {"win", "tie", "loss"}
    assert 0 <= by_m["eml"]["early100_online_error_mean"] <= 1
    for m, s in by_m.items():
      assert 0 <= s["knn_error_mean"] <= 1 and 0 <= s["online_error_mean"] <= 1, (ds, m)
      assert s["n_seeds"] == 2
    assert by_m["eml"]["knn_error_mean"] < chance
    assert by_m["eml"]["online_error_mean"] < chance
  multi = json.loads((tmp_path / "summary_multi.json").read_text())
  assert sorted(multi) == ["vehicle"]
  table = (tmp_path / "tables.md").read_text()
  assert "| wine |" in table and "## Goal check" in table
  assert (tmp_path / "online_wine_one.png").stat().st_size > 1000
  rows = (tmp_path / "results.csv").read_text().strip().splitlines()
  assert len(rows) == 1 + 2 * 2 * 16 + 2 * 6  # header, one-shot runs, vehicle multi-shot


@pytest.mark.slow
def test_validation_runlocal_writes_choice(tmp_path):
  proc = _run("--config=configs/eml_benchmark.py:validate,runlocal", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  chosen = json.loads((tmp_path / "chosen.json").read_text())["chosen"]
  assert set(chosen) == {"eml", "opml"}
  assert chosen["eml"]["params"]["nu"] in (0.0, 0.3)
  assert chosen["eml"]["params"]["inherit_memory"] in ("none", "ridge")
  assert chosen["eml"]["stages"][0]["metric"] == "early100_online_error"
  assert len(chosen["eml"]["stages"]) == 2
  assert (tmp_path / "validation.csv").exists()


def test_staged_validation_builds_on_earlier_choices():
  from configs import eml_benchmark as cfg  # noqa: PLC0415
  from eml_jax import run_lib  # noqa: PLC0415

  c = cfg.get_config("validate,runlocal,datasets=wine")
  with c.unlocked():
    c.validation.eml_grids = (dict(eta=(0.003, 0.1)), dict(margin=(0.5, 1.0)))
    c.validation.eml_scores = ("knn_error", "knn_error")
    c.validation.baseline_grid = dict(euclidean={})
  rows, chosen = run_lib.run_validation(c)
  s0 = [r for r in rows if r["method"] == "eml" and r["stage"] == 0]
  s1 = [r for r in rows if r["method"] == "eml" and r["stage"] == 1]
  # Baselines are searched with the last stage (after the memory chosen for EML).
  assert len(s0) == 2 and len(s1) == 2 and {r["stage"] for r in rows if r["method"] != "eml"} == {1}
  err0 = {json.loads(r["params"])["eta"]: r["knn_error"] for r in s0}
  eta = min(err0, key=err0.get)  # ties: the first point of the grid, as min() does
  assert all(json.loads(r["params"])["eta"] == eta for r in s1)  # stage 1 sits on stage 0
  err1 = {json.loads(r["params"])["margin"]: r["knn_error"] for r in s1}
  assert chosen["eml"]["params"] == dict(eta=eta, margin=min(err1, key=err1.get))
  assert [s["params"] for s in chosen["eml"]["stages"]][0] == dict(eta=eta)
  assert set(chosen) == {"eml", "euclidean"}


def test_benchmark_needs_workdir():
  proc = _run("--config=configs/eml_benchmark.py:runlocal", timeout=300)
  assert proc.returncode != 0 and "--workdir" in proc.stderr
