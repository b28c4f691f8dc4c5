"""`experiments.train` end to end (`runlocal`), and resume after an interruption."""

import json
import os
import pathlib
import re
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "--config=configs/train_fashion_mnist.py:runlocal"


def _train(workdir, train_dir, *flags):
  # The train split is a subset the `fmnist_train_dir` fixture writes (no system data).
  data = [f"--config.data.data_dir={train_dir}", "--config.data.verify=false"]
  cmd = [sys.executable, "-m", "experiments.train", CONFIG, f"--workdir={workdir}", *data, *flags]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ})  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc.stdout, proc.stderr


def _params(workdir):
  model = zt.create_model("vit_fmnist_patch4_28", depth=2, width=32, num_heads=2, mlp_dim=64)
  return zt.load_checkpoint(pathlib.Path(workdir) / "final.safetensors", model)


def test_train_runlocal_end_to_end(tmp_path, fmnist_train_dir):
  out, log = _train(tmp_path, fmnist_train_dir)
  # Logged train metrics are window means (windows straddle epoch ends in runlocal).
  accs = [float(v) for v in re.findall(r"train_accuracy=([0-9.e+-]+)", log)]
  assert len(accs) == 7 and all(0 <= a <= 1 for a in accs), accs
  last = out.strip().splitlines()[-1]
  assert last.startswith("test_top1=")
  top1 = float(last.split("=")[1])
  summary = json.loads((tmp_path / "final_metrics.json").read_text())
  assert summary["test_top1"] == pytest.approx(top1, abs=1e-6) and 0 <= top1 <= 1
  assert summary["steps"] == 2 * (512 // 64)
  assert list((tmp_path / "checkpoints").iterdir())  # orbax checkpoints
  assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
  _params(tmp_path)  # the export loads into the configured model


@pytest.mark.slow
def test_train_resumes_to_the_uninterrupted_result(tmp_path, fmnist_train_dir):
  full, cut = tmp_path / "full", tmp_path / "cut"
  _train(full, fmnist_train_dir)
  out, _ = _train(cut, fmnist_train_dir, "--config.stop_after_epochs=1")
  assert "stopped after epoch 1" in out and not (cut / "final.safetensors").exists()
  out, _ = _train(cut, fmnist_train_dir)
  assert "resumed      from epoch 1" in out
  a, b = _params(full), _params(cut)
  flat_a = flax.traverse_util.flatten_dict(a)
  flat_b = flax.traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_allclose(flat_a[k], flat_b[k], rtol=1e-6, atol=1e-7, err_msg=str(k))
  top1 = [json.loads((d / "final_metrics.json").read_text())["test_top1"] for d in (full, cut)]
  assert top1[0] == top1[1]


def test_train_rejects_unknown_override(tmp_path):
  cmd = [sys.executable, "-m", "experiments.train", CONFIG, f"--workdir={tmp_path}",
         "--config.num_epoch=3"]  # fmt: skip
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "num_epoch" in proc.stderr


@pytest.mark.slow
def test_finetune_path_resizes_greys_to_rgb_and_reinitialises_the_head(tmp_path, fmnist_train_dir):
  """`--config.model_name=<DeiT> --config.init=<ckpt>` with a tiny DeiT on 32-px RGB input."""
  sizes = dict(depth=1, width=32, num_heads=2, mlp_dim=64, image_size=32, patch_size=8)
  donor = zt.create_model("deit_tiny_patch16_224", num_classes=7, **sizes)
  params = donor.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)))["params"]
  ckpt = tmp_path / "donor.safetensors"
  zt.save_checkpoint(params, ckpt)
  work = tmp_path / "ft"
  overrides = [f"--config.model.{k}={v}" for k, v in sizes.items()]
  out, _ = _train(work, fmnist_train_dir, "--config.model_name=deit_tiny_patch16_224",
               f"--config.init={ckpt}", "--config.data.mean=(0.5,0.5,0.5)",
               "--config.data.std=(0.5,0.5,0.5)", "--config.stop_after_epochs=1",
               *overrides)  # fmt: skip
  assert "head re-initialised" in out
  # After one epoch's orbax checkpoint the body moved away from the donor but kept its shapes.
  model = zt.create_model("deit_tiny_patch16_224", num_classes=10, **sizes)
  assert model.in_channels == 3
