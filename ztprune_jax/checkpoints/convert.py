"""Parameter layouts: map timm, Hugging Face and big_vision names onto ours.

Each converter takes a flat ``{name: array}`` dict in the source's naming and returns
a flat dict in ours (``"block_0/attn/qkv/kernel"``). Unmapped source keys are kept
under their original names so that validation can report them as unexpected.
"""

from __future__ import annotations

import re

import numpy as np

LAYOUTS = ("ours", "timm", "hf", "big_vision")


def detect_layout(tensors: dict[str, np.ndarray]) -> str:
  """Returns one of `LAYOUTS`, judged from the parameter names."""
  keys = set(tensors)
  if any(k.startswith(("embed/", "block_0/")) for k in keys):
    return "ours"
  if "patch_embed.proj.weight" in keys:
    return "timm"
  if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
    return "hf"
  if any(k.split("/", 1)[-1] == "embedding/kernel" or k == "embedding/kernel" for k in keys):
    return "big_vision"
  sample = sorted(keys)[:5]
  raise ValueError(
    f"Unrecognised parameter naming (not ours, timm, Hugging Face or big_vision); "
    f"first keys: {sample}"
  )


def _linear(w: np.ndarray) -> np.ndarray:
  """torch Linear weight ``[out, in]`` -> flax Dense kernel ``[in, out]``."""
  return np.ascontiguousarray(w.T)


def from_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """timm VisionTransformer/DeiT state dict -> our names."""
  out, rest = {}, {}
  top = {
    "cls_token": "embed/cls_token",
    "dist_token": "embed/dist_token",
    "pos_embed": "embed/pos_embed",
    "patch_embed.proj.bias": "embed/patch/bias",
  }
  for k, v in sd.items():
    if k in top:
      out[top[k]] = v
    elif k == "patch_embed.proj.weight":
      out["embed/patch/kernel"] = np.ascontiguousarray(v.transpose(2, 3, 1, 0))  # [p,p,C,D]
    elif m := re.fullmatch(r"blocks\.(\d+)\.(.+)", k):
      i, name = m.groups()
      out[f"block_{i}/" + _timm_block_name(name)] = _timm_block_value(name, v)
    elif m := re.fullmatch(r"(norm|fc_norm|head|head_dist)\.(weight|bias)", k):
      mod, kind = m.groups()
      if mod.startswith("head"):
        out[f"{mod}/{'kernel' if kind == 'weight' else 'bias'}"] = (
          _linear(v) if kind == "weight" else v
        )
      else:
        out[f"{mod}/{'scale' if kind == 'weight' else 'bias'}"] = v
    else:
      rest[k] = v
  return {**out, **rest}


def _timm_block_name(name: str) -> str:
  if m := re.fullmatch(r"(norm1|norm2)\.(weight|bias)", name):
    return f"{m[1]}/{'scale' if m[2] == 'weight' else 'bias'}"
  if m := re.fullmatch(r"(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", name):
    return m[1].replace(".", "/") + ("/kernel" if m[2] == "weight" else "/bias")
  if m := re.fullmatch(r"(ls1|ls2)\.gamma", name):
    return f"{m[1]}/scale"
  return name  # unexpected; reported by validation


def _timm_block_value(name: str, v: np.ndarray) -> np.ndarray:
  return _linear(v) if name.endswith(".weight") and v.ndim == 2 else v


def from_hf(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Hugging Face ``ViT*``/``DeiT*``/``Dinov2*`` tensors -> our names (q/k/v fused into qkv).

  DINOv2 (``Dinov2Model``, also nested as ``backbone.*`` in an exported model): its
  LayerScale ``layer_scale{1,2}.lambda1`` becomes ``ls{1,2}/scale``; the training-only
  ``mask_token`` is dropped; models with register tokens are rejected.
  """
  out, rest, qkv = {}, {}, {}
  emb = {
    "cls_token": "embed/cls_token",
    "distillation_token": "embed/dist_token",
    "position_embeddings": "embed/pos_embed",
    "patch_embeddings.projection.bias": "embed/patch/bias",
  }
  layer = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn/proj",
    "intermediate.dense": "mlp/fc1",
    "output.dense": "mlp/fc2",
    "norm1": "norm1",  # DINOv2
    "norm2": "norm2",
    "mlp.fc1": "mlp/fc1",
    "mlp.fc2": "mlp/fc2",
  }
  heads = {"classifier": "head", "cls_classifier": "head", "distillation_classifier": "head_dist"}
  for k, v in sd.items():
    base = re.sub(r"^(vit|deit|dinov2|backbone)\.", "", k)
    if m := re.fullmatch(r"embeddings\.(.+)", base):
      if m[1] == "register_tokens":
        raise ValueError("DINOv2 checkpoints with register tokens are not supported")
      if m[1] == "mask_token":
        continue  # masked-image-modelling token, unused at inference
      if m[1] == "patch_embeddings.projection.weight":
        out["embed/patch/kernel"] = np.ascontiguousarray(v.transpose(2, 3, 1, 0))
      elif m[1] in emb:
        out[emb[m[1]]] = v
      else:
        rest[k] = v
    elif m := re.fullmatch(r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", base):
      out[f"block_{m[1]}/ls{m[2]}/scale"] = v
    elif m := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", base):
      i, name, kind = m.groups()
      if qm := re.fullmatch(r"attention\.attention\.(query|key|value)", name):
        qkv.setdefault((i, kind), {})[qm[1]] = v
      elif name in layer:
        dst = layer[name]
        if dst.startswith(("norm1", "norm2")):
          out[f"block_{i}/{dst}/{'scale' if kind == 'weight' else 'bias'}"] = v
        else:
          out[f"block_{i}/{dst}/{'kernel' if kind == 'weight' else 'bias'}"] = (
            _linear(v) if kind == "weight" else v
          )
      else:
        rest[k] = v
    elif m := re.fullmatch(r"layernorm\.(weight|bias)", base):
      out[f"norm/{'scale' if m[1] == 'weight' else 'bias'}"] = v
    elif (m := re.fullmatch(r"(\w+)\.(weight|bias)", base)) and m[1] in heads:
      out[f"{heads[m[1]]}/{'kernel' if m[2] == 'weight' else 'bias'}"] = (
        _linear(v) if m[2] == "weight" else v
      )
    else:
      rest[k] = v
  for (i, kind), parts in qkv.items():
    if set(parts) != {"query", "key", "value"}:
      raise ValueError(
        f"Layer {i} attention {kind}: missing { ({'query', 'key', 'value'} - set(parts)) }"
      )
    order = [parts[n] for n in ("query", "key", "value")]
    fused = (
      np.concatenate([_linear(w) for w in order], 1) if kind == "weight" else np.concatenate(order)
    )
    out[f"block_{i}/attn/qkv/{'kernel' if kind == 'weight' else 'bias'}"] = fused
  return {**out, **rest}


def from_big_vision(sd: dict[str, np.ndarray], num_prefix: int) -> dict[str, np.ndarray]:
  """big_vision / vit_jax ``.npz`` (``Transformer/encoderblock_i/...``) -> our names.

  Handles both block naming schemes (big_vision: ``LayerNorm_0/1``, ``MlpBlock_0``,
  ``MultiHeadDotProductAttention_0``; vit_jax: ``LayerNorm_0/2``, ``MlpBlock_3``,
  ``..._1``), scanned encoders (``encoderblock`` with a leading depth axis), and
  position embeddings with or without a CLS row (big_vision adds none to CLS, so a zero
  row is exact).
  """
  sd = {re.sub(r"^params/", "", k): v for k, v in sd.items()}
  if any(k.startswith("MAPHead_0/") for k in sd):
    raise ValueError("big_vision MAP-head checkpoints are not supported (use 'tok' or 'gap')")
  if any(k.startswith("pre_logits/") for k in sd):
    raise ValueError("vit_jax checkpoints with a pre_logits layer are not supported")
  if any(k.startswith("Transformer/encoderblock/") for k in sd):  # scanned layers
    stacked = {k: v for k, v in sd.items() if k.startswith("Transformer/encoderblock/")}
    depth = next(iter(stacked.values())).shape[0]
    sd = {k: v for k, v in sd.items() if k not in stacked}
    for k, v in stacked.items():
      for i in range(depth):
        sd[k.replace("encoderblock/", f"encoderblock_{i}/")] = v[i]
  vit_jax = any(re.search(r"encoderblock_\d+/MlpBlock_3/", k) for k in sd)
  ln2, mha, mlp = (
    ("LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
    if vit_jax
    else (
      "LayerNorm_1",
      "MultiHeadDotProductAttention_0",
      "MlpBlock_0",
    )
  )
  out, rest, qkv = {}, {}, {}
  for k, v in sd.items():
    if k == "embedding/kernel":
      out["embed/patch/kernel"] = v
    elif k == "embedding/bias":
      out["embed/patch/bias"] = v
    elif k == "cls":
      out["embed/cls_token"] = v
    elif k in ("pos_embedding", "Transformer/posembed_input/pos_embedding"):
      out["embed/pos_embed"] = v.reshape(1, -1, v.shape[-1])
    elif k.startswith("Transformer/encoder_norm/"):
      out["norm/" + k.rsplit("/", 1)[1]] = v
    elif k.startswith("head/"):
      out[k] = v
    elif m := re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", k):
      i, name = m.groups()
      if name.startswith("LayerNorm_0/"):
        out[f"block_{i}/norm1/" + name.rsplit("/", 1)[1]] = v
      elif name.startswith(ln2 + "/"):
        out[f"block_{i}/norm2/" + name.rsplit("/", 1)[1]] = v
      elif name.startswith(mlp + "/"):
        dense, kind = name.split("/")[1:]
        out[f"block_{i}/mlp/{'fc1' if dense == 'Dense_0' else 'fc2'}/{kind}"] = v
      elif nm := re.fullmatch(mha + r"/(query|key|value|out)/(kernel|bias)", name):
        part, kind = nm.groups()
        if part == "out":
          out[f"block_{i}/attn/proj/{kind}"] = v.reshape(-1, v.shape[-1]) if kind == "kernel" else v
        else:
          flat = v.reshape(v.shape[0], -1) if kind == "kernel" else v.reshape(-1)
          qkv.setdefault((i, kind), {})[part] = flat
      else:
        rest[k] = v
    else:
      rest[k] = v
  for (i, kind), parts in qkv.items():
    if set(parts) != {"query", "key", "value"}:
      raise ValueError(
        f"encoderblock_{i} attention {kind}: missing { ({'query', 'key', 'value'} - set(parts)) }"
      )
    out[f"block_{i}/attn/qkv/{kind}"] = np.concatenate(
      [parts[n] for n in ("query", "key", "value")], axis=-1
    )
  pos = out.get("embed/pos_embed")
  grid_rows = pos.shape[1] if pos is not None else 0
  if pos is not None and num_prefix and _is_square(grid_rows) and not _is_square(grid_rows - 1):
    out["embed/pos_embed"] = np.concatenate(
      [np.zeros((1, num_prefix, pos.shape[-1]), pos.dtype), pos], axis=1
    )
  return {**out, **rest}


def _is_square(n: int) -> bool:
  return n > 0 and int(np.sqrt(n)) ** 2 == n


def to_ours(tensors: dict[str, np.ndarray], num_prefix: int) -> tuple[str, dict[str, np.ndarray]]:
  """Detects the layout of ``tensors`` and converts it; returns ``(layout, flat)``."""
  layout = detect_layout(tensors)
  if layout == "timm":
    return layout, from_timm(tensors)
  if layout == "hf":
    return layout, from_hf(tensors)
  if layout == "big_vision":
    return layout, from_big_vision(tensors, num_prefix)
  return layout, dict(tensors)
