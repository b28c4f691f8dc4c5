"""Smoke tests of `experiments.search_schedule`: `runlocal` and a tiny labelled search."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import ztprune_jax as zt

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "configs/search_schedule.py"
FMNIST_CHECKPOINT = "models/vit_fmnist/vit_fmnist_patch4_28.safetensors"


def _run(*flags, timeout=600):
  cmd = [sys.executable, "-m", "experiments.search_schedule", *flags]
  return subprocess.run(
    cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ}
  )


def test_search_schedule_runlocal(tmp_path):
  proc = _run(f"--config={CONFIG}:runlocal", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  lines = proc.stdout.strip().splitlines()
  assert any("seeded Gaussian images" in line for line in lines)  # says where images came from
  key, _, value = lines[-1].partition("=")
  assert key == "best_score" and 0.0 <= float(value) <= 1.0  # top-1 agreement
  with open(tmp_path / "search_table.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2  # runlocal: num_samples=2
  assert all(float(r["gflops"]) <= 0.02 for r in rows)  # runlocal budget
  best_rows = [r for r in rows if r["is_best"] == "1"]
  assert len(best_rows) == 1
  assert float(best_rows[0]["score"]) == max(float(r["score"]) for r in rows)
  best = json.loads((tmp_path / "best_schedule.json").read_text())
  assert best["schedule"] == json.loads(best_rows[0]["schedule"])
  assert best["best_score"] == float(value)
  # The written schedule loads back into `prune` and costs what the table says.
  model = zt.create_model(best["model_name"], **best["model"])
  pruned = zt.prune(model, best["method"], [tuple(e) for e in best["schedule"]])
  assert zt.count_flops(pruned)["blocks"] / 1e9 == best["gflops"]


def test_search_schedule_needs_workdir_and_labels(tmp_path):
  proc = _run(f"--config={CONFIG}:runlocal", timeout=300)
  assert proc.returncode != 0 and "--workdir" in proc.stderr
  proc = _run(f"--config={CONFIG}:runlocal,score=accuracy", f"--workdir={tmp_path}", timeout=300)
  assert proc.returncode != 0 and "labelled calibration dataset" in proc.stderr
  assert not list(tmp_path.iterdir())  # failed before writing anything


def test_search_schedule_fashion_mnist_accuracy(tmp_path):
  """The shipped model searched on the first 6 Fashion-MNIST test images, scored by labels."""
  num_images, budget = 6, 0.03  # the unpruned model costs 0.0432 GFLOPs (blocks only)
  proc = _run(
    f"--config={CONFIG}:model=vit_fmnist_patch4_28,budget={budget},score=accuracy,samples=2",
    f"--config.checkpoint={FMNIST_CHECKPOINT}",
    "--config.calib.dataset=fashion_mnist",
    f"--config.calib.num_images={num_images}",
    "--config.calib.batch_size=4",  # two batches, the last one padded
    "--config.progress=False",
    f"--workdir={tmp_path}",
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  lines = proc.stdout.strip().splitlines()
  calib = [line for line in lines if line.startswith("calibration")]
  assert len(calib) == 1 and "fashion_mnist" in calib[0] and "examples 0..5" in calib[0]
  assert not any("Gaussian" in line for line in lines)
  key, _, value = lines[-1].partition("=")
  assert key == "best_score" and 0.0 <= float(value) <= 1.0
  with open(tmp_path / "search_table.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  for r in rows:
    acc = float(r["accuracy"])
    assert float(r["score"]) == acc and 0.0 <= acc <= 1.0
    assert round(acc * num_images, 6) == round(acc * num_images)  # correct / 6, padding dropped
    assert float(r["gflops"]) <= budget
  best = json.loads((tmp_path / "best_schedule.json").read_text())
  assert best["score"] == "accuracy" and best["weights"] == FMNIST_CHECKPOINT
  assert best["best_score"] == float(value) == max(float(r["accuracy"]) for r in rows)


def test_search_schedule_unknown_dataset(tmp_path):
  proc = _run(
    f"--config={CONFIG}:runlocal", "--config.calib.dataset=fashoin_mnist", f"--workdir={tmp_path}",
    timeout=300,
  )  # fmt: skip
  assert proc.returncode != 0
  assert "ValueError" in proc.stderr and "Unknown dataset 'fashoin_mnist'" in proc.stderr
  assert "'fashion_mnist', 'imagenet2012', 'image_folder', 'synthetic'" in proc.stderr
  assert not list(tmp_path.iterdir())
