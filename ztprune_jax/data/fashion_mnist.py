"""Fashion-MNIST (Zalando, MIT license): 60k train / 10k test grey 28x28 clothing images.

`load_fashion_mnist` reads the original IDX files and verifies their SHA-256. Places
searched, in order: ``data_dir``; the repository's committed ``data/fashion_mnist/``
(test split only); Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``); and the rootless copy that ``make fashion-mnist``
unpacks under ``$XDG_CACHE_HOME/ztprune_jax/fashion-mnist`` (``~/.cache`` when the variable
is unset). Nothing is downloaded.

Setting the environment variable ``ZTPRUNE_NO_SYSTEM_DATA=1`` turns the last two places off,
so only ``data_dir`` and what the repository ships are read: `.ci/run` sets it, so that no
copy installed or cached on the machine can make a test pass.
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


def default_cache_dir() -> pathlib.Path:
  """Where `make fashion-mnist` unpacks Debian's package (dpkg-deb -x keeps its /usr tree).

  ``$XDG_CACHE_HOME/ztprune_jax/fashion-mnist/usr/share/datasets/fashion-mnist``, with
  ``~/.cache`` for an unset ``XDG_CACHE_HOME``.
  """
  root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(root) / "ztprune_jax" / "fashion-mnist" / "usr/share/datasets/fashion-mnist"


CACHE_DIR = default_cache_dir()
GET_COMMAND = (
  "`make fashion-mnist` (apt-get download dataset-fashion-mnist + dpkg-deb -x into "
  "~/.cache/ztprune_jax/fashion-mnist, no root), `sudo apt-get install dataset-fashion-mnist`, "
  "or pass data_dir=<folder with the IDX files>"
)
# Environment variable: when set to a true value, only `data_dir` and the repository's own
# files are searched (no Debian package, no cache). `.ci/run` sets it.
NO_SYSTEM_DATA_ENV = "ZTPRUNE_NO_SYSTEM_DATA"


def system_data_enabled() -> bool:
  """False when ``$ZTPRUNE_NO_SYSTEM_DATA`` is set to 1/true/yes (case-insensitive)."""
  value = os.environ.get(NO_SYSTEM_DATA_ENV, "").strip().lower()
  if value in ("", "0", "false", "no"):
    return True
  if value in ("1", "true", "yes"):
    return False
  raise ValueError(f"${NO_SYSTEM_DATA_ENV}={value!r}: use 1/true/yes to turn system data off, "
                   "or 0/false/no/unset")  # fmt: skip


def file_names(split: str) -> tuple[str, str]:
  """The ``(images, labels)`` IDX file names of ``split`` (gzip-compressed originals)."""
  if split not in _PREFIX:
    raise ValueError(f"split must be one of {sorted(_PREFIX)}, got {split!r}")
  p = _PREFIX[split]
  return f"{p}-images-idx3-ubyte.gz", f"{p}-labels-idx1-ubyte.gz"


def search_dirs(split: str, data_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """The folders `load_fashion_mnist` looks in for ``split``, in order.

  Debian's folder and the cache are left out when `system_data_enabled` is False.
  """
  dirs = [pathlib.Path(data_dir)] if data_dir is not None else []
  if split == "test":
    dirs.append(REPO_DIR)
  if system_data_enabled():
    dirs += [DEBIAN_DIR, CACHE_DIR]
  return dirs


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
  split: str, data_dir: str | os.PathLike | None = None, *, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """Loads a Fashion-MNIST split from local IDX files, checksum-verified.

  Args:
    split: ``"train"`` (60000 images) or ``"test"`` (10000 images).
    data_dir: a folder holding the split's IDX files (``.gz`` or uncompressed); searched
      first. Then the committed ``data/fashion_mnist/`` (test only), Debian's
      ``/usr/share/datasets/fashion-mnist`` and ``~/.cache/ztprune_jax/fashion-mnist/...``
      (those two unless ``$ZTPRUNE_NO_SYSTEM_DATA`` is set).
    verify: check the SHA-256 of the original files and the split's size. False accepts
      any IDX pair of 28x28 uint8 images with as many labels in ``[0, 10)`` (a subset
      written by a test, or a relabelled copy); the arrays are still validated.

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
    if verify:
      _verified(images_path, image_name)
      _verified(labels_path, label_name)
    images = idx.read_idx(images_path)
    labels = idx.read_idx(labels_path)
    n = SPLIT_SIZES[split] if verify else len(images)
    if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,):
      raise ValueError(
        f"{folder}: unexpected Fashion-MNIST {split} arrays {images.shape} {images.dtype}, "
        f"{labels.shape} (want [{n}, 28, 28] uint8 images and [{n}] labels)"
      )
    if n == 0 or labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES):
      raise ValueError(f"{folder}: {split} labels must be in [0, 10) and non-empty")
    return images, labels.astype(np.int32)
  off = (
    ""
    if system_data_enabled()
    else (f" (Debian's folder and the cache were skipped: ${NO_SYSTEM_DATA_ENV} is set)")
  )
  raise FileNotFoundError(
    f"Fashion-MNIST {split} split ({image_name}, {label_name}) not found; looked in "
    f"{tried}{off}. Get it with {GET_COMMAND}."
  )


def write_split(
  folder: str | os.PathLike, split: str, images: np.ndarray, labels: np.ndarray
) -> pathlib.Path:
  """Writes ``images``/``labels`` as ``split``'s IDX files in ``folder`` (created).

  Read them back with ``load_fashion_mnist(split, folder, verify=False)``: e.g. a small
  train split that a test builds from the committed test images.

  Args:
    folder: where to write.
    split: ``"train"`` or ``"test"`` (picks the file names).
    images: uint8 ``[N, 28, 28]``.
    labels: integer ``[N]`` in ``[0, 10)``.

  Returns:
    ``folder`` as a path.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  n = len(images)
  if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,) or n == 0:
    raise ValueError(
      f"write_split wants uint8 images [N, 28, 28] and labels [N] with N > 0, got "
      f"{images.shape} {images.dtype} and {labels.shape}"
    )
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  image_name, label_name = file_names(split)
  idx.write_idx(folder / image_name, images)
  idx.write_idx(folder / label_name, labels.astype(np.uint8))
  return folder
