"""Tests of the Flax ViT family: sizes, hooks, attention bias, errors, tracing."""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.checkpoints import expected_shapes
from ztprune_jax.models import BlockOutput, TokenTransform, posemb
from ztprune_jax.models.vit import Attention

# Parameter counts of timm's models (timm model cards / `sum(p.numel())`).
TIMM_PARAM_COUNTS = {
  "deit_tiny_patch16_224": 5_717_416,
  "deit_small_patch16_224": 22_050_664,
  "deit_base_patch16_224": 86_567_656,
  "deit_small_distilled_patch16_224": 22_436_432,
  "vit_base_patch16_384": 86_859_496,
}


def _small(**kw):
  base = dict(depth=2, image_size=32, patch_size=8, num_classes=7)
  return zt.create_model("deit_tiny_patch16_224", **{**base, **kw})


def _images(b=2, size=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, size, size, 3))


@pytest.mark.parametrize("name", sorted(TIMM_PARAM_COUNTS))
def test_param_count_matches_timm(name):
  shapes = expected_shapes(zt.create_model(name))
  assert sum(int(np.prod(s)) for s in shapes.values()) == TIMM_PARAM_COUNTS[name]


def test_every_registered_model_builds():
  for name in zt.list_models():
    m = zt.create_model(name)
    shapes = expected_shapes(m)
    assert shapes["embed/pos_embed"] == (1, m.num_prefix_tokens + m.num_patches, m.width)


def test_unknown_model_and_override_raise():
  with pytest.raises(ValueError, match="deit_small_patch16_224"):
    zt.create_model("deit_smal_patch16_224")
  with pytest.raises(ValueError, match="widht"):
    zt.create_model("deit_tiny_patch16_224", widht=3)


@pytest.mark.parametrize(
  "kw, field",
  [
    (dict(width=100, num_heads=3), "num_heads"),
    (dict(image_size=30), "patch_size"),
    (dict(global_pool="max"), "global_pool"),
    (dict(depth=0), "depth"),
    (dict(num_classes=-1), "num_classes"),
  ],
)
def test_invalid_config_raises(kw, field):
  with pytest.raises(ValueError, match=field):
    _small(**kw).init(jax.random.key(0), _images())


def test_bad_image_shapes_raise():
  m = _small()
  with pytest.raises(ValueError, match="NHWC"):
    m.init(jax.random.key(0), jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match="divisible"):
    m.init(jax.random.key(0), jnp.zeros((1, 30, 30, 3)))


@dataclasses.dataclass(frozen=True)
class _Record(TokenTransform):
  """Collects every block's BlockOutput in the state."""

  def init_state(self, x, num_prefix, args=None):
    return ()

  def after_block(self, layer, x, out, state):
    return x, (*state, out)


def test_transform_sees_block_outputs_and_keeps_params():
  m = _small(dist_token=True)
  params = m.init(jax.random.key(0), _images())["params"]
  rec = m.clone(token_transform=_Record())
  params_rec = rec.init(jax.random.key(0), _images())["params"]
  assert jax.tree.structure(params) == jax.tree.structure(params_rec)
  logits, outs = rec.apply({"params": params}, _images(), return_state=True)
  np.testing.assert_array_equal(logits, m.apply({"params": params}, _images()))
  assert len(outs) == m.depth
  n = m.num_patches + 2
  out = outs[0]
  assert isinstance(out, BlockOutput)
  assert out.attn.shape == (2, 3, n, n) and out.attn.dtype == jnp.float32
  assert out.keys.shape == (2, 3, n, 64)
  np.testing.assert_allclose(out.attn.sum(-1), 1.0, rtol=1e-5)


def test_attention_bias_log_size_equals_duplicated_token():
  """Proportional attention: bias log(2) on a token == that token present twice."""
  attn = Attention(width=16, num_heads=2)
  x = jax.random.normal(jax.random.key(1), (1, 5, 16))
  params = attn.init(jax.random.key(0), x)
  bias = jnp.zeros((1, 5)).at[0, 3].set(jnp.log(2.0))
  out_bias, _ = attn.apply(params, x, bias)
  x_dup = jnp.concatenate([x, x[:, 3:4]], axis=1)
  out_dup, _ = attn.apply(params, x_dup)
  np.testing.assert_allclose(out_bias, out_dup[:, :5], rtol=1e-5, atol=1e-6)
  out_zero, _ = attn.apply(params, x, jnp.zeros((1, 5)))
  np.testing.assert_allclose(out_zero, attn.apply(params, x)[0], rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="attn_bias"):
    attn.apply(params, x, jnp.zeros((1, 4)))


def test_avg_pool_and_fc_norm_params():
  m = _small(global_pool="avg", class_token=False)
  shapes = expected_shapes(m)
  assert "fc_norm/scale" in shapes and "norm/scale" not in shapes
  assert shapes["embed/pos_embed"] == (1, 16, 192)
  assert m.apply(m.init(jax.random.key(0), _images()), _images()).shape == (2, 7)


def test_layerscale_and_features_only():
  m = _small(layerscale_init=1e-5, num_classes=0)
  variables = m.init(jax.random.key(0), _images())
  assert variables["params"]["block_0"]["ls1"]["scale"].shape == (192,)
  assert m.apply(variables, _images()).shape == (2, 192)


def test_bfloat16_close_to_float32():
  m32 = _small()
  params = m32.init(jax.random.key(0), _images())["params"]
  out32 = m32.apply({"params": params}, _images())
  out16 = _small(dtype=jnp.bfloat16).apply({"params": params}, _images())
  assert out16.dtype == jnp.bfloat16
  scale = float(jnp.abs(out32).max())
  np.testing.assert_allclose(out16.astype(jnp.float32), out32, atol=0.05 * scale)


def test_other_image_size_resamples_positions():
  m = _small()
  params = m.init(jax.random.key(0), _images())["params"]
  out = m.apply({"params": params}, _images(size=48))
  assert out.shape == (2, 7) and bool(jnp.all(jnp.isfinite(out)))
  pe = params["embed"]["pos_embed"]
  same = posemb.resample_pos_embed(pe, (4, 4), 1)
  assert same is pe


def test_resample_identity_on_constant_grid():
  grid = np.full((1, 1 + 9, 4), 3.0, np.float32)
  for aa in (False, True):
    out = posemb.resample_pos_embed(grid, (5, 5), 1, antialias=aa)
    assert out.shape == (1, 26, 4)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)
  with pytest.raises(ValueError, match="square grid"):
    posemb.resample_pos_embed(np.zeros((1, 11, 4)), (3, 3), 1)


def test_jit_compiles_once_per_shape():
  m = _small()
  params = m.init(jax.random.key(0), _images())["params"]
  traces = []

  @jax.jit
  def fwd(p, x):
    traces.append(1)
    return m.apply({"params": p}, x)

  for seed in range(3):
    fwd(params, _images(seed=seed))
  assert len(traces) == 1
  params2 = jax.tree.map(lambda a: a + 1, params)
  fwd(params2, _images())
  assert len(traces) == 1
  np.testing.assert_allclose(
    fwd(params, _images()), m.apply({"params": params}, _images()), rtol=1e-5, atol=1e-6
  )
  assert isinstance(flax.core.unfreeze(params), dict)
