"""Any image folder with one sub-folder per class (``root/<class>/<image>``)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder:
  """Labelled images under ``root/<class>/``; classes are the sorted sub-folder names.

  Examples are ordered by class, then by file name (deterministic). Files are decoded with
  PIL on access and passed through ``transform``.

  Args:
    root: the folder.
    transform: PIL image -> float32 ``[H, W, C]`` (e.g. `preprocess.EvalTransform`).
    extensions: accepted file suffixes (case-insensitive).

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: ``root`` has no class sub-folders or no images in them.
  """

  def __init__(
    self,
    root: str | os.PathLike,
    transform: Callable[[Image.Image], np.ndarray],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
  ):
    root = pathlib.Path(root)
    if not root.is_dir():
      raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    self.class_names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not self.class_names:
      raise ValueError(f"image folder {str(root)!r} has no class sub-folders (root/<class>/...)")
    exts = {e.lower() for e in extensions}
    files, labels = [], []
    for label, name in enumerate(self.class_names):
      for path in sorted((root / name).iterdir()):
        if path.is_file() and path.suffix.lower() in exts:
          files.append(path)
          labels.append(label)
    if not files:
      raise ValueError(
        f"image folder {str(root)!r} has class sub-folders {list(self.class_names)[:5]} but no "
        f"images with extensions {sorted(exts)}"
      )
    self.root = root
    self.files = tuple(files)
    self.labels = np.asarray(labels, np.int32)
    self.transform = transform

  def __len__(self) -> int:
    return len(self.files)

  def get(self, i: int) -> tuple[np.ndarray, int]:
    """Example ``i``: ``([H, W, C] float32, label)``."""
    with Image.open(self.files[i]) as image:
      return self.transform(image), int(self.labels[i])

  def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
    pairs = [self.get(int(i)) for i in indices]
    return np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], np.int32)
