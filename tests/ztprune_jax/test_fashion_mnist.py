"""IDX reader and the checksum-verified Fashion-MNIST loader (committed test split)."""

import gzip
import shutil

import numpy as np
import pytest

from ztprune_jax.data import fashion_mnist as fm
from ztprune_jax.data import idx


def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
  """Encodes ``arr`` as IDX (big-endian header and body), independently of the reader."""
  header = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
  return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
  "dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)]
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, code, compress):
  arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
  if dtype == np.uint8:
    arr = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
  data = _idx_bytes(arr, code)
  path = tmp_path / ("a.idx.gz" if compress else "a.idx")
  path.write_bytes(gzip.compress(data) if compress else data)
  out = idx.read_idx(path)
  assert out.dtype == np.dtype(dtype) and out.dtype.isnative
  np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_corrupt_files(tmp_path):
  good = _idx_bytes(np.zeros((4, 3), np.uint8), 0x08)
  cases = {
    "short.idx": good[:-1],  # body one byte short
    "long.idx": good + b"\x00",
    "magic.idx": b"\x01" + good[1:],
    "code.idx": good[:2] + b"\x07" + good[3:],
    "header.idx": good[:6],
    "tiny.idx": b"\x00",
    "trunc.gz": gzip.compress(good)[:-6],
  }
  for name, data in cases.items():
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=name):
      idx.read_idx(tmp_path / name)
  with pytest.raises(FileNotFoundError):
    idx.read_idx(tmp_path / "absent.idx")


def test_committed_test_split():
  images, labels = fm.load_fashion_mnist("test")
  assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
  assert labels.shape == (10000,) and labels.dtype == np.int32
  # Fashion-MNIST's test split is balanced: 1000 images per class.
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [1000] * 10)
  assert len(fm.FASHION_MNIST_CLASSES) == 10
  assert images.max() == 255 and images.min() == 0
  assert fm.REPO_DIR.joinpath("SHA256SUMS").read_text().split()[::2] == [
    fm.SHA256[n] for n in fm.file_names("test")
  ]


def test_data_dir_accepts_uncompressed_copies(tmp_path):
  ref_images, ref_labels = fm.load_fashion_mnist("test")
  for name in fm.file_names("test"):
    with gzip.open(fm.REPO_DIR / name, "rb") as f:
      (tmp_path / name.removesuffix(".gz")).write_bytes(f.read())
  images, labels = fm.load_fashion_mnist("test", tmp_path)
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)


def test_checksum_mismatch_raises(tmp_path):
  for name in fm.file_names("test"):
    shutil.copy(fm.REPO_DIR / name, tmp_path / name)
  labels = tmp_path / fm.file_names("test")[1]
  data = bytearray(labels.read_bytes())
  data[-10] ^= 0xFF
  labels.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="SHA-256"):
    fm.load_fashion_mnist("test", tmp_path)


def test_missing_split_lists_places_and_command(tmp_path, monkeypatch):
  monkeypatch.delenv(fm.NO_SYSTEM_DATA_ENV, raising=False)
  for attr in ("REPO_DIR", "DEBIAN_DIR", "CACHE_DIR"):
    monkeypatch.setattr(fm, attr, tmp_path / attr.lower())
  with pytest.raises(FileNotFoundError) as err:
    fm.load_fashion_mnist("train", tmp_path / "mine")
  msg = str(err.value)
  for place in ("mine", "debian_dir", "cache_dir"):
    assert place in msg
  assert "make fashion-mnist" in msg


def _copy_test_split(folder):
  folder.mkdir(parents=True)
  for name in fm.file_names("test"):
    shutil.copy(fm.REPO_DIR / name, folder / name)


def test_system_data_switch_hides_debian_and_cache(tmp_path, monkeypatch):
  """With $ZTPRUNE_NO_SYSTEM_DATA set, a split present only in the cache is not found."""
  _copy_test_split(tmp_path / "cache")
  monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
  monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "cache")
  monkeypatch.setattr(fm, "REPO_DIR", tmp_path / "repo")  # test split only in the cache
  monkeypatch.setenv(fm.NO_SYSTEM_DATA_ENV, "0")
  assert fm.load_fashion_mnist("test")[0].shape == (10000, 28, 28)
  monkeypatch.setenv(fm.NO_SYSTEM_DATA_ENV, "1")
  assert fm.search_dirs("test") == [tmp_path / "repo"]
  with pytest.raises(FileNotFoundError, match=fm.NO_SYSTEM_DATA_ENV):
    fm.load_fashion_mnist("test")
  monkeypatch.setenv(fm.NO_SYSTEM_DATA_ENV, "maybe")
  with pytest.raises(ValueError, match=fm.NO_SYSTEM_DATA_ENV):
    fm.load_fashion_mnist("test")


def test_cache_dir_follows_xdg_cache_home(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert fm.default_cache_dir().is_relative_to(tmp_path / "xdg" / "ztprune_jax")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert fm.default_cache_dir().is_relative_to(tmp_path / "home" / ".cache" / "ztprune_jax")


def test_write_idx_matches_an_independent_encoder(tmp_path):
  arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  idx.write_idx(tmp_path / "a", arr)
  assert (tmp_path / "a").read_bytes() == _idx_bytes(arr, 0x08)
  idx.write_idx(tmp_path / "b.gz", arr)
  assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == _idx_bytes(arr, 0x08)
  with pytest.raises(ValueError, match="dtype"):
    idx.write_idx(tmp_path / "c", arr.astype(np.uint16))


def test_written_subset_loads_only_unverified(tmp_path):
  images, labels = fm.load_fashion_mnist("test", fm.REPO_DIR)
  fm.write_split(tmp_path, "train", images[:7], labels[:7])
  x, y = fm.load_fashion_mnist("train", tmp_path, verify=False)
  np.testing.assert_array_equal(x, images[:7])
  np.testing.assert_array_equal(y, labels[:7])
  with pytest.raises(ValueError, match="SHA-256"):  # not the original file
    fm.load_fashion_mnist("train", tmp_path)
  with pytest.raises(ValueError, match="uint8"):
    fm.write_split(tmp_path, "train", images[:3].astype(np.float32), labels[:3])
  bad = labels[:7].copy()
  bad[0] = 12
  fm.write_split(tmp_path / "bad", "train", images[:7], bad)
  with pytest.raises(ValueError, match=r"\[0, 10\)"):
    fm.load_fashion_mnist("train", tmp_path / "bad", verify=False)


def test_bad_split():
  with pytest.raises(ValueError, match="split"):
    fm.load_fashion_mnist("validation")
