"""`load_checkpoint` and `save_checkpoint`: files on disk <-> the model's params."""

from __future__ import annotations

import logging
import os
import urllib.parse
import urllib.request

import flax
import jax
import jax.numpy as jnp
import numpy as np

from ztprune_jax.checkpoints import convert, formats
from ztprune_jax.models import posemb
from ztprune_jax.models.vit import VisionTransformer

_REMOTE = ("http://", "https://", "hf://")
_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "ztprune_jax")


def expected_shapes(model: VisionTransformer) -> dict[str, tuple[int, ...]]:
  """Flat ``{name: shape}`` of ``model``'s params, without allocating them."""
  size = model.image_size
  images = jax.ShapeDtypeStruct((1, size, size, model.in_channels), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), images)["params"]
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes), sep="/")
  return {k: tuple(v.shape) for k, v in flat.items()}


def _resolve(path: str | os.PathLike, allow_download: bool) -> str:
  path = os.fspath(path)
  if not path.startswith(_REMOTE):
    return path
  if not allow_download:
    raise ValueError(
      f"{path} is remote; pass allow_download=True to fetch it explicitly "
      "(nothing is downloaded implicitly)"
    )
  os.makedirs(_CACHE, exist_ok=True)
  if path.startswith("hf://"):
    from huggingface_hub import hf_hub_download

    repo, _, filename = path[len("hf://") :].partition(":")
    if not filename:
      raise ValueError(f"hf:// paths look like hf://owner/repo:file.safetensors, got {path}")
    return hf_hub_download(repo, filename, cache_dir=_CACHE)
  local = os.path.join(_CACHE, os.path.basename(urllib.parse.urlparse(path).path) or "ckpt")
  if not os.path.exists(local):
    logging.info("Downloading %s -> %s", path, local)
    urllib.request.urlretrieve(path, local)  # noqa: S310 (explicitly requested by the user)
  return local


def _fit_pos_embed(value: np.ndarray, shape: tuple[int, ...], model, antialias: bool):
  """Resamples a checkpoint's position embedding to the model's patch grid."""
  n = model.num_prefix_tokens
  old, new = value.shape[1] - n, shape[1] - n
  if (
    value.ndim != 3
    or value.shape[2] != shape[2]
    or not (convert._is_square(old) and convert._is_square(new))
  ):
    return value
  g_new = posemb.grid_size(new)
  logging.info("Resampling pos_embed %s -> %s (bicubic)", value.shape, shape)
  return posemb.resample_pos_embed(value, g_new, n, antialias=antialias)


def load_checkpoint(
  path: str | os.PathLike,
  model: VisionTransformer,
  *,
  strict: bool = True,
  resample_antialias: bool = True,
  allow_download: bool = False,
) -> dict:
  """Loads a checkpoint of any supported format and layout into ``model``'s params.

  Formats (detected from the file's bytes): safetensors, npz, PyTorch (``.pth``, via
  ``torch.load(weights_only=True)``), flax msgpack, orbax directories. Layouts
  (detected from parameter names): timm, Hugging Face ViT/DeiT, big_vision/vit_jax,
  and this project's own. A position embedding trained for another image size is
  resampled with torch-exact bicubic interpolation (antialiased, like timm).

  Args:
    path: local file/directory; a URL or ``hf://owner/repo:file`` only with
      ``allow_download=True``.
    model: the `VisionTransformer` the params are for (its shapes are checked).
    strict: raise on checkpoint entries the model does not use (else drop them).
    resample_antialias: torch ``antialias`` flag for position-embedding resampling.
    allow_download: permit fetching a remote ``path``.

  Returns:
    The ``params`` collection (nested dict of float32 ``jax.Array``), ready for
    ``model.apply({"params": params}, images)``.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: unknown format/layout, corrupt file, a pickle that ``weights_only``
      refuses, or missing / unexpected / mis-shaped parameters (named in the message).
  """
  local = _resolve(path, allow_download)
  fmt, tensors = formats.read_tensors(local)
  layout, flat = convert.to_ours(tensors, model.num_prefix_tokens)
  want = expected_shapes(model)
  pos = "embed/pos_embed"
  if pos in flat and pos in want and tuple(flat[pos].shape) != want[pos]:
    flat[pos] = _fit_pos_embed(flat[pos], want[pos], model, resample_antialias)
  missing = sorted(set(want) - set(flat))
  unexpected = sorted(set(flat) - set(want))
  misshaped = [
    f"{k}: checkpoint {tuple(flat[k].shape)} vs model {want[k]}"
    for k in sorted(set(want) & set(flat))
    if tuple(flat[k].shape) != want[k]
  ]
  problems = []
  if missing:
    problems.append(f"missing keys {missing}")
  if unexpected and strict:
    problems.append(f"unexpected keys {unexpected}")
  if misshaped:
    problems.append(f"mis-shaped keys {misshaped}")
  if problems:
    raise ValueError(
      f"Checkpoint {path} ({fmt}, {layout} layout) does not fit the model: " + "; ".join(problems)
    )
  params = {k: jnp.asarray(np.asarray(flat[k], np.float32)) for k in want}
  return flax.traverse_util.unflatten_dict(params, sep="/")


def save_checkpoint(params: dict, path: str | os.PathLike) -> str:
  """Saves a ``params`` tree in our layout.

  The format follows the path: ``*.safetensors``, ``*.msgpack``, otherwise an orbax
  directory. Returns the format written.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  return formats.write_tensors({k: np.asarray(v) for k, v in flat.items()}, path)
