"""The evaluation harness end to end (evaluate, sweep, visualize in `runlocal`) and its errors."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import pytest
from PIL import Image

import ztprune_jax as zt
from configs import eval as eval_config
from configs import sweep as sweep_config
from configs import visualize as visualize_config
from configs import zero_tprune
from ztprune_jax.eval import eval_lib, evaluation

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(module, config, *flags, ok=True):
  cmd = [sys.executable, "-m", module, f"--config={config}", *flags]
  proc = subprocess.run(
    cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ}
  )
  if ok:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_harness_runlocal_end_to_end(tmp_path):
  # evaluate: record, CSV row, last line.
  out = _run("experiments.evaluate", "configs/eval.py:runlocal", f"--workdir={tmp_path}").stdout
  key, _, value = out.strip().splitlines()[-1].partition("=")
  assert key == "top1" and 0.0 <= float(value) <= 1.0
  (record_path,) = tmp_path.glob("zero_tprune_*g.json")
  record = json.loads(record_path.read_text())
  (row,) = _rows(tmp_path / "results.csv")
  assert float(row["top1"]) == record["top1"] == float(value)
  assert record["num_examples"] == 64 and record["top1"] <= record["top5"] <= 1.0
  assert record["img_per_s"] > 0
  c = eval_config.get_config("runlocal")
  model = eval_lib.build_model(c)
  pruned = zt.prune(model, "zero_tprune", json.loads(record["schedule"]))
  assert record["gflops"] == zt.count_flops(pruned)["blocks"] / 1e9  # r=1 after block 0
  assert record["gflops"] < zt.count_flops(model)["blocks"] / 1e9

  # sweep: unpruned + every method at every budget, a PNG, the ladder table.
  out = _run("experiments.sweep", "configs/sweep.py:runlocal", f"--workdir={tmp_path}").stdout
  s = sweep_config.get_config("runlocal")
  rows = _rows(tmp_path / "sweep.csv")
  assert out.strip().splitlines()[-1] == f"points={len(rows)}"
  assert len(rows) == 1 + len(s.methods) * len(s.budgets_gflops)
  unpruned = rows[0]
  assert unpruned["method"] == "none" and unpruned["r"] == "0"
  for r in rows[1:]:
    assert float(r["gflops"]) < float(unpruned["gflops"])
    assert 0.0 <= float(r["top1"]) <= float(r["top5"]) <= 1.0
  ladder = _rows(tmp_path / "ladder.csv")
  assert [r["method"] for r in ladder] == list(zero_tprune.LADDER)
  assert len({r["gflops"] for r in ladder}) == 1  # one budget, the same token counts
  md = (tmp_path / "ladder.md").read_text()
  assert all(f"| {m} |" in md for m in zero_tprune.LADDER)
  png = tmp_path / "accuracy_vs_gflops.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # visualize: a grid with one row per (method, image).
  out = _run("experiments.visualize", "configs/visualize.py:runlocal", f"--workdir={tmp_path}")
  v = visualize_config.get_config("runlocal")
  assert out.stdout.strip().splitlines()[-1] == f"panels={len(v.methods) * v.num_images}"
  with Image.open(tmp_path / "kept_patches.png") as im:
    assert im.size[0] > 100 and im.size[1] > 100


def test_evaluate_rejects_bad_method_and_budget(tmp_path):
  proc = _run(
    "experiments.evaluate", "configs/eval.py:runlocal", f"--workdir={tmp_path}",
    "--config.method=zero_prune", ok=False,
  )  # fmt: skip
  assert proc.returncode != 0 and "Unknown pruning method 'zero_prune'" in proc.stderr
  assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("module", [eval_config, sweep_config, visualize_config])
def test_configs_build_for_every_documented_arg(module):
  for arg in (
    None,
    "runlocal",
    *eval_config.PRESETS,
    *(f"{p},runlocal" for p in eval_config.PRESETS),
  ):
    c = module.get_config(arg)
    assert c.data.batch_size >= 1
  with pytest.raises(ValueError, match="Unknown preset 'imagenet'"):
    module.get_config("imagenet")
  with pytest.raises(AttributeError):
    module.get_config("runlocal").budget_gflopz = 1.0  # locked: typos fail


def test_imagenet_preset_preprocessing_is_deit():
  c = eval_config.get_config("imagenet_deit_s")
  t = eval_lib.build_transform(c, eval_lib.build_model(c))
  assert (t.image_size, t.crop_pct, t.resize) == (224, 0.9, 248)
  assert t.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("preset", ["deit_s_a", "deit_s_b", "deit_s_c", "ablation_3.08g"])
def test_schedule_for_budget_recovers_the_presets(preset):
  # The presets' r was FLOPs-matched to the paper's budgets; the solver must land on it.
  c = zero_tprune.get_config(preset)
  model = zt.create_model("deit_small_patch16_224")
  bs = evaluation.schedule_for_budget(model, "zero_tprune", c.paper_gmacs)
  assert bs.r == c.schedule.r


def test_boundary_errors(tmp_path):
  c = eval_config.get_config("runlocal")
  model = eval_lib.build_model(c)
  c.unlock()
  c.r = None
  c.budget_gflops = None
  with pytest.raises(ValueError, match="needs a budget"):
    eval_lib.schedule_for(c, model, "zero_tprune")
  with pytest.raises(ValueError, match="below what"):
    eval_lib.schedule_for(c, model, "zero_tprune", 1e-6)
  c.data.name = "image_folder"
  c.data.split = None  # data_dir itself is the root (else data_dir/<split>)
  c.data.data_dir = str(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="missing"):
    eval_lib.build_loader(c, model)
  c.data.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match="no class sub-folders"):
    eval_lib.build_loader(c, model)
  c.data.name = "cifar"
  with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
    eval_lib.build_loader(c, model)
  c.checkpoint = str(tmp_path / "nope.npz")
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    eval_lib.load_params(c, model)


def test_append_csv_refuses_other_columns(tmp_path):
  path = str(tmp_path / "r.csv")
  eval_lib.append_csv(path, {"a": 1, "b": 2})
  eval_lib.append_csv(path, {"a": 3, "b": 4})
  assert [r["a"] for r in _rows(path)] == ["1", "3"]
  with pytest.raises(ValueError, match="columns"):
    eval_lib.append_csv(path, {"a": 1, "c": 2})
