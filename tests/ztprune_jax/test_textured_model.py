"""The shipped textured Fashion-MNIST model (models/vit_textured): hash and test accuracy."""

import hashlib
import json
import pathlib
import re

import jax
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.data.fashion_mnist import load_fashion_mnist
from ztprune_jax.data.textured_fmnist import TexturedFashionMNIST

MODEL_DIR = pathlib.Path(__file__).resolve().parents[2] / "models" / "vit_textured"
META = json.loads((MODEL_DIR / "model.json").read_text())


def _correct(num_images: int) -> int:
  """Top-1 hits on the first ``num_images`` textured test composites (seed 0)."""
  model = zt.create_model(META["model_name"])
  params = zt.load_checkpoint(MODEL_DIR / META["file"], model)
  garments, labels = load_fashion_mnist("test")
  data = TexturedFashionMNIST(garments[:num_images], labels[:num_images], "test", seed=0)
  mean, std = np.asarray(META["mean"], np.float32), np.asarray(META["std"], np.float32)
  predict = jax.jit(lambda x: model.apply({"params": params}, x).argmax(-1))
  correct = 0
  for s in range(0, num_images, 250):  # a multiple of 250: one compiled shape
    images, y = data.get(np.arange(s, s + 250))
    x = (images.astype(np.float32) / 255.0 - mean) / std
    correct += int(np.sum(np.asarray(predict(x)) == y))
  return correct


def test_checkpoint_hash_matches_model_card():
  digest = hashlib.sha256((MODEL_DIR / META["file"]).read_bytes()).hexdigest()
  assert digest == META["sha256"]
  assert digest in (MODEL_DIR / "MODEL_CARD.md").read_text()


def test_first_500_test_images_reproduce_the_model_card():
  # The composites are bit-exact and the forward pass deterministic on CPU; one image of
  # slack for float rounding on another machine.
  assert abs(_correct(500) - META["test500_correct"]) <= 1


@pytest.mark.slow
def test_full_test_split_reproduces_the_model_card():
  top1 = _correct(10000) / 10000
  assert top1 == pytest.approx(META["test_top1"], abs=1.5e-4)
  assert re.search(rf"{100 * META['test_top1']:.2f} ?%", (MODEL_DIR / "MODEL_CARD.md").read_text())
