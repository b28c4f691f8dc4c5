"""Reader and writer for the IDX format of (Fashion-)MNIST: a magic number, dims, then raw values.

Layout (big-endian): two zero bytes, a type code, the number of dimensions ``k``, ``k``
uint32 sizes, then ``prod(sizes)`` values of the coded type. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
  0x08: np.dtype(">u1"),
  0x09: np.dtype(">i1"),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
  """Decodes uncompressed IDX bytes into an array of native byte order.

  Args:
    data: the file's (decompressed) bytes.
    name: shown in error messages.

  Returns:
    An array shaped like the header's dims, e.g. ``[N, 28, 28]`` uint8 for images.

  Raises:
    ValueError: bad magic, unknown type code, or a body shorter/longer than the header says.
  """
  if len(data) < 4:
    raise ValueError(f"{name}: {len(data)} bytes is too short for an IDX header")
  if data[0] != 0 or data[1] != 0:
    raise ValueError(f"{name}: not an IDX file (magic starts {data[:2].hex()}, expected 0000)")
  code, ndim = data[2], data[3]
  if code not in _DTYPES:
    raise ValueError(f"{name}: unknown IDX type code 0x{code:02x}")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{name}: truncated IDX header ({len(data)} < {header} bytes)")
  shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = _DTYPES[code]
  want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  got = len(data) - header
  if got != want:
    raise ValueError(
      f"{name}: IDX body has {got} bytes but header {shape} ({dtype.name}) needs {want}"
    )
  arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzip-compressed (detected from its bytes) or raw.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: a corrupt gzip stream or IDX content (see `parse_idx`).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"IDX file not found: {path}")
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise ValueError(f"{path}: corrupt or truncated gzip stream ({e})") from e
  return parse_idx(data, path)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

  The inverse of `read_idx` (e.g. a subset of Fashion-MNIST written by a test).

  Args:
    path: the file to write.
    array: ``[d0, d1, ...]`` of a dtype the format has (uint8, int8, int16, int32,
      float32, float64), at most 255 dims.

  Raises:
    ValueError: a dtype IDX cannot hold, or too many dims.
  """
  array = np.asarray(array)
  codes = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
  native = array.dtype.newbyteorder("=")
  if native not in codes:
    raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of {sorted(map(str, codes))}")
  if array.ndim > 255:
    raise ValueError(f"IDX holds at most 255 dims, got {array.ndim}")
  header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  data = header + array.astype(_DTYPES[codes[native]]).tobytes()
  path = os.fspath(path)
  if path.endswith(".gz"):
    data = gzip.compress(data, mtime=0)
  with open(path, "wb") as f:
    f.write(data)
