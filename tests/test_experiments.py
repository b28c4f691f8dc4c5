"""One-step smoke tests of every experiment entry point in its `runlocal` mode."""

import json
import pathlib
import subprocess
import sys

import pytest
from entry_points_run import run_ok

from configs import zero_tprune
from ztprune_jax.eval import intervals

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(module, config, *flags):
  return run_ok(module, f"--config={config}", *flags)


def test_demo_runlocal(tmp_path):
  out = _run("experiments.demo", "configs/demo.py:runlocal", f"--workdir={tmp_path}")
  assert out.strip().splitlines()[-1] == "demo_ok=1"
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert 0.0 <= summary["model"]["test_top1"] <= 1.0
  methods = summary["methods"]
  assert {"random", "topk_cls_attn", "zero_tprune", "zero_tprune_searched"} <= set(methods)
  for points in methods.values():
    for p in points:
      assert 0.0 <= p["top1"] <= 1.0 and p["img_per_s"] > 0
      assert p["gflops"] < summary["model"]["gflops"]  # every method prunes something
      lo, hi = p["top1_ci95"]  # the Wilson interval around the measured top-1
      assert lo <= p["top1"] <= hi and p["num_examples"] == 64
  # The claims are recomputed from the summary's own intervals.
  at_b0 = {m: pts[0]["top1_ci95"] for m, pts in methods.items()}
  at_b0["random"] = methods["random"][0]["top1_ci95"]
  assert summary["claims"] == intervals.paper_claims(at_b0, list(zero_tprune.LADDER))
  for png in ("accuracy_vs_gflops.png", "kept_tokens.png"):
    assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_unknown_override():
  cmd = [sys.executable, "-m", "experiments.demo", "--config=configs/demo.py:runlocal"]
  proc = subprocess.run(
    [*cmd, "--config.bacth_size=3"], cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode != 0
  assert "bacth_size" in proc.stderr


@pytest.mark.parity
def test_bench_backbone_runlocal():
  out = _run("experiments.bench_backbone", "configs/bench_backbone.py:runlocal")
  assert out.strip().splitlines()[-1].startswith("flax_over_timm=")


def test_bench_pruning_runlocal():
  out = _run("experiments.bench_pruning", "configs/bench_pruning.py:runlocal")
  last = out.strip().splitlines()[-1]
  assert last.startswith("speedup_over_ideal=") and float(last.split("=")[1]) > 0


def test_bench_pruning_methods_runlocal():
  out = _run(
    "experiments.bench_pruning",
    "configs/bench_pruning.py:runlocal,methods",
    "--config.methods=unpruned,tome,zero_tprune,ats_like",
  )
  lines = out.strip().splitlines()
  assert any(line.startswith("tome (r=") for line in lines)
  assert lines[-1].startswith("zero_tprune_over_tome_throughput=")
  assert float(lines[-1].split("=")[1]) > 0


def test_dinov2_photos_runlocal(tmp_path):
  pytest.importorskip("skimage", reason="needs scikit-image (`pip install -e .[test]`)")
  out = _run(
    "experiments.dinov2_photos", "configs/dinov2_photos.py:runlocal", f"--workdir={tmp_path}"
  )
  import ztprune_jax as zt
  from configs import dinov2_photos

  c = dinov2_photos.get_config("runlocal")
  rows = 1 + len(c.budgets) * sum(m in zt.PRUNERS for m in c.methods)  # + unpruned
  assert out.strip().splitlines()[-1] == f"fidelity_rows={rows}"
  for name in ("kept_tokens.png", "fidelity.csv", "fidelity.md", "vhf.csv"):
    assert (tmp_path / name).stat().st_size > 0
