"""A researcher's own images and checkpoint: one-line errors, no silent wrong results.

Command-line cases run `python -m experiments.evaluate` in a subprocess as a user would;
each stops before evaluating anything (or evaluates a handful of images), so it costs
little more than the imports. The library cases check the same rules without a process.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from ml_collections import config_dict
from PIL import Image

import ztprune_jax as zt
from configs import eval as eval_config
from configs import sweep as sweep_config
from configs import visualize as visualize_config
from eml_jax import protocol
from eml_jax import stream as stream_lib
from ztprune_jax import data
from ztprune_jax.eval import eval_lib, evaluation
from ztprune_jax.pruning import tome

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST = ("--config.throughput.enabled=False", "--config.tensorboard=False")


def _evaluate(workdir, *flags, config="configs/eval.py:runlocal"):
  cmd = [sys.executable, "-m", "experiments.evaluate", f"--config={config}",
         f"--workdir={workdir}", *FAST, *flags]  # fmt: skip
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _fatal_line(proc) -> str:
  """The one FATAL line of a failed run (and nothing that looks like a traceback)."""
  assert proc.returncode == 1, proc.stdout[-1000:] + proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("FATAL")]
  return line


def _write_folder(root, classes, per_class=2, size=12):
  rng = np.random.default_rng(0)
  for c in classes:
    (root / c).mkdir(parents=True)
    for i in range(per_class):
      arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
      Image.fromarray(arr).save(root / c / f"{i}.png")
  return root


def _tiny(**kw):
  cfg = dict(depth=2, image_size=16, patch_size=4, width=32, num_heads=2, mlp_dim=64)
  return zt.create_model("deit_tiny_patch16_224", **{**cfg, "num_classes": 7, **kw})


# --- Command line: one line naming the field or file, exit 1; --verbose for the traceback.


@pytest.mark.parametrize(
  "flags, expected",
  [
    (("--config.method=tomee",), "config.method: Unknown pruning method 'tomee'"),
    (("--config.budget_gflops=-1",), "config.budget_gflops=-1.0 must be a positive"),
    (("--config.r=None", "--config.budget_gflops=1.0"), "at or above the unpruned model's"),
    (("--config.checkpoint=/nonexistent/w.safetensors",), "'/nonexistent/w.safetensors'"),
  ],
)
def test_user_errors_are_one_line(tmp_path, flags, expected):
  line = _fatal_line(_evaluate(tmp_path, *flags))
  assert expected in line, line
  assert not (tmp_path / "results.csv").exists()  # nothing recorded


def test_verbose_prints_the_traceback(tmp_path):
  proc = _evaluate(tmp_path, "--config.method=tomee", "--verbose")
  assert proc.returncode == 1
  assert "Traceback" in proc.stderr and "Unknown pruning method 'tomee'" in proc.stderr


def test_config_errors_name_only_the_bad_override(tmp_path):
  line = _fatal_line(_evaluate(tmp_path, "--config.seed=3", "--config.data.batch_sise=3"))
  assert "--config.data.batch_sise=3" in line and "--config.seed=3" not in line, line
  line = _fatal_line(_evaluate(tmp_path, "--config.seed=None"))
  assert "config.seed is not optional" in line, line
  line = _fatal_line(_evaluate(tmp_path, config="configs/eval.py:imagenet_deit"))
  assert "Unknown preset 'imagenet_deit'" in line, line


def test_placeholders_clear_from_the_command_line():
  # Flag parsing only (the image-folder test below also runs with num_examples=None).
  # runlocal sets num_examples=64 and r=1; `none` (lower case) stays the unpruned method.
  argv = ["evaluate", "--config=configs/eval.py:runlocal", "--config.data.num_examples=None",
          "--config.data.split=None", "--config.r=None", "--config.method=none"]  # fmt: skip
  code = (
    "import sys; from experiments import cli, evaluate; sys.argv = " + repr(argv) + "; "
    "cli.parse_flags(sys.argv); c = evaluate._CONFIG.value; "
    "print(c.data.num_examples, c.data.split, c.r, c.method)"
  )
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["None", "None", "None", "none"]


@pytest.mark.parametrize("module", [eval_config, sweep_config, visualize_config])
def test_optional_fields_are_placeholders(module):
  c = module.get_config("runlocal")
  assert "class_map" in c.data and "nonfinite" in c.data and "num_classes" in c.model
  optional = ("data.split", "data.num_examples", "data.class_map", "checkpoint", "r",
              "budget_gflops", "model.num_classes", "model.ln_eps", "model.image_size")  # fmt: skip
  for path in optional:
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      node = node[p]
    if leaf in node:
      assert isinstance(node._fields[leaf], config_dict.FieldReference), path


def test_internal_errors_keep_their_traceback():
  from experiments import cli

  with pytest.raises(ValueError) as inside_numpy:
    np.zeros(3).reshape(2)
  assert not cli.is_user_error(inside_numpy.value)
  with pytest.raises(ValueError) as ours:
    eval_lib.schedule_for(eval_config.get_config("runlocal"), _tiny(), "tomee")
  assert cli.is_user_error(ours.value)
  assert cli.is_user_error(FileNotFoundError("x")) and not cli.is_user_error(TypeError("x"))


# --- Your own images: folders, splits, class mapping.


def test_image_folder_end_to_end_needs_a_mapping_for_names_the_head_lacks(tmp_path):
  imgs = _write_folder(tmp_path / "imgs", ["cat", "dog"], per_class=4, size=28)
  folder = ("--config.data.name=image_folder", f"--config.data.data_dir={imgs}",
            "--config.data.num_examples=None")  # fmt: skip
  line = _fatal_line(_evaluate(tmp_path / "a", *folder))
  assert "pass class_map=" in line and "['cat', 'dog']" in line and "10 outputs" in line, line
  mapping = tmp_path / "classes.json"
  mapping.write_text(json.dumps({"cat": 3, "dog": 5}))
  # A checkpoint's model fields are overridable (here the runlocal values themselves).
  proc = _evaluate(tmp_path / "b", *folder, f"--config.data.class_map={mapping}",
                   "--config.model.num_classes=10", "--config.model.ln_eps=1e-6")  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b").glob("*.json")]
  assert record["num_examples"] == 8 and "class_map file" in record["dataset"]


def test_class_labels_rules(tmp_path):
  t = data.EvalTransform(image_size=8, crop_pct=1.0)
  root = _write_folder(tmp_path / "pets", ["cat", "dog"])

  def labels(**kw):
    return data.make_source("image_folder", t, data_dir=str(root), **kw).labels.tolist()

  with pytest.raises(ValueError, match="cannot be matched to the model's 10 outputs.*class_map"):
    labels(num_classes=10)
  with pytest.raises(ValueError, match="class_map"):  # 2 folders are not ImageNet's order
    labels(num_classes=1000)
  with pytest.raises(ValueError, match="has 2 class folders .* only 1 outputs"):
    labels(num_classes=1)
  (tmp_path / "m.json").write_text(json.dumps({"cat": 281, "dog": 207, "fox": 277}))
  assert labels(num_classes=1000, class_map=str(tmp_path / "m.json")) == [281, 281, 207, 207]
  (tmp_path / "short.json").write_text(json.dumps({"cat": 1}))
  with pytest.raises(ValueError, match=r"\['dog'\] that class_map does not list"):
    labels(num_classes=10, class_map=str(tmp_path / "short.json"))
  with pytest.raises(ValueError, match="outside the model's 10 outputs"):
    labels(num_classes=10, class_map={"cat": 1, "dog": 10})
  with pytest.raises(FileNotFoundError, match="nope.json"):
    labels(num_classes=10, class_map=str(tmp_path / "nope.json"))
  # Names of the model's classes (case and punctuation ignored), and index names.
  shop = _write_folder(tmp_path / "shop", ["bag", "sneaker"])
  src = data.make_source("image_folder", t, data_dir=str(shop), num_classes=10,
                         label_names=data.FASHION_MNIST_CLASSES)  # fmt: skip
  assert src.labels.tolist() == [8, 8, 7, 7]  # Bag, Sneaker in Fashion-MNIST's order
  idx = _write_folder(tmp_path / "idx", ["2", "9"])
  src = data.make_source("image_folder", t, data_dir=str(idx), num_classes=10)
  assert src.labels.tolist() == [2, 2, 9, 9]


def test_an_undecodable_image_is_named(tmp_path):
  root = _write_folder(tmp_path / "imgs", ["0", "1"])
  (root / "1" / "2.png").write_bytes(b"not a png")
  src = data.make_source("image_folder", data.EvalTransform(image_size=8), data_dir=str(root),
                         num_classes=2)  # fmt: skip
  with pytest.raises(ValueError, match=r"image 4 \('.*2.png'\) cannot be decoded"):
    src.get_batch([0, 4])


def test_image_folder_with_and_without_split_folders(tmp_path):
  t = data.EvalTransform(image_size=8, crop_pct=1.0)
  for split in ("train", "val"):
    _write_folder(tmp_path / "ds" / split, ["0", "1"])
  ds = str(tmp_path / "ds")
  with pytest.raises(ValueError, match=r"holds split folders \['train', 'val'\].*split="):
    data.make_source("image_folder", t, data_dir=ds, num_classes=2)
  src = data.make_source("image_folder", t, data_dir=ds, split="val", num_classes=2)
  assert len(src) == 4 and src.root.name == "val"
  with pytest.raises(FileNotFoundError, match="no split sub-folder 'test'.*split=None"):
    data.make_source("image_folder", t, data_dir=str(tmp_path / "ds" / "val"), split="test")


# --- No silent wrong results.


def _runlocal():
  c = eval_config.get_config("runlocal")
  c.unlock()
  c.r = None
  return c, eval_lib.build_model(c)


def test_budget_that_prunes_nothing_is_an_error():
  c, model = _runlocal()
  unpruned = zt.count_flops(model)["blocks"] / 1e9
  r1 = zt.count_flops(zt.prune(model, "zero_tprune", {"r": 1}))["blocks"] / 1e9
  with pytest.raises(ValueError, match="at or above the unpruned model's"):
    eval_lib.schedule_for(c, model, "zero_tprune", 2 * unpruned)
  near_r0 = unpruned - 0.25 * (unpruned - r1)  # nearer the unpruned cost than r=1's
  with pytest.raises(ValueError, match=r"nearer the unpruned .*r=1"):
    eval_lib.schedule_for(c, model, "zero_tprune", near_r0)
  assert eval_lib.schedule_for(c, model, "zero_tprune", r1).r == 1
  c.r = 0
  with pytest.raises(ValueError, match="config.r=0 removes no token"):
    eval_lib.schedule_for(c, model, "zero_tprune")


def test_tome_caps_by_hand():
  # 50 tokens (49 patches + CLS), r=12 in blocks 0..4: 50 -> 38 -> 26 -> 14, then block 3
  # may merge (14 - 1) // 2 = 6 and block 4 (8 - 1) // 2 = 3.
  assert tome.capped_blocks((12,) * 5 + (0,), num_tokens=50) == ((3, 12, 6), (4, 12, 3))
  assert tome.capped_blocks((4, 4), num_tokens=17) == ()


def test_tome_r_out_of_range_raises_and_later_caps_are_reported():
  c, _ = _runlocal()
  model = _tiny(depth=4)  # 16 patches + CLS: block 0 may merge at most 8
  c.r = 9
  with pytest.raises(ValueError, match=r"config.r=9 is out of range for ToMe.*r <= 8"):
    eval_lib.schedule_for(c, model, "tome")
  c.r = 6  # 17 -> 11; block 1 merges (11-1)//2 = 5, block 2 (6-1)//2 = 2, block 3 1
  bs = eval_lib.schedule_for(c, model, "tome")
  note = eval_lib.tome_caps(c, model, "tome", bs)
  assert "blocks [1, 2, 3]" in note and "merges [5, 2, 1]" in note, note
  c.r = 3  # 17 -> 14 -> 11 -> 8 -> 5: never capped
  assert eval_lib.tome_caps(c, model, "tome", eval_lib.schedule_for(c, model, "tome")) == ""


def test_nonfinite_images_raise_with_their_indices_or_are_skipped(rng):
  model = _tiny()
  x = np.array(jax.random.normal(rng, (10, 16, 16, 3)))
  labels = np.arange(10, dtype=np.int32) % 7
  x[3, 2, 5, 1] = np.nan
  x[7, 0, 0, 0] = np.inf
  params = model.init(rng, x[:1])["params"]
  loader = data.BatchLoader(data.InMemorySource(x, labels), 4, start=1)  # indices 1..9
  with pytest.raises(evaluation.NonFiniteError, match=r"2 image\(s\).*\[3, 7\]") as err:
    evaluation.evaluate(model, params, loader, progress=False)
  assert err.value.indices == (3, 7)
  res = evaluation.evaluate(model, params, loader, progress=False, nonfinite="skip")
  assert res.nonfinite == (3, 7) and res.num_examples == 7
  keep = [1, 2, 4, 5, 6, 8, 9]
  ref = evaluation.evaluate(
    model, params, data.BatchLoader(data.InMemorySource(x[keep], labels[keep]), 4), progress=False
  )
  assert (res.top1, res.top5) == (ref.top1, ref.top5)


def test_nonfinite_images_of_a_folder_are_named(tmp_path):
  imgs = _write_folder(tmp_path / "imgs", ["0", "1"], size=28)
  c, model = _runlocal()
  c.r = 1
  c.data.name, c.data.data_dir, c.data.num_examples = "image_folder", str(imgs), None
  c.data.mean, c.data.std = (0.5,), (0.0,)  # a zero std: every normalised pixel is inf or nan
  c.throughput.enabled = False
  loader, _ = eval_lib.build_loader(c, model)
  params, _ = eval_lib.load_params(c, model)
  with pytest.raises(evaluation.NonFiniteError, match=r"4 image\(s\).*0.png"):
    eval_lib.run_point(c, model, params, loader, "zero_tprune")
  c.data.nonfinite = "ignore"
  with pytest.raises(ValueError, match=r"config.data.nonfinite='ignore'; valid: \['raise'"):
    eval_lib.run_point(c, model, params, loader, "zero_tprune")


# --- EML: bad values in the user's own (row, column).


def test_eml_reports_nan_at_the_users_row_and_column():
  rng = np.random.default_rng(0)
  X, y = rng.normal(size=(120, 9)), np.arange(120) % 3
  X[37, 4] = np.nan
  with pytest.raises(ValueError, match=r"X\[37, 4\]=nan"):
    protocol.split_scale(X, y, seed=0, test_frac=0.3)  # before the shuffle and the scaling
  with pytest.raises(ValueError, match=r"rows \[37\].*X\[37, 4\]=nan"):
    stream_lib.make_one_shot(X, y)  # before the feature permutation
  X[37, 4], X[5, 8] = 0.0, -np.inf
  with pytest.raises(ValueError, match=r"X\[5, 8\]=-inf"):
    stream_lib.make_multi_shot(X, y)


def test_sweep_refuses_a_budget_above_the_unpruned_cost(tmp_path):
  cmd = [sys.executable, "-m", "experiments.sweep", "--config=configs/sweep.py:runlocal",
         f"--workdir={tmp_path}", "--config.budgets_gflops=(0.5,)"]  # fmt: skip
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ})  # fmt: skip
  line = _fatal_line(proc)
  assert "config.budgets_gflops[0]=0.5 is at or above the unpruned model's" in line, line
  assert not (tmp_path / "sweep.csv").exists()
