"""ImageNet-1k validation through tensorflow-datasets, without TensorFlow, never downloading.

Default route (no TensorFlow): `Imagenet2012ValJpeg`, a small tfds builder that copies the
50 000 validation JPEG files byte for byte from ``manual_dir`` into array-record shards
(once, in file-name order), labelled with tfds's bundled ``imagenet2012`` validation
labels (class ids follow tfds's sorted synsets, the same ids timm/DeiT heads use). It is
read back with random access (``as_data_source``) and decoded by PIL, so the timm
preprocessing (`preprocess.EvalTransform`) runs on the original pixels.

``manual_dir`` holds ``ILSVRC2012_img_val.tar`` (as for tfds's stock builder) or an
extracted ``ILSVRC2012_img_val/`` folder of ``ILSVRC2012_val_XXXXXXXX.JPEG`` files.

Stock route (``builder="stock"``): tfds's own ``imagenet2012`` builder, which needs
TensorFlow to prepare; without it the call says so.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import tarfile
from collections.abc import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

__all__ = ["Imagenet2012ValJpeg", "TfdsImageSource", "imagenet2012_source"]

VAL_TAR = "ILSVRC2012_img_val.tar"
VAL_DIR = "ILSVRC2012_img_val"
NUM_VAL = 50000
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG$")


def _bundled(name: str) -> list[str]:
  """Lines of a label file tfds ships with its imagenet2012 builder."""
  path = tfds.core.tfds_path(f"datasets/imagenet2012/{name}")
  return path.read_text().split()


def _val_files(manual_dir: pathlib.Path):
  """Yields ``(file name, JPEG bytes)`` of the validation images, in file-name order."""
  folder, tar = manual_dir / VAL_DIR, manual_dir / VAL_TAR
  if folder.is_dir():
    for path in sorted(folder.iterdir()):
      if _VAL_NAME.search(path.name):
        yield path.name, path.read_bytes()
  else:
    with tarfile.open(tar) as archive:
      members = sorted((m for m in archive if m.isfile()), key=lambda m: m.name)
      for m in members:
        name = os.path.basename(m.name)
        if _VAL_NAME.search(name):
          yield name, archive.extractfile(m).read()


class Imagenet2012ValJpeg(tfds.core.GeneratorBasedBuilder):
  """ImageNet-1k validation as stored JPEG bytes + labels (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "JPEG bytes, tfds imagenet2012 labels, file-name order."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Put {VAL_TAR} (or the extracted {VAL_DIR}/ folder) of ImageNet-1k (ILSVRC2012) in "
    "manual_dir; get it from https://image-net.org (registration required)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="ImageNet-1k validation images (original JPEG bytes) and labels.",
      features=tfds.features.FeaturesDict(
        {
          "jpeg": tfds.features.Tensor(shape=(), dtype=np.object_),
          "label": tfds.features.Tensor(shape=(), dtype=np.int64),
          "file_name": tfds.features.Text(),
        }
      ),
      disable_shuffling=True,  # keep file-name order: a calibration split is its start
    )

  def _split_generators(self, dl_manager):
    return {"validation": self._generate_examples(pathlib.Path(dl_manager.manual_dir))}

  def _generate_examples(self, manual_dir):
    synsets = _bundled("labels.txt")
    ids = {s: i for i, s in enumerate(synsets)}
    val = _bundled("validation_labels.txt")  # synset of ILSVRC2012_val_{1..50000}
    for name, data in _val_files(manual_dir):
      number = int(_VAL_NAME.search(name).group(1))
      if not 1 <= number <= len(val):
        raise ValueError(f"{name}: no ImageNet validation image has number {number}")
      yield name, {"jpeg": data, "label": ids[val[number - 1]], "file_name": name}


class TfdsImageSource:
  """A `pipeline.Source` over a ``tfds`` data source of encoded or decoded images.

  Args:
    data_source: random-access records (``builder.as_data_source(split)``).
    transform: PIL image -> float32 ``[H, W, C]``.
    image_key: record key of the JPEG bytes or ``[H, W, C]`` uint8 array.
    label_key: record key of the int label.
    class_names: the class names.
  """

  def __init__(
    self,
    data_source,
    transform: Callable[[Image.Image], np.ndarray],
    *,
    image_key: str = "jpeg",
    label_key: str = "label",
    class_names=(),
  ):
    self.data_source = data_source
    self.transform = transform
    self.image_key, self.label_key = image_key, label_key
    self.class_names = tuple(class_names)

  def __len__(self) -> int:
    return len(self.data_source)

  def get(self, i: int) -> tuple[np.ndarray, int]:
    record = self.data_source[int(i)]
    data = record[self.image_key]
    if isinstance(data, bytes):
      with Image.open(io.BytesIO(data)) as image:
        x = self.transform(image)
    else:
      x = self.transform(Image.fromarray(np.asarray(data).squeeze()))
    return x, int(record[self.label_key])

  def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
    pairs = [self.get(int(i)) for i in indices]
    return np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], np.int32)


def imagenet2012_source(
  manual_dir: str | os.PathLike,
  transform: Callable[[Image.Image], np.ndarray],
  *,
  split: str = "validation",
  data_dir: str | os.PathLike | None = None,
  builder: str = "jpeg",
) -> TfdsImageSource:
  """ImageNet-1k validation as a random-access source (prepared once under ``data_dir``).

  Args:
    manual_dir: folder with ``ILSVRC2012_img_val.tar`` or ``ILSVRC2012_img_val/``.
    transform: PIL image -> float32 ``[H, W, C]`` (`preprocess.EvalTransform`).
    split: ``"validation"`` (the only split served).
    data_dir: tfds data dir for the prepared shards (None: tfds's default).
    builder: ``"jpeg"`` (`Imagenet2012ValJpeg`, no TensorFlow) or ``"stock"`` (tfds's
      ``imagenet2012``, needs TensorFlow).

  Raises:
    FileNotFoundError: ``manual_dir`` or the validation files in it are missing.
    ValueError: another split or an unknown builder.
    ImportError: ``builder="stock"`` without TensorFlow.
  """
  if split != "validation":
    raise ValueError(f"split={split!r}: only ImageNet-1k 'validation' is served")
  if builder not in ("jpeg", "stock"):
    raise ValueError(f"builder={builder!r} must be 'jpeg' or 'stock'")
  manual = pathlib.Path(manual_dir)
  if not manual.is_dir():
    raise FileNotFoundError(f"ImageNet manual_dir {str(manual)!r} does not exist")
  if not (manual / VAL_TAR).is_file() and not (manual / VAL_DIR).is_dir():
    raise FileNotFoundError(
      f"ImageNet manual_dir {str(manual)!r} has neither {VAL_TAR} nor {VAL_DIR}/"
    )
  config = tfds.download.DownloadConfig(manual_dir=str(manual), try_download_gcs=False)
  names = _bundled("labels.txt")
  if builder == "stock":
    try:
      import tensorflow  # noqa: F401
    except ImportError as e:
      raise ImportError(
        "builder='stock' prepares tfds's imagenet2012, which needs TensorFlow: "
        "`pip install tensorflow-cpu`, or use builder='jpeg' (no TensorFlow)"
      ) from e
    b = tfds.builder("imagenet2012", data_dir=data_dir, file_format="array_record")
    b.download_and_prepare(download_config=config)
    return TfdsImageSource(b.as_data_source(split), transform, image_key="image", class_names=names)
  b = Imagenet2012ValJpeg(data_dir=data_dir, file_format="array_record")
  b.download_and_prepare(download_config=config)
  return TfdsImageSource(b.as_data_source(split), transform, class_names=names)
