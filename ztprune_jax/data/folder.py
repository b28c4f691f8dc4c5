"""Any image folder with one sub-folder per class (``root/<class>/<image>``).

A folder's class names become the model's output indices through `class_labels`: an
explicit mapping file (`read_class_map`), folders named ``0 … K−1``, folders named after
the model's classes, or, for a 1000-way (ImageNet) head, exactly 1000 class folders taken
in sorted order (ImageNet's synset order). Anything else is an error that says what to
pass: a folder is never scored against labels it does not have.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "class_labels", "find_root", "read_class_map"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_CLASSES = 1000  # heads of this size accept a 1000-class folder in sorted order


def _has_images(folder: pathlib.Path, exts) -> bool:
  return any(p.is_file() and p.suffix.lower() in exts for p in folder.iterdir())


def find_root(
  data_dir: str | os.PathLike, split: str | None, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> pathlib.Path:
  """The folder holding the class folders: ``data_dir`` or ``data_dir/<split>``.

  Args:
    data_dir: the folder given by the user.
    split: a sub-folder of ``data_dir`` (``train``, ``val``, ...) or None for ``data_dir``.
    extensions: image suffixes (to tell class folders from split folders).

  Raises:
    FileNotFoundError: ``data_dir`` (or ``data_dir/<split>``) is not a directory.
    ValueError: ``split`` is None but ``data_dir`` holds split folders (each holding class
      folders, no images): the message lists them.
  """
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise FileNotFoundError(f"image folder {str(data_dir)!r} does not exist or is not a directory")
  subs = sorted(p for p in data_dir.iterdir() if p.is_dir())
  if split:
    root = data_dir / split
    if not root.is_dir():
      names = [p.name for p in subs]
      raise FileNotFoundError(
        f"image folder {str(data_dir)!r} has no split sub-folder {split!r} (its sub-folders: "
        f"{names[:8]}{' ...' if len(names) > 8 else ''}); pass split=None to use "
        f"{str(data_dir)!r} itself as root/<class>/<image>"
      )
    return root
  exts = {e.lower() for e in extensions}
  nested = [p for p in subs if not _has_images(p, exts) and any(q.is_dir() for q in p.iterdir())]
  if subs and len(nested) == len(subs):
    raise ValueError(
      f"image folder {str(data_dir)!r} holds split folders {[p.name for p in subs]} (each with "
      f"class folders): pass split=<one of them>"
    )
  return data_dir


def read_class_map(path: str | os.PathLike) -> dict[str, int]:
  """Reads a class-mapping file: a JSON object ``{"<class folder name>": <output index>}``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a JSON object of non-negative integers (the message names the entry).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"class_map file {path!r} does not exist")
  try:
    with open(path) as f:
      obj = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(
      f'class_map file {path!r} is not JSON ({e}); expected {{"<class folder>": <index>, ...}}'
    ) from e
  if not isinstance(obj, dict) or not obj:
    raise ValueError(
      f'class_map file {path!r} must hold a non-empty JSON object {{"<class folder>": <index>}}'
    )
  for k, v in obj.items():
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
      raise ValueError(
        f"class_map file {path!r}: {k!r} maps to {v!r}; values must be output indices (ints >= 0)"
      )
  return {str(k): int(v) for k, v in obj.items()}


def _norm(name: str) -> str:
  return re.sub(r"[^0-9a-z]", "", name.lower())


def class_labels(
  class_names: Sequence[str],
  num_outputs: int,
  *,
  class_map: Mapping[str, int] | None = None,
  label_names: Sequence[str] | None = None,
  where: str = "image folder",
) -> tuple[np.ndarray, str]:
  """The model output index of each class folder, and how it was decided.

  In order: ``class_map`` (every folder must be in it); folders named by integers in
  ``[0, num_outputs)``; folders named after ``label_names`` (case, spaces and punctuation
  ignored); ``num_outputs == 1000`` with exactly 1000 folders (sorted = ImageNet order).

  Args:
    class_names: the folder's class names, sorted.
    num_outputs: the model head's ``K``.
    class_map: ``{folder name: output index}`` (`read_class_map`), or None.
    label_names: the model's class names in output order, when known.
    where: how the folder is called in error messages.

  Returns:
    ``(labels [len(class_names)] int32, description)``.

  Raises:
    ValueError: a folder class without a valid output index; the message says what to pass.
  """
  names = list(class_names)
  n = len(names)
  if class_map is not None:
    missing = [c for c in names if c not in class_map]
    if missing:
      raise ValueError(
        f"{where} has class folders {missing[:8]} that class_map does not list; add them "
        f"(keys are folder names, values output indices in [0, {num_outputs}))"
      )
    bad = {c: class_map[c] for c in names if not 0 <= class_map[c] < num_outputs}
    if bad:
      raise ValueError(
        f"class_map maps {bad} outside the model's {num_outputs} outputs [0, {num_outputs})"
      )
    return np.asarray([class_map[c] for c in names], np.int32), "class_map file"
  if all(c.isdigit() and int(c) < num_outputs for c in names):
    return np.asarray([int(c) for c in names], np.int32), "folder names are output indices"
  if label_names is not None:
    index = {_norm(s): i for i, s in enumerate(label_names)}
    if all(_norm(c) in index for c in names):
      return np.asarray([index[_norm(c)] for c in names], np.int32), "folder names = model classes"
  if num_outputs == IMAGENET_CLASSES and n == IMAGENET_CLASSES:
    return np.arange(n, dtype=np.int32), "1000 folders in sorted (ImageNet synset) order"
  shown = f"{names[:5]}{' ...' if n > 5 else ''}"
  if n > num_outputs:
    why = f"has {n} class folders {shown} but the model has only {num_outputs} outputs"
  else:
    why = f"has class folders {shown} that cannot be matched to the model's {num_outputs} outputs"
  known = f" (its classes: {list(label_names)[:5]}...)" if label_names is not None else ""
  raise ValueError(
    f"{where} {why}{known}: pass class_map=<file.json> mapping each folder name to an "
    f'output index, e.g. {{"{names[0]}": 0}}, or name the folders 0..{num_outputs - 1}'
  )


class ImageFolder:
  """Labelled images under ``root/<class>/``; classes are the sorted sub-folder names.

  Examples are ordered by class, then by file name (deterministic). Files are decoded with
  PIL on access and passed through ``transform``. Labels are the class's position in the
  sorted names, or, with ``num_outputs``, the model output index from `class_labels`.

  Args:
    root: the folder.
    transform: PIL image -> float32 ``[H, W, C]`` (e.g. `preprocess.EvalTransform`).
    extensions: accepted file suffixes (case-insensitive).
    num_outputs: the model head's ``K``; None keeps sorted-position labels.
    class_map: ``{folder name: output index}`` for `class_labels`.
    label_names: the model's class names, for `class_labels`.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: ``root`` has no class sub-folders, no images in them, or classes that do
      not map to the model's outputs.
  """

  def __init__(
    self,
    root: str | os.PathLike,
    transform: Callable[[Image.Image], np.ndarray],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    *,
    num_outputs: int | None = None,
    class_map: Mapping[str, int] | None = None,
    label_names: Sequence[str] | None = None,
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
    self.class_to_label = np.arange(len(self.class_names), dtype=np.int32)
    self.mapping = "sorted folder names"
    if num_outputs is not None:
      self.class_to_label, self.mapping = class_labels(
        self.class_names,
        num_outputs,
        class_map=class_map,
        label_names=label_names,
        where=f"image folder {str(root)!r}",
      )
    self.root = root
    self.files = tuple(files)
    self.labels = self.class_to_label[np.asarray(labels, np.int32)]
    self.transform = transform

  def __len__(self) -> int:
    return len(self.files)

  def get(self, i: int) -> tuple[np.ndarray, int]:
    """Example ``i``: ``([H, W, C] float32, label)``.

    Raises:
      ValueError: the file is not an image PIL can decode (the message names it).
    """
    try:
      with Image.open(self.files[i]) as image:
        return self.transform(image), int(self.labels[i])
    except (OSError, SyntaxError) as e:  # PIL: UnidentifiedImageError, truncated files
      raise ValueError(f"image {i} ({str(self.files[i])!r}) cannot be decoded: {e}") from e

  def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
    pairs = [self.get(int(i)) for i in indices]
    return np.stack([p[0] for p in pairs]), np.asarray([p[1] for p in pairs], np.int32)
