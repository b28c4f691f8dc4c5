"""Offline datasets (checksums, errors, train-only scaling) and the evaluation protocol."""

import shutil

import jax
import numpy as np
import pytest

import eml_jax as eml
from eml_jax import datasets, protocol, synthetic


@pytest.mark.parametrize("name", ["wine", "sonar", "vowel"])
def test_load_shapes_and_labels(name):
  X, y = datasets.load(name)
  n, d, C, _ = datasets.DATASETS[name]
  assert X.shape == (n, d) and y.shape == (n,) and X.dtype == np.float32
  assert set(np.unique(y)) == set(range(C)) and np.all(np.isfinite(X))


def test_all_files_listed_with_checksums():
  sums = datasets._read_sums(datasets.default_data_dir())
  assert sorted(sums) == sorted(f"{n}.csv.gz" for n in datasets.DATASETS)


def test_checksum_mismatch_missing_file_and_unknown_name(tmp_path):
  src = datasets.default_data_dir()
  shutil.copy(f"{src}/SHA256SUMS", tmp_path / "SHA256SUMS")
  raw = bytearray((open(f"{src}/wine.csv.gz", "rb")).read())
  raw[-9] ^= 0xFF  # corrupt one byte
  (tmp_path / "wine.csv.gz").write_bytes(bytes(raw))
  with pytest.raises(ValueError, match="checksum mismatch"):
    datasets.load("wine", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="sonar.csv.gz"):
    datasets.load("sonar", str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset"):
    datasets.load("iris")
  (tmp_path / "SHA256SUMS").unlink()
  with pytest.raises(FileNotFoundError, match="SHA256SUMS"):
    datasets.load("wine", str(tmp_path))


def test_pool_images():
  X = np.arange(2 * 16, dtype=np.float32).reshape(2, 16)
  P = datasets.pool_images(X, 4, 2)
  np.testing.assert_allclose(P[0], [2.5, 4.5, 10.5, 12.5])
  with pytest.raises(ValueError):
    datasets.pool_images(X, 4, 3)


def test_scaling_uses_training_rows_only():
  X, y = datasets.load("wine")
  Xtr, ytr, Xte, yte = protocol.split_scale(X, y, seed=0, test_frac=0.3)
  assert len(Xtr) + len(Xte) == len(X)
  np.testing.assert_allclose(Xtr.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(Xtr.std(0), 1.0, atol=1e-3)
  assert np.abs(Xte.mean(0)).max() > 1e-3  # test statistics were not used
  # Changing a test row leaves the training scaling unchanged.
  te_rows = np.random.default_rng([0, 7]).permutation(len(X))[: len(Xte)]
  X2 = X.copy()
  X2[te_rows] += 100.0
  Xtr2, _, _, _ = protocol.split_scale(X2, y, seed=0, test_frac=0.3)
  np.testing.assert_array_equal(Xtr, Xtr2)


def test_streams_and_validation_split():
  X, y = synthetic.make_classification(300, 12, 3, seed=0)
  Xtr, ytr, Xte, yte = protocol.split_scale(X, y, seed=1, test_frac=0.2)
  st = protocol.make_stream(Xtr, ytr, Xte, yte, seed=1, n_classes=3)
  T, I = st.stages
  tr = eml.transition(T, I)
  assert len(tr.vanished) == 4 and len(tr.survived_prev) == 4 and len(tr.new) == 4
  assert len(T.y) == len(I.y) == len(Xtr) // 2 and len(st.test.y) == len(Xte)
  ms = protocol.make_stream(Xtr, ytr, Xte, yte, seed=1, n_classes=3, shots="multi", n_stages=3)
  assert len(ms.stages) == 3 and all(len(s.features) == 6 for s in ms.stages)
  val = protocol.validation_stream(st, 0.3)
  assert len(val.test.y) == round(0.3 * len(I.y))
  np.testing.assert_array_equal(val.test.X, I.X[-len(val.test.y) :])  # training rows only
  sc = protocol.scaled_stream(st)
  np.testing.assert_allclose(sc.stages[1].X * np.sqrt(8), I.X, rtol=1e-6)
  with pytest.raises(ValueError, match="shots"):
    protocol.make_stream(Xtr, ytr, Xte, yte, seed=1, n_classes=3, shots="two")


def test_run_eml_result_fields():
  X, y = synthetic.make_classification(240, 9, 3, sep=3.0, seed=0)
  Xtr, ytr, Xte, yte = protocol.split_scale(X, y, seed=0, test_frac=0.25)
  st = protocol.make_stream(Xtr, ytr, Xte, yte, seed=0, n_classes=3)
  lrn = eml.make_learner(eml.LearnerSpec(n_classes=3, rank=6))
  r = protocol.run_eml(lrn, st, eml.HParams.create(), jax.random.key(0))
  assert 0 <= r["knn_error"] < 0.5 and 0 <= r["online_error"] <= 1
  assert r["mistakes"].shape == (len(st.stages[1].y),) and r["sec_per_update"] > 0
