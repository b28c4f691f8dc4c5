"""`evaluation.evaluate`'s per-example top-1 hits (`EvalResult.correct`), for paired tests."""

import jax
import numpy as np

import ztprune_jax as zt
from ztprune_jax import data
from ztprune_jax.eval import evaluation


def test_correct_holds_each_examples_top1_hit_in_order():
  model = zt.create_model(
    "deit_tiny_patch16_224", depth=2, image_size=16, patch_size=4, width=32, num_heads=2,
    mlp_dim=64, num_classes=3,
  )  # fmt: skip
  rng = np.random.default_rng(0)
  images = rng.standard_normal((37, 16, 16, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 37).astype(np.int32)
  params = model.init(jax.random.key(0), images[:1])["params"]
  expected = np.argmax(np.asarray(model.apply({"params": params}, images)), -1) == labels
  loader = data.BatchLoader(data.InMemorySource(images, labels, ("a", "b", "c")), 16)
  res = evaluation.evaluate(model, params, loader, progress=False)
  assert res.correct.dtype == bool and res.correct.shape == (37,)  # the padded rows dropped
  np.testing.assert_array_equal(res.correct, expected)
  assert res.top1 == expected.mean()
