"""`parallel_jax`: padding, host slices, and 8 fake CPU devices equal to 1 device."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import parallel_jax as parallel

# Runs in a fresh interpreter: the device count is fixed when JAX starts.
_EIGHT_DEVICES = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np
  import ztprune_jax as zt
  from ztprune_jax.eval import evaluation
  import parallel_jax as parallel
  assert jax.device_count() == 8, jax.devices()
  model = zt.create_model("deit_tiny_patch16_224", depth=3, image_size=32, patch_size=8,
                          num_classes=7)
  images = np.random.default_rng(0).normal(size=(13, 32, 32, 3)).astype(np.float32)
  labels = np.random.default_rng(1).integers(0, 7, size=13).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])["params"]
  pruned = zt.prune(model, "zero_tprune", [(0, 0.5), (1, 0.5)])

  def logits_fn(params, batch):
    return pruned.apply({"params": params}, batch[0])

  def correct_fn(params, batch):
    x, y, mask = batch
    hit = jnp.argmax(pruned.apply({"params": params}, x), -1) == y
    return parallel.masked_sum(hit.astype(jnp.int32), mask), parallel.masked_sum(
      jnp.ones_like(y), mask)

  out = {}
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    p = parallel.replicate(mesh, params)
    (x, y), mask = parallel.pad_batch((images, labels), parallel.local_multiple(mesh))
    batch = parallel.shard_batch(mesh, (x, y, mask))
    logits = parallel.data_parallel(mesh, logits_fn, (1,), batch_outputs=True)(p, batch)
    assert len(logits.sharding.device_set) == n
    correct, count = parallel.data_parallel(mesh, correct_fn, (1,))(p, batch)
    out[n] = (np.asarray(logits)[np.asarray(mask)], int(correct), int(count), x.shape[0])
    batches = [(images, labels, np.ones(13, bool)), (images[:5], labels[:5], np.ones(5, bool))]
    res = evaluation.evaluate(pruned, params, batches, progress=False, mesh=mesh)
    out[n] += (res.top1, res.top5, res.num_examples)
  print("padded", out[1][3], out[8][3])
  print("count", out[1][2], out[8][2])
  print("correct", out[1][1], out[8][1])
  print("evaluate", *out[1][4:], *out[8][4:])
  print("maxdiff", float(np.max(np.abs(out[1][0] - out[8][0]))))
  """
)


@pytest.fixture(scope="module")
def eight_device_run():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")  # fmt: skip
  res = subprocess.run(
    [sys.executable, "-c", _EIGHT_DEVICES], env=env, capture_output=True, text=True,
    timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
  )  # fmt: skip
  assert res.returncode == 0, res.stderr[-3000:]
  return dict(line.split(" ", 1) for line in res.stdout.strip().splitlines())


def test_eight_devices_equal_one(eight_device_run):
  r = eight_device_run
  # 13 rows: padded to 16 on 8 devices, kept at 13 on 1; the padding is masked, not dropped.
  assert r["padded"].split() == ["13", "16"]
  assert r["count"].split() == ["13", "13"]
  c1, c8 = r["correct"].split()
  assert c1 == c8
  assert float(r["maxdiff"]) <= 1e-5
  # `evaluate` over a 1- and an 8-device mesh: same accuracies, all 18 examples counted.
  e = r["evaluate"].split()
  assert e[:3] == e[3:] and e[2] == "18"


def test_pad_batch_masks_padding():
  x = np.arange(10, dtype=np.float32).reshape(5, 2)
  y = np.arange(5)
  (xp, yp), mask = parallel.pad_batch((x, y), 4)
  assert xp.shape == (8, 2) and yp.shape == (8,)
  np.testing.assert_array_equal(mask, [1, 1, 1, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(xp[:5], x)
  np.testing.assert_array_equal(xp[5:], 0)
  assert int(parallel.masked_sum(jax.numpy.asarray(yp + 1), jax.numpy.asarray(mask))) == 15
  (xq,), m2 = parallel.pad_batch((x,), 5)
  assert xq.shape == (5, 2) and m2.all()


def test_host_batch_slice_partitions_the_batch():
  rows = [np.arange(64)[parallel.host_batch_slice(64, i, 4)] for i in range(4)]
  np.testing.assert_array_equal(np.concatenate(rows), np.arange(64))
  assert parallel.host_batch_slice(32) == slice(0, 32)  # one host here


def test_single_device_mesh_and_bad_input():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",)
  assert parallel.local_multiple(mesh) == jax.device_count()
  with pytest.raises(ValueError, match="num_devices"):
    parallel.make_mesh(jax.device_count() + 1)
  with pytest.raises(ValueError, match="divisible by process_count"):
    parallel.host_batch_slice(10, 0, 4)
  with pytest.raises(ValueError, match="process_index"):
    parallel.host_batch_slice(8, 4, 4)
  with pytest.raises(ValueError, match="leading"):
    parallel.pad_batch((np.zeros(3), np.zeros(4)), 2)
  with pytest.raises(ValueError, match="multiple"):
    parallel.pad_batch(np.zeros(3), 0)


def test_train_runs_data_parallel_on_eight_devices(tmp_path, fmnist_train_dir):
  """The trainer shards its batches over 8 fake devices and still trains and evaluates."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")  # fmt: skip
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  res = subprocess.run(
    [sys.executable, "-m", "experiments.train", "--config=configs/train_fashion_mnist.py:runlocal",
     f"--workdir={tmp_path}", "--config.progress=false",
     f"--config.data.data_dir={fmnist_train_dir}", "--config.data.verify=false"],
    env=env, capture_output=True, text=True, timeout=600, cwd=root,
  )  # fmt: skip
  assert res.returncode == 0, res.stderr[-3000:]
  last = res.stdout.strip().splitlines()[-1]
  assert last.startswith("test_top1=") and 0.0 <= float(last.split("=")[1]) <= 1.0
