"""Checkpoint formats, layouts and error messages (no torch needed)."""

import os

import jax
import numpy as np
import pytest
from layouts import flat_params as _flat

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


# ------------------------------------------------------------------------------------------
# big_vision / vit_jax .npz: random weights written directly in their naming, loaded, and
# the logits compared with a numpy forward pass that reads those names itself (no
# converter in between), following big_vision's models/vit.py: patch conv, learned
# position added to the patches before the CLS token is prepended (vit_jax: after, with
# a CLS row), pre-norm blocks with per-head q/k/v kernels [D, H, dh] and an out kernel
# [H, dh, D], final LayerNorm, CLS token to the head. GELU is the exact (erf) one this
# project's ViT uses for every checkpoint, as timm does for these weights (big_vision
# trains with flax's tanh approximation).

BV_WIDTH, BV_HEADS, BV_MLP, BV_PATCH, BV_GRID = 192, 3, 768, 8, 4


def _bv_params(rng, depth, vit_jax, scanned=False):
  """Random checkpoint in big_vision (or vit_jax) names, shapes as the 32-px tiny model."""
  D, H, dh, n = BV_WIDTH, BV_HEADS, BV_WIDTH // BV_HEADS, BV_GRID**2

  def w(*shape, scale=0.05):
    return (rng.normal(size=shape) * scale).astype(np.float32)

  ln2, mha, mlp = (
    ("LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
    if vit_jax
    else ("LayerNorm_1", "MultiHeadDotProductAttention_0", "MlpBlock_0")
  )
  sd = {
    "embedding/kernel": w(BV_PATCH, BV_PATCH, 3, D),
    "embedding/bias": w(D),
    "cls": w(1, 1, D, scale=0.5),
    "Transformer/encoder_norm/scale": 1 + w(D),
    "Transformer/encoder_norm/bias": w(D),
    "head/kernel": w(D, 5),
    "head/bias": w(5),
  }
  if vit_jax:
    sd["Transformer/posembed_input/pos_embedding"] = w(1, n + 1, D, scale=0.5)
  else:
    sd["pos_embedding"] = w(1, n, D, scale=0.5)
  for i in range(depth):
    t = f"Transformer/encoderblock_{i}/"
    for ln in ("LayerNorm_0", ln2):
      sd[t + ln + "/scale"], sd[t + ln + "/bias"] = 1 + w(D), w(D)
    for part in ("query", "key", "value"):
      sd[t + f"{mha}/{part}/kernel"] = w(D, H, dh, scale=0.1)
      sd[t + f"{mha}/{part}/bias"] = w(H, dh)
    sd[t + f"{mha}/out/kernel"], sd[t + f"{mha}/out/bias"] = w(H, dh, D, scale=0.1), w(D)
    sd[t + f"{mlp}/Dense_0/kernel"], sd[t + f"{mlp}/Dense_0/bias"] = w(D, BV_MLP), w(BV_MLP)
    sd[t + f"{mlp}/Dense_1/kernel"], sd[t + f"{mlp}/Dense_1/bias"] = w(BV_MLP, D), w(D)
  if scanned:  # nn.scan layout: one "encoderblock" with a leading depth axis
    for k in [k for k in sd if k.startswith("Transformer/encoderblock_0/")]:
      name = k.split("/", 2)[2]
      sd[f"Transformer/encoderblock/{name}"] = np.stack(
        [sd.pop(f"Transformer/encoderblock_{i}/{name}") for i in range(depth)]
      )
  return sd


def _bv_forward(sd, images, depth):
  """big_vision's ViT forward pass in float64 numpy, reading its parameter names."""
  from scipy.special import erf

  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  if "Transformer/encoderblock/LayerNorm_0/scale" in sd:  # scanned: block i = slice i
    for k in [k for k in sd if k.startswith("Transformer/encoderblock/")]:
      for i in range(depth):
        sd[k.replace("encoderblock/", f"encoderblock_{i}/")] = sd[k][i]
  vit_jax = "Transformer/posembed_input/pos_embedding" in sd
  ln2, mha, mlp = (
    ("LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
    if vit_jax
    else ("LayerNorm_1", "MultiHeadDotProductAttention_0", "MlpBlock_0")
  )

  def layer_norm(x, prefix):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * sd[prefix + "/scale"] + sd[prefix + "/bias"]

  B, p = images.shape[0], BV_PATCH
  patches = images.reshape(B, BV_GRID, p, BV_GRID, p, 3).transpose(0, 1, 3, 2, 4, 5)
  x = np.einsum("bijuvc,uvcd->bijd", patches, sd["embedding/kernel"]) + sd["embedding/bias"]
  x = x.reshape(B, BV_GRID**2, BV_WIDTH)
  cls = np.broadcast_to(sd["cls"], (B, 1, BV_WIDTH))
  if vit_jax:
    x = np.concatenate([cls, x], 1) + sd["Transformer/posembed_input/pos_embedding"]
  else:
    x = np.concatenate([cls, x + sd["pos_embedding"]], 1)
  for i in range(depth):
    t = f"Transformer/encoderblock_{i}/"
    y = layer_norm(x, t + "LayerNorm_0")
    q, k, v = (
      np.einsum("bnd,dhe->bhne", y, sd[t + f"{mha}/{n}/kernel"])
      + sd[t + f"{mha}/{n}/bias"][None, :, None, :]
      for n in ("query", "key", "value")
    )
    logits = np.einsum("bhqe,bhke->bhqk", q / np.sqrt(q.shape[-1]), k)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    o = np.einsum("bhqk,bhke->bqhe", attn, v)
    x = x + np.einsum("bqhe,hed->bqd", o, sd[t + f"{mha}/out/kernel"]) + sd[t + f"{mha}/out/bias"]
    y = layer_norm(x, t + ln2)
    y = y @ sd[t + f"{mlp}/Dense_0/kernel"] + sd[t + f"{mlp}/Dense_0/bias"]
    y = 0.5 * y * (1 + erf(y / np.sqrt(2)))
    x = x + y @ sd[t + f"{mlp}/Dense_1/kernel"] + sd[t + f"{mlp}/Dense_1/bias"]
  x = layer_norm(x, "Transformer/encoder_norm")
  return x[:, 0] @ sd["head/kernel"] + sd["head/bias"]


@pytest.mark.parametrize(
  "vit_jax, scanned", [(False, False), (True, False), (False, True)]
)  # fmt: skip
def test_big_vision_npz_gives_the_numpy_forward_logits(tmp_path, model_and_params, vit_jax,
                                                       scanned):  # fmt: skip
  m = model_and_params[0]
  sd = _bv_params(np.random.default_rng(5), m.depth, vit_jax, scanned)
  path = tmp_path / "bv.npz"
  np.savez(path, **sd)
  assert detect_format(path) == "npz" and detect_layout(dict(np.load(path))) == "big_vision"
  params = zt.load_checkpoint(path, m)
  images = _images()
  got = np.asarray(jax.jit(m.apply)({"params": params}, images))
  want = _bv_forward(sd, np.asarray(images, np.float64), m.depth)
  # float32 model against the float64 oracle: measured max |difference| 7.3e-7 (vit_jax)
  # and 4.9e-7 (big_vision, scanned) on logits of magnitude up to 1.8; 1e-5 is a 14x margin.
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


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
