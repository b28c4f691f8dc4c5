"""Shared fixtures and markers: `rng`, `slow`, and the parity gate."""

import importlib.util
import os

import jax
import pytest


def pytest_collection_modifyitems(config, items):
  """Gate `parity` tests: required in CI / PARITY=1, else skipped with a reason."""
  del config
  have = all(importlib.util.find_spec(m) for m in ("torch", "timm", "transformers"))
  required = os.environ.get("CI") == "true" or os.environ.get("PARITY") == "1"
  for item in items:
    if "parity" not in item.keywords:
      continue
    # When required, a missing extra is not skipped: the test fails on its import.
    if not have and not required:
      item.add_marker(
        pytest.mark.skip(
          reason="parity tests need `pip install -e .[parity]`; run `make test PARITY=1`"
        )
      )


@pytest.fixture
def rng():
  """A fresh PRNG key per test."""
  return jax.random.key(0)
