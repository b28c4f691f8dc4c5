"""Shared fixtures and markers: `rng`, `x64`, `slow`, and the parity/ONNX gates."""

import contextlib
import importlib.util
import os

import jax
import pytest

# TensorFlow (imported by clu's metric writers) and torchvision crash the process with a
# segfault when TensorFlow's native libraries load first (seen with tensorflow-cpu 2.21 and
# torchvision 0.29.1). Loading torchvision first in every test process avoids it.
if importlib.util.find_spec("torchvision") is not None:
  import torchvision  # noqa: F401

# marker -> (modules it needs, skip reason when they are missing)
_GATES = {
  "parity": (
    ("torch", "timm", "transformers"),
    "parity tests need `pip install -e .[parity]`; run `make test PARITY=1`",
  ),
  "onnx": (
    ("onnx", "onnxruntime"),
    "ONNX tests need `pip install -e .[onnx]` (also in .[parity]); run `make test PARITY=1`",
  ),
}


def pytest_collection_modifyitems(config, items):
  """Gate `parity`/`onnx` tests: required in CI / PARITY=1, else skipped with a reason."""
  del config
  required = os.environ.get("CI") == "true" or os.environ.get("PARITY") == "1"
  for marker, (modules, reason) in _GATES.items():
    have = all(importlib.util.find_spec(m) for m in modules)
    for item in items:
      # When required, a missing extra is not skipped: the test fails on its import.
      if marker in item.keywords and not have and not required:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def fmnist_train_dir(tmp_path_factory):
  """A folder with a small Fashion-MNIST *train* split written by the test itself.

  512 images taken from the committed test split (images 5000..5511, disjoint from the
  first 256 that `runlocal` trainers evaluate on), so training tests need neither Debian's
  package nor a cache. Load with ``verify=False`` (``--config.data.verify=false``).
  """
  from ztprune_jax.data import fashion_mnist as fm

  folder = tmp_path_factory.mktemp("fmnist_train")
  images, labels = fm.load_fashion_mnist("test", fm.REPO_DIR)
  return fm.write_split(folder, "train", images[5000:5512], labels[5000:5512])


@pytest.fixture
def rng():
  """A fresh PRNG key per test."""
  return jax.random.key(0)


@contextlib.contextmanager
def _float64():
  old = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", old)


@pytest.fixture
def x64():
  """A context manager: float64 JAX inside its block (``with x64(): ...``), restored after."""
  return _float64
