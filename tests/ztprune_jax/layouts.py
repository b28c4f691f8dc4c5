"""Test helpers: write our params in other projects' layouts (inverse of the loaders)."""

import flax
import numpy as np


def flat_params(params):
  """Nested params -> writable flat numpy dict with '/' keys."""
  return {k: np.array(v) for k, v in flax.traverse_util.flatten_dict(params, sep="/").items()}


def to_big_vision(flat, width, heads, vit_jax):
  """Writes our params in big_vision (or vit_jax) npz naming; inverse of the loader."""
  dh = width // heads
  ln2, mha, mlp = (
    ("LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
    if vit_jax
    else (
      "LayerNorm_1",
      "MultiHeadDotProductAttention_0",
      "MlpBlock_0",
    )
  )
  out = {
    "embedding/kernel": flat["embed/patch/kernel"],
    "embedding/bias": flat["embed/patch/bias"],
    "cls": flat["embed/cls_token"],
    "Transformer/encoder_norm/scale": flat["norm/scale"],
    "Transformer/encoder_norm/bias": flat["norm/bias"],
    "head/kernel": flat["head/kernel"],
    "head/bias": flat["head/bias"],
  }
  pos = flat["embed/pos_embed"]
  if vit_jax:
    out["Transformer/posembed_input/pos_embedding"] = pos
  else:
    out["pos_embedding"] = pos[:, 1:]
  i = 0
  while f"block_{i}/norm1/scale" in flat:
    b, t = f"block_{i}/", f"Transformer/encoderblock_{i}/"
    for src, dst in (("norm1", "LayerNorm_0"), ("norm2", ln2)):
      out[t + dst + "/scale"] = flat[b + src + "/scale"]
      out[t + dst + "/bias"] = flat[b + src + "/bias"]
    k, bias = flat[b + "attn/qkv/kernel"], flat[b + "attn/qkv/bias"]
    for j, part in enumerate(("query", "key", "value")):
      out[t + f"{mha}/{part}/kernel"] = k[:, j * width : (j + 1) * width].reshape(width, heads, dh)
      out[t + f"{mha}/{part}/bias"] = bias[j * width : (j + 1) * width].reshape(heads, dh)
    out[t + f"{mha}/out/kernel"] = flat[b + "attn/proj/kernel"].reshape(heads, dh, width)
    out[t + f"{mha}/out/bias"] = flat[b + "attn/proj/bias"]
    for src, dst in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
      out[t + f"{mlp}/{dst}/kernel"] = flat[b + f"mlp/{src}/kernel"]
      out[t + f"{mlp}/{dst}/bias"] = flat[b + f"mlp/{src}/bias"]
    i += 1
  return out
