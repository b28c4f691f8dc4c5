"""Checkpoint formats, layouts and error messages (no torch needed)."""

import os

import jax
import numpy as np
import pytest
from layouts import flat_params as _flat
from layouts import to_big_vision as _to_big_vision

import ztprune_jax as zt
from ztprune_jax.checkpoints import detect_format, detect_layout, expected_shapes


@pytest.fixture(scope="module")
def model_and_params():
  m = zt.create_model("deit_tiny_patch16_224", depth=2, image_size=32, patch_size=8, num_classes=5)
  x = np.zeros((1, 32, 32, 3), np.float32)
  return m, m.init(jax.random.key(0), x)["params"]


def _images():
  return np.asarray(jax.random.normal(jax.random.key(3), (2, 32, 32, 3)))


@pytest.mark.parametrize(
  "suffix, fmt", [(".safetensors", "safetensors"), (".msgpack", "msgpack"), ("", "orbax")]
)
def test_roundtrip(tmp_path, model_and_params, suffix, fmt):
  m, params = model_and_params
  path = tmp_path / f"ckpt{suffix}"
  assert zt.save_checkpoint(params, path) == fmt
  assert detect_format(path) == fmt
  loaded = zt.load_checkpoint(path, m)
  np.testing.assert_array_equal(
    m.apply({"params": loaded}, _images()), m.apply({"params": params}, _images())
  )


def test_format_is_detected_from_content_not_suffix(tmp_path, model_and_params):
  m, params = model_and_params
  path = tmp_path / "weights.bin"
  zt.save_checkpoint(params, tmp_path / "w.safetensors")
  os.rename(tmp_path / "w.safetensors", path)
  assert detect_format(path) == "safetensors"
  zt.load_checkpoint(path, m)


def test_missing_file(tmp_path, model_and_params):
  with pytest.raises(FileNotFoundError, match="nope.safetensors"):
    zt.load_checkpoint(tmp_path / "nope.safetensors", model_and_params[0])


def test_unknown_format(tmp_path, model_and_params):
  path = tmp_path / "junk.pth"
  path.write_bytes(b"hello world, not a checkpoint")
  with pytest.raises(ValueError, match="Unknown checkpoint format"):
    zt.load_checkpoint(path, model_and_params[0])


def test_truncated_safetensors(tmp_path, model_and_params):
  m, params = model_and_params
  path = tmp_path / "w.safetensors"
  zt.save_checkpoint(params, path)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="(?i)corrupt|format"):
    zt.load_checkpoint(path, m)


def test_corrupt_npz(tmp_path, model_and_params):
  path = tmp_path / "w.npz"
  np.savez(path, **{"embedding/kernel": np.zeros(3)})
  data = path.read_bytes()
  path.write_bytes(data[:40])
  with pytest.raises(ValueError, match="(?i)corrupt|zip"):
    zt.load_checkpoint(path, model_and_params[0])


def test_missing_unexpected_misshaped_are_named(tmp_path, model_and_params):
  m, params = model_and_params
  flat = _flat(params)
  del flat["block_1/mlp/fc2/bias"]
  flat["block_0/extra/kernel"] = np.zeros(2, np.float32)
  flat["head/kernel"] = np.zeros((192, 6), np.float32)
  path = tmp_path / "bad.npz"
  np.savez(path, **flat)
  with pytest.raises(ValueError) as e:
    zt.load_checkpoint(path, m)
  msg = str(e.value)
  assert "block_1/mlp/fc2/bias" in msg and "block_0/extra/kernel" in msg
  assert "head/kernel: checkpoint (192, 6) vs model (192, 5)" in msg


def test_non_strict_drops_unexpected(tmp_path, model_and_params):
  m, params = model_and_params
  flat = _flat(params)
  flat["pooler/kernel"] = np.zeros(2, np.float32)
  path = tmp_path / "extra.safetensors"
  from safetensors.numpy import save_file

  save_file(flat, str(path))
  with pytest.raises(ValueError, match="pooler/kernel"):
    zt.load_checkpoint(path, m)
  loaded = zt.load_checkpoint(path, m, strict=False)
  assert "pooler" not in loaded


def test_remote_needs_explicit_permission(model_and_params):
  with pytest.raises(ValueError, match="allow_download"):
    zt.load_checkpoint("https://example.invalid/deit.pth", model_and_params[0])


def test_unrecognised_layout():
  with pytest.raises(ValueError, match="Unrecognised parameter naming"):
    detect_layout({"foo.bar": np.zeros(1)})


@pytest.mark.parametrize("vit_jax", [False, True])
def test_big_vision_npz_layouts(tmp_path, model_and_params, vit_jax):
  m, params = model_and_params
  flat = _flat(params)
  if not vit_jax:  # big_vision adds no position to CLS: make the model's CLS row zero.
    flat["embed/pos_embed"][:, 0] = 0.0
  path = tmp_path / "bv.npz"
  np.savez(path, **_to_big_vision(flat, m.width, m.num_heads, vit_jax))
  assert detect_format(path) == "npz"
  loaded = _flat(zt.load_checkpoint(path, m))
  assert set(loaded) == set(flat)
  for k in flat:
    np.testing.assert_array_equal(loaded[k], flat[k], err_msg=k)


def test_scanned_big_vision_encoder(tmp_path, model_and_params):
  m, params = model_and_params
  flat = _flat(params)
  flat["embed/pos_embed"][:, 0] = 0.0
  bv = _to_big_vision(flat, m.width, m.num_heads, vit_jax=False)
  blocks = [k for k in bv if k.startswith("Transformer/encoderblock_0/")]
  for k in blocks:
    name = k.split("/", 2)[2]
    stacked = [bv.pop(f"Transformer/encoderblock_{i}/{name}") for i in range(m.depth)]
    bv[f"Transformer/encoderblock/{name}"] = np.stack(stacked)
  np.savez(tmp_path / "scan.npz", **bv)
  loaded = _flat(zt.load_checkpoint(tmp_path / "scan.npz", m))
  np.testing.assert_array_equal(loaded["block_1/attn/qkv/kernel"], flat["block_1/attn/qkv/kernel"])


def test_pos_embed_is_resampled_on_load(tmp_path, model_and_params):
  m, params = model_and_params
  zt.save_checkpoint(params, tmp_path / "w.msgpack")
  bigger = m.clone(image_size=48)
  loaded = zt.load_checkpoint(tmp_path / "w.msgpack", bigger)
  assert loaded["embed"]["pos_embed"].shape == (1, 1 + 36, 192)
  assert expected_shapes(bigger)["embed/pos_embed"] == (1, 37, 192)


@pytest.mark.parametrize("keep", [100, 1000, "half"])
def test_cut_short_safetensors_is_corrupt_or_truncated_with_byte_counts(
  tmp_path, model_and_params, keep
):
  path = tmp_path / "w.safetensors"
  zt.save_checkpoint(model_and_params[1], path)
  data = path.read_bytes()
  n = len(data) // 2 if keep == "half" else keep
  path.write_bytes(data[:n])
  # 100 bytes: inside the JSON header; 1000 and half: inside the tensor data.
  with pytest.raises(
    ValueError, match=rf"starts like safetensors but is corrupt or truncated.* {n} bytes"
  ):
    detect_format(path)
  with pytest.raises(ValueError, match="corrupt or truncated"):
    zt.load_checkpoint(path, model_and_params[0])


def test_cut_short_zip_checkpoint_is_corrupt_or_truncated(tmp_path):
  path = tmp_path / "w.npz"
  np.savez(path, **{"embedding/kernel": np.zeros((64, 64), np.float32)})
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(
    ValueError, match=rf"zip archive .*corrupt or truncated.*{len(data) // 2} bytes"
  ):
    detect_format(path)
