"""Checkpoint file formats: detect from the bytes on disk, read into flat numpy dicts.

Nothing here unpickles arbitrary data: PyTorch files go through
``torch.load(weights_only=True)``; npz is read with ``allow_pickle=False``; ONNX
models are parsed as protobuf and only their initializers are read.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile

import numpy as np

from ztprune_jax.checkpoints import onnx_reader

FORMATS = ("safetensors", "npz", "torch", "msgpack", "orbax", "onnx")
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt", "checkpoint")


def _is_safetensors(head: bytes, size: int) -> bool:
  if len(head) < 9:
    return False
  (n,) = struct.unpack("<Q", head[:8])
  return 0 < n <= size - 8 and head[8:9] == b"{"


def _truncated(path: str, kind: str, detail: str) -> ValueError:
  return ValueError(f"Checkpoint {path} starts like {kind} but is corrupt or truncated: {detail}")


def _check_safetensors(path: str, head: bytes, size: int) -> None:
  """Raises when a file that starts like safetensors is shorter than its header says."""
  (n,) = struct.unpack("<Q", head[:8])
  if n > size - 8:
    raise _truncated(
      path, "safetensors", f"its header is {n} bytes but the file has only {size} bytes"
    )
  with open(path, "rb") as f:
    f.seek(8)
    raw = f.read(n)
  try:
    header = json.loads(raw)
    end = max(
      (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
    )
  except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
    raise _truncated(path, "safetensors", f"its {n}-byte header is not valid JSON ({e})") from e
  expected = 8 + n + end
  if size < expected:
    raise _truncated(
      path, "safetensors", f"its header describes {expected} bytes but the file has {size} bytes"
    )


def _zip_problem(path: str, size: int) -> str | None:
  """Why a file starting with a zip signature cannot be opened (None when it can)."""
  try:
    with zipfile.ZipFile(path):
      return None
  except zipfile.BadZipFile as e:
    return f"{e} ({size} bytes on disk; the end-of-archive record is missing or damaged)"
  except (OSError, EOFError, zipfile.LargeZipFile, ValueError) as e:
    return f"{e} ({size} bytes on disk)"


def detect_format(path: str | os.PathLike) -> str:
  """Returns one of `FORMATS` for ``path``, judged from its content, not its name.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: the content matches no supported format, or starts like safetensors or a
      zip archive (PyTorch, npz) but is cut short or damaged ("corrupt or truncated", with
      the byte counts).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"Checkpoint not found: {path}")
  if os.path.isdir(path):
    if any(os.path.exists(os.path.join(path, m)) for m in _ORBAX_MARKERS):
      return "orbax"
    raise ValueError(f"Directory {path} is not an orbax checkpoint (no orbax metadata inside)")
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(16)
  if head.startswith(b"PK\x03\x04"):
    problem = _zip_problem(path, size)
    if problem:
      raise _truncated(path, "a zip archive (PyTorch .pth or .npz)", problem)
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
    if any(n.endswith("data.pkl") for n in names):
      return "torch"
    if names and all(n.endswith(".npy") for n in names):
      return "npz"
    raise ValueError(f"Zip checkpoint {path} is neither a PyTorch file nor an .npz archive")
  if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
    return "torch"  # legacy (pre-zip) torch.save pickle; still read with weights_only
  if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0:
    _check_safetensors(path, head, size)  # cut short: say so, not "unknown format"
  if _is_safetensors(head, size):
    return "safetensors"
  if head[:1] and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
    return "msgpack"
  if onnx_reader.looks_like_onnx(head):
    return "onnx"
  raise ValueError(
    f"Unknown checkpoint format for {path}: expected one of {FORMATS} (first bytes {head[:8]!r})"
  )


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "/"))
    else:
      out[key] = np.asarray(v)
  return out


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  try:
    return dict(load_file(path))
  except SafetensorError as e:
    raise ValueError(f"Corrupt safetensors checkpoint {path}: {e}") from e
  except (TypeError, ValueError):  # dtypes numpy lacks (bfloat16): read through flax
    from safetensors.flax import load_file as load_flax

    return {k: np.asarray(v) for k, v in load_flax(path).items()}


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f"Corrupt or pickled .npz checkpoint {path}: {e}") from e


def _unwrap_state_dict(obj, path: str):
  """Finds the tensor dict inside common training-checkpoint containers."""
  for key in ("state_dict", "model", "model_ema", "module"):
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      return _unwrap_state_dict(obj[key], path)
  if not isinstance(obj, dict):
    raise ValueError(f"PyTorch checkpoint {path} holds a {type(obj).__name__}, not a state dict")
  return obj


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      f"Reading the PyTorch checkpoint {path} needs torch (`pip install -e .[parity]`), "
      "or convert it to .safetensors first"
    ) from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(
      f"Refusing to load {path}: it is not a plain tensor checkpoint and "
      f"torch.load(weights_only=True) rejected it ({str(e).splitlines()[0]})"
    ) from e
  except (RuntimeError, EOFError) as e:
    raise ValueError(f"Corrupt PyTorch checkpoint {path}: {e}") from e
  sd = _unwrap_state_dict(obj, path)
  out = {}
  for k, v in sd.items():
    if isinstance(v, torch.Tensor):
      v = v.detach().cpu()
      out[k] = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
  return out


def _read_msgpack(path: str) -> dict[str, np.ndarray]:
  from flax import serialization

  with open(path, "rb") as f:
    data = f.read()
  try:
    tree = serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises several unrelated exception types
    raise ValueError(f"Corrupt msgpack checkpoint {path}: {e}") from e
  if not isinstance(tree, dict):
    raise ValueError(f"msgpack checkpoint {path} does not hold a dict of arrays")
  return _flatten(tree)


def _read_orbax(path: str) -> dict[str, np.ndarray]:
  import orbax.checkpoint as ocp

  try:
    tree = ocp.PyTreeCheckpointer().restore(os.path.abspath(path))
  except Exception as e:  # orbax surfaces many error types for broken directories
    raise ValueError(f"Cannot restore orbax checkpoint {path}: {e}") from e
  return _flatten(tree)


_READERS = {
  "safetensors": _read_safetensors,
  "npz": _read_npz,
  "torch": _read_torch,
  "msgpack": _read_msgpack,
  "orbax": _read_orbax,
  "onnx": onnx_reader.read_onnx,
}


def read_tensors(path: str | os.PathLike) -> tuple[str, dict[str, np.ndarray]]:
  """Reads any supported checkpoint into ``(format, {flat_name: array})``."""
  fmt = detect_format(path)
  tensors = _READERS[fmt](os.fspath(path))
  if not tensors:
    raise ValueError(f"Checkpoint {path} ({fmt}) contains no arrays")
  return fmt, tensors


def write_tensors(tensors: dict[str, np.ndarray], path: str | os.PathLike) -> str:
  """Writes a flat dict; the format follows the suffix (.safetensors, .msgpack, else orbax).

  Returns:
    The format written.
  """
  path = os.fspath(path)
  arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in tensors.items()}
  if path.endswith(".safetensors"):
    from safetensors.numpy import save_file

    save_file(arrays, path, metadata={"layout": "ztprune_jax"})
    return "safetensors"
  nested: dict = {}
  for k, v in arrays.items():
    node = nested
    *parents, leaf = k.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  if path.endswith(".msgpack"):
    from flax import serialization

    with open(path, "wb") as f:
      f.write(serialization.msgpack_serialize(nested))
    return "msgpack"
  import orbax.checkpoint as ocp

  ocp.PyTreeCheckpointer().save(os.path.abspath(path), nested, force=True)
  return "orbax"
