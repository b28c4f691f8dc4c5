"""Evaluation data: Fashion-MNIST (embedded default), ImageNet-1k val via tfds, image folders.

Every dataset is a random-access source (`make_source`) batched by `BatchLoader` into
static-shape `Batch` es (images float32 ``[B, H, W, C]``, labels int32 ``[B]``, mask
``[B]``). `ztprune_jax.data.imagenet` (tfds) is imported on first use.
"""

from ztprune_jax.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from ztprune_jax.data.folder import ImageFolder
from ztprune_jax.data.pipeline import Batch, BatchLoader, InMemorySource, Source, host_indices
from ztprune_jax.data.preprocess import (
  IMAGENET_MEAN,
  IMAGENET_STD,
  MODEL_PREPROCESS,
  EvalTransform,
  model_preprocess,
  resize_size,
)
from ztprune_jax.data.registry import DATASETS, fashion_mnist_source, make_source, synthetic_source

__all__ = [
  "DATASETS",
  "FASHION_MNIST_CLASSES",
  "IMAGENET_MEAN",
  "IMAGENET_STD",
  "MODEL_PREPROCESS",
  "Batch",
  "BatchLoader",
  "EvalTransform",
  "ImageFolder",
  "InMemorySource",
  "Source",
  "fashion_mnist_source",
  "host_indices",
  "load_fashion_mnist",
  "make_source",
  "model_preprocess",
  "resize_size",
  "synthetic_source",
]
