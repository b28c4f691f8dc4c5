"""The shipped default model (models/vit_fmnist): hash, and accuracy on the committed test split."""

import functools
import hashlib
import json
import pathlib
import re

import jax
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.data.fashion_mnist import load_fashion_mnist
from ztprune_jax.train import training

MODEL_DIR = pathlib.Path(__file__).resolve().parents[2] / "models" / "vit_fmnist"
META = json.loads((MODEL_DIR / "model.json").read_text())


def _top1(num_images: int) -> float:
  model = zt.create_model(META["model_name"])
  params = zt.load_checkpoint(MODEL_DIR / META["file"], model)
  images, labels = load_fashion_mnist("test")
  images, labels = images[:num_images], labels[:num_images]
  prep = functools.partial(training.preprocess, mean=tuple(META["mean"]), std=tuple(META["std"]),
                           image_size=model.image_size, in_channels=model.in_channels)  # fmt: skip
  predict = jax.jit(lambda x: model.apply({"params": params}, prep(x)).argmax(-1))
  correct = 0
  for s in range(0, num_images, 500):  # num_images is a multiple of 500: one compiled shape
    correct += int(np.sum(np.asarray(predict(images[s : s + 500])) == labels[s : s + 500]))
  return correct / num_images


def test_checkpoint_hash_matches_model_card():
  digest = hashlib.sha256((MODEL_DIR / META["file"]).read_bytes()).hexdigest()
  assert digest == META["sha256"]
  assert digest in (MODEL_DIR / "MODEL_CARD.md").read_text()


def test_first_1000_test_images_sanity():
  # A sanity floor (a broken checkpoint or preprocessing scores ~0.1), not a tuned threshold.
  assert _top1(1000) >= 0.85


def test_full_test_split_reproduces_the_model_card():  # ~10 s on 2 CPU cores
  top1 = _top1(10000)
  assert top1 == pytest.approx(META["test_top1"], abs=1.5e-4)  # at most one image differs
  card = (MODEL_DIR / "MODEL_CARD.md").read_text()
  assert re.search(rf"{100 * META['test_top1']:.2f} ?%", card)
