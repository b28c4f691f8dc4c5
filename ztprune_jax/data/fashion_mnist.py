"""Fashion-MNIST (Zalando, MIT license): 60k train / 10k test grey 28x28 clothing images.

`load_fashion_mnist` reads the original IDX files and verifies their SHA-256. Places
searched, in order: ``data_dir``; the repository's committed ``data/fashion_mnist/``
(test split only); Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``); and the rootless copy that ``make fashion-mnist``
unpacks under ``~/.cache/ztprune_jax/fashion-mnist``. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np

from ztprune_jax.data import idx

FASHION_MNIST_CLASSES = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)

SPLIT_SIZES = {"train": 60000, "test": 10000}
_PREFIX = {"train": "train", "test": "t10k"}

# SHA-256 of the original files (zalandoresearch/fashion-mnist, as Debian ships them) and of
# their decompressed contents, so that both `.gz` and raw copies are verified.
SHA256 = {
  "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
  "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
  "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
  "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

_RAW_SHA256 = {
  "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
  "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
  "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
  "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

REPO_DIR = pathlib.Path(__file__).resolve().parents[2] / "data" / "fashion_mnist"
DEBIAN_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = (
  pathlib.Path.home()
  / ".cache"
  / "ztprune_jax"
  / "fashion-mnist"
  / "usr"
  / "share"
  / "datasets"
  / "fashion-mnist"
)
GET_COMMAND = (
  "`make fashion-mnist` (apt-get download dataset-fashion-mnist + dpkg-deb -x into "
  "~/.cache/ztprune_jax/fashion-mnist, no root), `sudo apt-get install dataset-fashion-mnist`, "
  "or pass data_dir=<folder with the IDX files>"
)


def file_names(split: str) -> tuple[str, str]:
  """The ``(images, labels)`` IDX file names of ``split`` (gzip-compressed originals)."""
  if split not in _PREFIX:
    raise ValueError(f"split must be one of {sorted(_PREFIX)}, got {split!r}")
  p = _PREFIX[split]
  return f"{p}-images-idx3-ubyte.gz", f"{p}-labels-idx1-ubyte.gz"


def search_dirs(split: str, data_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """The folders `load_fashion_mnist` looks in for ``split``, in order."""
  dirs = [pathlib.Path(data_dir)] if data_dir is not None else []
  if split == "test":
    dirs.append(REPO_DIR)
  return [*dirs, DEBIAN_DIR, CACHE_DIR]


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _find(folder: pathlib.Path, name: str) -> pathlib.Path | None:
  """``folder/name`` or its uncompressed twin (``name`` without ``.gz``), if present."""
  for candidate in (folder / name, folder / name.removesuffix(".gz")):
    if candidate.is_file():
      return candidate
  return None


def _verified(path: pathlib.Path, gz_name: str) -> None:
  """Checks a file's SHA-256: the original `.gz` hash, or the hash of its decompressed bytes."""
  digest = _sha256(path)
  if path.name == gz_name:
    if digest != SHA256[gz_name]:
      raise ValueError(
        f"{path}: SHA-256 {digest} does not match the original Fashion-MNIST file "
        f"({SHA256[gz_name]}); the file is corrupt or not Fashion-MNIST"
      )
    return
  # An uncompressed copy: compare against the decompressed original's hash.
  want = _RAW_SHA256[gz_name]
  if digest != want:
    raise ValueError(
      f"{path}: SHA-256 {digest} does not match the decompressed Fashion-MNIST file ({want})"
    )


def load_fashion_mnist(
  split: str, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Loads a Fashion-MNIST split from local IDX files, checksum-verified.

  Args:
    split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
    data_dir: a folder holding the split's IDX files (``.gz`` or uncompressed); searched
      first. Then the committed ``data/fashion_mnist/`` (test only), Debian's
      ``/usr/share/datasets/fashion-mnist`` and ``~/.cache/ztprune_jax/fashion-mnist/...``.

  Returns:
    ``images`` uint8 ``[N, 28, 28]`` (0 = background) and ``labels`` int32 ``[N]`` in
    ``[0, 10)``, indexing `FASHION_MNIST_CLASSES`.

  Raises:
    ValueError: unknown split, a checksum mismatch, or corrupt IDX content.
    FileNotFoundError: no searched folder has the split; lists the folders and how to get it.
  """
  image_name, label_name = file_names(split)
  tried = []
  for folder in search_dirs(split, data_dir):
    images_path, labels_path = _find(folder, image_name), _find(folder, label_name)
    if images_path is None or labels_path is None:
      tried.append(str(folder))
      continue
    _verified(images_path, image_name)
    _verified(labels_path, label_name)
    images = idx.read_idx(images_path)
    labels = idx.read_idx(labels_path)
    n = SPLIT_SIZES[split]
    if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,):
      raise ValueError(
        f"{folder}: unexpected Fashion-MNIST {split} arrays {images.shape} {images.dtype}, "
        f"{labels.shape}"
      )
    return images, labels.astype(np.int32)
  raise FileNotFoundError(
    f"Fashion-MNIST {split} split ({image_name}, {label_name}) not found; looked in "
    f"{tried}. Get it with {GET_COMMAND}."
  )
