"""The evaluation data module: batching, preprocessing, image folders, ImageNet via tfds."""

import io
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from ztprune_jax import data
from ztprune_jax.data import imagenet


def _source(n, size=4):
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, size, size, 3))
  return data.InMemorySource(images, np.arange(n) % 3)


# ------------------------------------------------------------------------------------------
# BatchLoader


def test_loader_pads_last_batch_with_mask_and_keeps_order():
  loader = data.BatchLoader(_source(10), 4)
  batches = list(loader)
  assert len(loader) == len(batches) == 3
  assert all(b.images.shape == (4, 4, 4, 3) and b.labels.shape == (4,) for b in batches)
  np.testing.assert_array_equal(batches[-1].mask, [True, True, False, False])
  seen = np.concatenate([b.images[b.mask, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(seen, np.arange(10))  # nothing dropped, in order
  assert not np.any(batches[-1].images[~batches[-1].mask])  # padding is zeros
  # Re-iterable and deterministic.
  again = list(loader)
  for a, b in zip(batches, again, strict=True):
    np.testing.assert_array_equal(a.images, b.images)


def test_loader_subset_offset():
  loader = data.BatchLoader(_source(10), 3, start=2, num_examples=5)
  got = np.concatenate([b.images[b.mask, 0, 0, 0] for b in loader])
  np.testing.assert_array_equal(got, [2, 3, 4, 5, 6])
  assert loader.num_examples == 5


@pytest.mark.parametrize("n,hosts", [(10, 3), (7, 2), (1, 2), (12, 4)])
def test_loader_host_shards_cover_range_once_in_lock_step(n, hosts):
  loaders = [
    data.BatchLoader(_source(n), 2, process_index=i, process_count=hosts) for i in range(hosts)
  ]
  assert len({len(loader) for loader in loaders}) == 1  # same number of steps on every host
  got = []
  for loader in loaders:
    for b in loader:
      assert b.images.shape[0] == 2
      got.extend(b.images[b.mask, 0, 0, 0].astype(int).tolist())
  assert sorted(got) == list(range(n))


@pytest.mark.parametrize(
  "kw,match",
  [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=2, start=10), "start"),
    (dict(batch_size=2, num_examples=11), "num_examples"),
    (dict(batch_size=2, process_index=2, process_count=2), "process_index"),
  ],
)
def test_loader_rejects_bad_arguments(kw, match):
  with pytest.raises(ValueError, match=match):
    data.BatchLoader(_source(10), **kw)


# ------------------------------------------------------------------------------------------
# Preprocessing


def test_resize_size_follows_timm_crop_pct():
  assert data.resize_size(224, 0.9) == 248  # DeiT: "resize to 248, crop 224"
  assert data.resize_size(384, 1.0) == 384
  assert data.model_preprocess("deit_small_patch16_224")["crop_pct"] == 0.9
  with pytest.raises(ValueError, match="crop_pct"):
    data.resize_size(224, 0.0)


def test_eval_transform_resizes_shorter_side_then_center_crops():
  t = data.EvalTransform(image_size=8, crop_pct=0.5, mean=(0.0,), std=(1.0,))
  # 10 x 20 (w x h): shorter side 10 -> 16, long side 20 -> 32; crop 8 from the center.
  img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 10, 3), dtype=np.uint8))
  resized = t.resize_and_crop(img)
  assert resized.size == (8, 8)
  ref = img.resize((16, 32), Image.Resampling.BICUBIC).crop((4, 12, 12, 20))
  np.testing.assert_array_equal(np.asarray(resized), np.asarray(ref))
  x = t(img)
  assert x.shape == (8, 8, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x, np.asarray(ref, np.float32) / 255.0, atol=1e-6)


def test_eval_transform_normalises_and_converts_grey():
  t = data.EvalTransform(image_size=4, crop_pct=1.0, mean=(0.5,), std=(0.25,), channels=1)
  img = Image.fromarray(np.full((4, 4, 3), 255, np.uint8))
  np.testing.assert_allclose(t(img), np.full((4, 4, 1), 2.0), rtol=1e-6)
  with pytest.raises(ValueError, match="channels"):
    data.EvalTransform(channels=2)


@pytest.mark.parity
def test_eval_transform_matches_timm():
  import timm.data
  import torch

  cfg = timm.data.resolve_data_config({}, model=None, pretrained_cfg={"crop_pct": 0.9})
  ref_t = timm.data.create_transform(**cfg)  # resize 248 bicubic, crop 224, ImageNet stats
  ours = data.EvalTransform(image_size=224, crop_pct=0.9)
  rng = np.random.default_rng(0)
  for h, w in ((300, 400), (500, 260), (248, 248)):
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    ref = ref_t(img).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours(img), ref, rtol=0, atol=1e-5)
  del torch


# ------------------------------------------------------------------------------------------
# Image folders


def _write_folder(root, classes=("cat", "ant"), per_class=2, fmt="PNG"):
  rng = np.random.default_rng(0)
  for c in classes:
    (root / c).mkdir(parents=True)
    for i in range(per_class):
      arr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
      Image.fromarray(arr).save(root / c / f"{i}.{fmt.lower()}", fmt)
  (root / "ant" / "notes.txt").write_text("not an image")


def test_image_folder_sorted_classes_and_files(tmp_path):
  _write_folder(tmp_path, fmt="JPEG")
  t = data.EvalTransform(image_size=8, crop_pct=1.0)
  ds = data.make_source("image_folder", t, data_dir=str(tmp_path))
  assert ds.class_names == ("ant", "cat")
  assert len(ds) == 4 and [f.name for f in ds.files] == ["0.jpeg", "1.jpeg"] * 2
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])
  batches = list(data.BatchLoader(ds, 3, num_threads=2))
  assert batches[0].images.shape == (3, 8, 8, 3)
  np.testing.assert_array_equal(np.concatenate([b.labels[b.mask] for b in batches]), [0, 0, 1, 1])
  x, _ = ds.get(2)
  with Image.open(ds.files[2]) as im:
    np.testing.assert_allclose(x, t(im))


def test_image_folder_errors(tmp_path):
  t = data.EvalTransform(image_size=8)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.ImageFolder(tmp_path / "missing", t)
  with pytest.raises(ValueError, match="no class sub-folders"):
    data.ImageFolder(tmp_path, t)
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "x.txt").write_text("")
  with pytest.raises(ValueError, match="no images"):
    data.ImageFolder(tmp_path, t)


def test_make_source_unknown_name():
  with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*imagenet2012"):
    data.make_source("imagenet", data.EvalTransform())
  with pytest.raises(ValueError, match="manual_dir"):
    data.make_source("imagenet2012", data.EvalTransform())


def test_fashion_mnist_source(monkeypatch):
  # The test split is committed (data/fashion_mnist/): a missing file fails this test, and
  # only the repository's copy is read (no Debian package, no ~/.cache).
  from ztprune_jax.data import fashion_mnist

  for name in fashion_mnist.file_names("test"):
    assert (fashion_mnist.REPO_DIR / name).is_file(), f"committed {name} is missing"
  monkeypatch.setenv(fashion_mnist.NO_SYSTEM_DATA_ENV, "1")
  t = data.EvalTransform(image_size=28, crop_pct=1.0, mean=(0.2860,), std=(0.3530,), channels=1)
  src = data.make_source("fashion_mnist", t, split="test")
  raw, labels = data.load_fashion_mnist("test")
  assert len(src) == 10000 and src.class_names == data.FASHION_MNIST_CLASSES
  x, y = src.get_batch([0, 9999])
  assert x.shape == (2, 28, 28, 1)
  np.testing.assert_allclose(x[0, ..., 0], (raw[0] / 255.0 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(y, labels[[0, 9999]])


# ------------------------------------------------------------------------------------------
# ImageNet-1k validation through tfds (no TensorFlow, no download)


def _jpeg(value, size=(20, 16)):
  buf = io.BytesIO()
  Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buf, "JPEG", quality=95)
  return buf.getvalue()


def _fake_manual_dir(root, n=3, extracted=False):
  root.mkdir()
  names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(n, 0, -1)]  # out of order on purpose
  if extracted:
    (root / imagenet.VAL_DIR).mkdir()
    for k, name in enumerate(names):
      (root / imagenet.VAL_DIR / name).write_bytes(_jpeg(40 * k))
  else:
    with tarfile.open(root / imagenet.VAL_TAR, "w") as tar:
      for k, name in enumerate(names):
        payload = _jpeg(40 * k)
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
  return root


@pytest.mark.parametrize("extracted", [False, True])
def test_imagenet_val_from_manual_dir(tmp_path, extracted):
  manual = _fake_manual_dir(tmp_path / "manual", extracted=extracted)
  t = data.EvalTransform(image_size=8, crop_pct=0.5)
  src = data.make_source("imagenet2012", t, manual_dir=str(manual), data_dir=str(tmp_path / "tfds"))
  assert len(src) == 3 and len(src.class_names) == 1000
  synsets = imagenet._bundled("labels.txt")
  val = imagenet._bundled("validation_labels.txt")
  records = [src.data_source[i] for i in range(3)]
  names = [r["file_name"] for r in records]
  names = [n.decode() if isinstance(n, bytes) else n for n in names]
  assert names == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]  # file-name order
  loader = data.BatchLoader(src, 2)
  labels = np.concatenate([b.labels[b.mask] for b in loader])
  np.testing.assert_array_equal(labels, [synsets.index(val[i]) for i in range(3)])
  x, _ = src.get(0)
  assert x.shape == (8, 8, 3)
  with Image.open(io.BytesIO(records[0]["jpeg"])) as im:
    np.testing.assert_allclose(x, t(im))  # stored bytes decode to the same pixels
  # A second call reuses the prepared shards.
  again = data.make_source(
    "imagenet2012", t, manual_dir=str(manual), data_dir=str(tmp_path / "tfds")
  )
  assert len(again) == 3


def test_imagenet_errors(tmp_path, monkeypatch):
  t = data.EvalTransform()
  with pytest.raises(FileNotFoundError, match="does not exist"):
    imagenet.imagenet2012_source(tmp_path / "nope", t)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_val.tar"):
    imagenet.imagenet2012_source(tmp_path / "empty", t)
  with pytest.raises(ValueError, match="validation"):
    imagenet.imagenet2012_source(tmp_path / "empty", t, split="train")
  manual = _fake_manual_dir(tmp_path / "manual", n=1)
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if TensorFlow were absent
  with pytest.raises(ImportError, match="needs TensorFlow"):
    imagenet.imagenet2012_source(manual, t, builder="stock", data_dir=str(tmp_path / "tfds"))
