"""ONNX checkpoints: the weights of an exported PyTorch model, under their torch names.

`torch.onnx.export` keeps a parameter's name when it feeds the graph unchanged
(``backbone.encoder.layer.0.norm1.weight``), but Linear weights become the transposed
input of a ``MatMul`` named ``onnx::MatMul_1966``, and constant folding may split a
tensor (DINOv2's position embedding becomes a CLS row and a grid, both unnamed). This
reader recovers torch-style names from the graph: a ``MatMul``/``Gemm`` weight takes the
name of its node's scope (``/backbone/encoder/layer.0/attention/attention/query/MatMul``
-> ``backbone.encoder.layer.0.attention.attention.query.weight``, transposed back to
torch's ``[out, in]``), and a split position embedding under an ``.../embeddings`` scope
is joined again as ``<scope>.position_embeddings``. Anything else unnamed keeps its ONNX
name, so loading reports it as unexpected.

Needs the optional ``onnx`` package (``pip install -e .[onnx]``). Only tensors are read:
no graph is executed and nothing is unpickled.
"""

from __future__ import annotations

import collections
import os

import numpy as np

# ModelProto field tags that may follow ``ir_version`` (field 1, varint) at the start of
# a serialized model: producer_name .. graph, opset_import, metadata_props.
_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
_UNNAMED = ("onnx::",)


def looks_like_onnx(head: bytes) -> bool:
  """Whether ``head`` (the first bytes of a file) starts like a serialized ONNX model."""
  # tag 0x08 (field 1 varint = ir_version, 1..127 fits one byte), then another field tag
  return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] < 0x80 and head[2] in _NEXT_TAGS


def _is_unnamed(name: str) -> bool:
  return name.startswith(_UNNAMED) or name.isdigit()


def _scope(node_name: str) -> str:
  """``/backbone/encoder/layer.0/mlp/fc1/MatMul`` -> ``backbone.encoder.layer.0.mlp.fc1``."""
  parts = [p for p in node_name.split("/") if p]
  return ".".join(parts[:-1])


def _load_model(path: str):
  try:
    import onnx
  except ImportError as e:
    raise ImportError(
      f"Reading the ONNX checkpoint {path} needs the `onnx` package "
      "(`pip install -e .[onnx]`), or convert it to .safetensors first"
    ) from e
  try:
    return onnx.load(path)
  except Exception as e:  # protobuf DecodeError, external-data OSError, ...
    raise ValueError(f"Corrupt ONNX checkpoint {path}: {e}") from e


def read_onnx(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads an ONNX model's initializers as ``{torch_name: array}``.

  Args:
    path: a ``.onnx`` file (weights inside it or in external-data files beside it).

  Returns:
    Flat dict: named initializers as stored, ``MatMul``/``Gemm`` weights renamed to
    ``<scope>.weight`` in torch's ``[out, in]`` layout, a split position embedding
    joined into ``<scope>.position_embeddings`` ``[1, 1 + N, D]``.

  Raises:
    ValueError: the file does not parse as an ONNX model or has no initializers.
  """
  from onnx import numpy_helper

  path = os.fspath(path)
  graph = _load_model(path).graph
  if not graph.initializer:
    raise ValueError(f"ONNX checkpoint {path} has no initializers (no weights to read)")
  consumers = collections.defaultdict(list)  # initializer name -> [(node, input index)]
  for node in graph.node:
    for i, name in enumerate(node.input):
      consumers[name].append((node, i))
  out: dict[str, np.ndarray] = {}
  split_pos = collections.defaultdict(list)  # embeddings scope -> [array]
  for init in graph.initializer:
    try:
      value = numpy_helper.to_array(init)
    except Exception as e:  # truncated raw_data, missing external file, ...
      raise ValueError(f"Corrupt ONNX checkpoint {path}: tensor {init.name!r}: {e}") from e
    if not _is_unnamed(init.name):
      out[init.name] = value
      continue
    uses = consumers.get(init.name, [])
    renamed = _matmul_weight_name(uses, value)
    if renamed is not None:
      name, value = renamed
      out.setdefault(name, value)
      continue
    scopes = {_scope(n.name) for n, _ in uses}
    emb = [s for s in scopes if s.split(".")[-1] == "embeddings"]
    if value.ndim == 3 and value.shape[0] == 1 and len(emb) == 1:
      split_pos[emb[0]].append(value)
    else:
      out[init.name] = value
  for scope, parts in split_pos.items():
    out[f"{scope}.position_embeddings"] = _join_pos_embed(parts, scope, path)
  return out


def _matmul_weight_name(uses, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """Names an unnamed weight after the MatMul/Gemm that consumes it as its second input."""
  for node, idx in uses:
    if idx != 1 or value.ndim != 2 or not _scope(node.name):
      continue
    if node.op_type == "MatMul":
      return f"{_scope(node.name)}.weight", np.ascontiguousarray(value.T)  # [in,out]->[out,in]
    if node.op_type == "Gemm":
      trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
      w = value if trans_b else value.T
      return f"{_scope(node.name)}.weight", np.ascontiguousarray(w)
  return None


def _join_pos_embed(parts: list[np.ndarray], scope: str, path: str) -> np.ndarray:
  """Joins a folded ``[1, P, D]`` prefix row block and ``[1, N, D]`` grid, prefix first."""
  if len(parts) == 1:
    return parts[0]
  parts = sorted(parts, key=lambda a: a.shape[1])
  if len(parts) != 2 or parts[0].shape[2] != parts[1].shape[2] or parts[0].shape[1] > 2:
    shapes = [a.shape for a in parts]
    raise ValueError(
      f"ONNX checkpoint {path}: cannot tell the position embedding apart in scope "
      f"{scope!r} (unnamed [1, N, D] tensors {shapes})"
    )
  return np.concatenate(parts, axis=1)
