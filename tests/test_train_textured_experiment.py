"""`experiments.train` on textured Fashion-MNIST (`runlocal`), the examples figure, and
`experiments.bench_train_step` (the estimate of its training time)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

import ztprune_jax as zt

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_train_textured_runlocal_end_to_end(tmp_path, fmnist_train_dir):
  # Train garments: the subset `fmnist_train_dir` writes (no system data needed).
  cmd = [sys.executable, "-m", "experiments.train",
         "--config=configs/train_textured_fmnist.py:runlocal", f"--workdir={tmp_path}",
         f"--config.data.data_dir={fmnist_train_dir}", "--config.data.verify=false"]  # fmt: skip
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ})  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "data         128 train / 64 test images, 4 steps/epoch" in proc.stdout
  assert "test composites (64, 32, 32, 3)" in proc.stdout  # the textured branch ran
  summary = json.loads((tmp_path / "final_metrics.json").read_text())
  assert summary["model_name"] == "vit_textured_patch8_96" and summary["steps"] == 2 * 4
  assert 0 <= summary["test_top1"] <= 1
  # The export is an RGB patch-8 model at runlocal's 32 px.
  model = zt.create_model("vit_textured_patch8_96", depth=2, width=32, num_heads=2, mlp_dim=64,
                          image_size=32)  # fmt: skip
  params = zt.load_checkpoint(tmp_path / "final.safetensors", model)
  assert params["embed"]["patch"]["kernel"].shape[:3] == (8, 8, 3)


def test_examples_figure(tmp_path):
  from experiments import textured_fmnist_examples as ex

  images, titles, note = ex.examples()
  assert images.shape == (16, 96, 96, 3) and images.dtype == np.uint8 and len(titles) == 16
  assert titles[0].startswith("train: ") and titles[8].startswith("test: ") and note
  cmd = [sys.executable, "-m", "experiments.textured_fmnist_examples", f"--workdir={tmp_path}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "examples.png").stat().st_size > 10_000
  assert "textured_fmnist_examples" in (tmp_path / "command.txt").read_text()


def test_bench_train_step_runlocal():
  cmd = [sys.executable, "-m", "experiments.bench_train_step",
         "--config=configs/bench_train_step.py:runlocal"]  # fmt: skip
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert sum(line.startswith("run ") for line in lines) == 2 * 2  # 2 models x 2 runs
  assert lines[-1].startswith("ratio=") and float(lines[-1].split("=")[1]) > 0
