"""Fixtures shared by the ztprune_jax tests."""

import jax
import pytest

import ztprune_jax as zt


@pytest.fixture(scope="module")
def tiny_vit():
  """``(model, params, images)``: a random 4-block DeiT-tiny at 64 px (16 patches, 10
  classes) and two random images ``[2, 64, 64, 3]``."""
  model = zt.create_model("deit_tiny_patch16_224", depth=4, image_size=64, num_classes=10)
  images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  params = model.init(jax.random.key(0), images)["params"]
  return model, params, images
