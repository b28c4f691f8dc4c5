"""Dataset names -> random-access sources: one call for every evaluation dataset."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from ztprune_jax.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from ztprune_jax.data.folder import ImageFolder, find_root, read_class_map
from ztprune_jax.data.pipeline import InMemorySource, Source
from ztprune_jax.data.preprocess import EvalTransform
from ztprune_jax.data.textured_fmnist import TexturedFashionMNIST

__all__ = [
  "DATASETS",
  "MODEL_LABELS",
  "fashion_mnist_source",
  "make_source",
  "model_label_names",
  "synthetic_source",
  "textured_fmnist_source",
  "TexturedSource",
]

# The embedded default first.
DATASETS = ("fashion_mnist", "imagenet2012", "image_folder", "synthetic", "textured_fmnist")
# Class names of models whose head we know, in output order (image folders named after
# them map without a class_map file).
MODEL_LABELS = {
  "vit_fmnist_patch4_28": FASHION_MNIST_CLASSES,
  "vit_textured_patch8_96": FASHION_MNIST_CLASSES,
}


def model_label_names(model_name: str) -> tuple[str, ...] | None:
  """The class names of ``model_name``'s outputs, when known (else None)."""
  return MODEL_LABELS.get(model_name)


def fashion_mnist_source(
  split: str, transform: EvalTransform, data_dir: str | os.PathLike | None = None
) -> InMemorySource:
  """Fashion-MNIST in memory, normalised by ``transform`` (resized only if its size is not 28).

  Args:
    split: ``"train"`` or ``"test"``.
    transform: gives ``image_size``, ``channels`` (grey copied to 3 if 3) and mean/std.
    data_dir: optional folder with the IDX files (see `load_fashion_mnist`).
  """
  images, labels = load_fashion_mnist(split, data_dir)  # uint8 [N, 28, 28], int32 [N]
  if transform.image_size != images.shape[1]:
    x = np.stack([transform(Image.fromarray(im)) for im in images])  # [N, S, S, C]
  else:
    x = transform.normalize(np.repeat(images[..., None], transform.channels, axis=-1))
  return InMemorySource(x, labels, FASHION_MNIST_CLASSES)


class TexturedSource:
  """Textured Fashion-MNIST composited on demand (no 10000-image array held in memory).

  Args:
    data: the split's `TexturedFashionMNIST`.
    transform: normalisation; resized with its PIL pipeline only if its ``image_size`` is
      not the data's (then also center-cropped as `EvalTransform` does).
  """

  def __init__(self, data: TexturedFashionMNIST, transform: EvalTransform):
    if transform.channels != 3:
      raise ValueError(f"textured_fmnist is RGB; transform.channels={transform.channels}")
    self.data, self.transform = data, transform
    self.labels = data.labels
    self.class_names = FASHION_MNIST_CLASSES

  def __len__(self) -> int:
    return len(self.data)

  def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = self.data.get(np.asarray(indices, np.int64))  # uint8 [b, S, S, 3]
    if self.transform.image_size == self.data.image_size:
      return self.transform.normalize(images), labels
    x = np.stack([self.transform(Image.fromarray(im)) for im in images])  # [b, s, s, 3]
    return x, labels


def textured_fmnist_source(
  split: str,
  transform: EvalTransform,
  data_dir: str | os.PathLike | None = None,
  *,
  seed: int = 0,
  verify: bool = True,
) -> TexturedSource:
  """Textured Fashion-MNIST (`ztprune_jax.data.textured_fmnist`), regenerated bit-exactly.

  The test split composites the committed Fashion-MNIST test garments on the test
  photographs; the train split needs the Fashion-MNIST *train* files, which the repository
  does not ship (`load_fashion_mnist` searches ``data_dir``, Debian's package and the
  cache, and its error says how to get them).

  Args:
    split: ``"train"`` or ``"test"``.
    transform: RGB normalisation (`EvalTransform` with ``channels=3``).
    data_dir: optional folder with the Fashion-MNIST IDX files.
    seed: the data set's seed (0 is the reported one).
    verify: check the Fashion-MNIST files' SHA-256 (see `load_fashion_mnist`).
  """
  images, labels = load_fashion_mnist(split, data_dir, verify=verify)  # uint8 [N, 28, 28]
  return TexturedSource(TexturedFashionMNIST(images, labels, split, seed=seed), transform)


def synthetic_source(
  num_examples: int, transform: EvalTransform, *, num_classes: int, seed: int = 0
) -> InMemorySource:
  """Seeded Gaussian images with uniform random labels (plumbing and throughput only)."""
  if num_examples < 1 or num_classes < 1:
    raise ValueError(f"num_examples={num_examples} and num_classes={num_classes} must be >= 1")
  rng = np.random.default_rng(seed)
  s, c = transform.image_size, transform.channels
  images = rng.standard_normal((num_examples, s, s, c), dtype=np.float32)
  labels = rng.integers(0, num_classes, num_examples, dtype=np.int32)
  return InMemorySource(images, labels, tuple(str(i) for i in range(num_classes)))


def make_source(
  name: str,
  transform: EvalTransform,
  *,
  split: str | None = None,
  data_dir: str | os.PathLike | None = None,
  manual_dir: str | os.PathLike | None = None,
  num_classes: int | None = None,
  num_examples: int = 64,
  seed: int = 0,
  imagenet_builder: str = "jpeg",
  class_map: str | os.PathLike | Mapping[str, int] | None = None,
  label_names: Sequence[str] | None = None,
) -> Source:
  """A random-access source of normalised float32 ``[H, W, C]`` images and int labels.

  Args:
    name: one of `DATASETS`: ``fashion_mnist`` (the embedded default; ``split`` train or
      test, default test), ``imagenet2012`` (validation from ``manual_dir``, prepared under
      ``data_dir``), ``image_folder`` (``data_dir/<class>/<image>``; ``split`` names a
      sub-folder of ``data_dir`` when given; labels are the model's output indices,
      see `folder.class_labels`), ``synthetic`` (``num_examples`` seeded Gaussian
      images, ``num_classes`` labels), ``textured_fmnist`` (Fashion-MNIST garments on
      photographs, 96 px RGB, regenerated on demand with the data set's seed 0, see
      `textured_fmnist_source` for others; ``split`` train or test, default test; train
      needs the Fashion-MNIST train files installed).
    transform: preprocessing (`EvalTransform`).
    split, data_dir, manual_dir: where the data is, as above.
    num_classes: the model's outputs, or None (unknown head): ``synthetic`` labels
      (default 1000); with it, ``image_folder`` classes map to output indices and a
      dataset with more classes than outputs is refused.
    num_examples, seed: for ``synthetic``.
    imagenet_builder: ``"jpeg"`` (no TensorFlow) or ``"stock"`` (needs TensorFlow).
    class_map: ``image_folder``: a JSON file or dict ``{folder name: output index}``.
    label_names: ``image_folder``: the model's class names in output order, if known.

  Raises:
    ValueError: an unknown name (the message lists the valid ones) or missing arguments.
    FileNotFoundError: the data is not where it is said to be.
  """
  if name == "fashion_mnist":
    if num_classes is not None and num_classes < len(FASHION_MNIST_CLASSES):
      raise ValueError(
        f"fashion_mnist has {len(FASHION_MNIST_CLASSES)} classes but the model has only "
        f"{num_classes} outputs"
      )
    return fashion_mnist_source(split or "test", transform, data_dir)
  if name == "textured_fmnist":
    if num_classes is not None and num_classes < len(FASHION_MNIST_CLASSES):
      raise ValueError(
        f"textured_fmnist has {len(FASHION_MNIST_CLASSES)} classes but the model has only "
        f"{num_classes} outputs"
      )
    # The data set's own seed stays 0 (the reported data): ``seed`` is an evaluation's
    # method seed here, which must not change the images.
    return textured_fmnist_source(split or "test", transform, data_dir)
  if name == "imagenet2012":
    if not manual_dir:
      raise ValueError("imagenet2012 needs manual_dir (the folder with ILSVRC2012_img_val.tar)")
    from ztprune_jax.data.imagenet import imagenet2012_source  # imports tfds (seconds)

    return imagenet2012_source(
      manual_dir,
      transform,
      split=split or "validation",
      data_dir=data_dir,
      builder=imagenet_builder,
    )
  if name == "image_folder":
    if not data_dir:
      raise ValueError("image_folder needs data_dir (root/<class>/<image>)")
    if isinstance(class_map, str | os.PathLike):
      class_map = read_class_map(class_map)
    return ImageFolder(
      find_root(data_dir, split),
      transform,
      num_outputs=num_classes,
      class_map=class_map,
      label_names=label_names,
    )
  if name == "synthetic":
    k = 1000 if num_classes is None else num_classes
    return synthetic_source(num_examples, transform, num_classes=k, seed=seed)
  close = difflib.get_close_matches(name, DATASETS, n=2)
  hint = f" Did you mean {close}?" if close else ""
  raise ValueError(f"Unknown dataset {name!r}.{hint} Valid: {list(DATASETS)}")
