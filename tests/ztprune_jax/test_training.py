"""Training kernels: preprocessing, augmentation, the AdamW schedule, steps; the default model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.train import training


def _images(b=6, h=8, w=8):
  return jnp.asarray(np.random.default_rng(0).integers(1, 256, (b, h, w)), jnp.uint8)


def test_augment_identity_flip_and_crop(rng):
  x = _images()
  np.testing.assert_array_equal(training.augment(rng, x, pad=0, flip=False), x)
  flipped = np.asarray(training.augment(rng, x, pad=0, flip=True))
  for a, f in zip(np.asarray(x), flipped, strict=True):
    assert np.array_equal(f, a) or np.array_equal(f, a[:, ::-1])
  pad = 2
  cropped = np.asarray(training.augment(rng, x, pad=pad, flip=False))
  assert cropped.shape == x.shape and cropped.dtype == x.dtype
  padded = np.pad(np.asarray(x), [(0, 0), (pad, pad), (pad, pad)])
  shifts = set()
  for i, c in enumerate(cropped):
    hits = [
      (dy, dx)
      for dy in range(2 * pad + 1)
      for dx in range(2 * pad + 1)
      if np.array_equal(c, padded[i, dy : dy + 8, dx : dx + 8])
    ]
    assert hits, "a crop is not a shifted window of the padded image"
    shifts.update(hits)
  assert len(shifts) > 1  # offsets differ across the batch


def test_preprocess_channels_resize_and_normalisation():
  x = _images(2, 28, 28)
  grey = training.preprocess(x, mean=(0.5,), std=(0.25,), image_size=28, in_channels=1)
  assert grey.shape == (2, 28, 28, 1) and grey.dtype == jnp.float32
  np.testing.assert_allclose(grey[..., 0], (np.asarray(x) / 255.0 - 0.5) / 0.25, atol=1e-5)
  rgb = training.preprocess(
    x, mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0), image_size=56, in_channels=3
  )
  assert rgb.shape == (2, 56, 56, 3)
  np.testing.assert_allclose(rgb[..., 1] - rgb[..., 0], 0.1 - 0.2, atol=1e-6)
  with pytest.raises(ValueError, match="in_channels"):
    training.preprocess(jnp.zeros((1, 4, 4, 3)), mean=(0,), std=(1,), image_size=4, in_channels=1)


def test_schedule_warmup_peak_and_end():
  tx, lr = training.make_optimizer(
    learning_rate=1e-3, total_steps=100, warmup_steps=10, weight_decay=0.05,
    end_learning_rate=1e-5,
  )  # fmt: skip
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(100)], [0, 5e-4, 1e-3, 1e-5], rtol=1e-5)
  assert lr(50) < lr(20)
  with pytest.raises(ValueError, match="warmup"):
    training.make_optimizer(learning_rate=1, total_steps=5, warmup_steps=5, weight_decay=0)


def test_decay_mask_only_matrices():
  model = zt.create_model("vit_fmnist_patch4_28", depth=1, width=16, num_heads=2, mlp_dim=32)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
  mask = training._decay_mask(params)
  assert mask["block_0"]["attn"]["qkv"]["kernel"] and mask["head"]["kernel"]
  assert not mask["block_0"]["attn"]["qkv"]["bias"]
  assert not mask["embed"]["pos_embed"] and not mask["embed"]["cls_token"]
  assert not mask["norm"]["scale"]


def test_train_step_fits_a_small_batch_and_eval_counts_valid_rows(rng):
  model = zt.create_model("vit_fmnist_patch4_28", depth=1, width=32, num_heads=2, mlp_dim=64)
  x = _images(16, 28, 28)
  y = jnp.arange(16) % 10
  params = model.init(rng, jnp.zeros((1, 28, 28, 1)))["params"]
  tx, _ = training.make_optimizer(
    learning_rate=3e-3, total_steps=60, warmup_steps=2, weight_decay=0.0
  )
  prep = functools.partial(training.preprocess, mean=(0.5,), std=(0.5,), image_size=28,
                           in_channels=1)  # fmt: skip
  step = jax.jit(functools.partial(training.train_step, model=model, tx=tx, prep=prep, pad=0,
                                   flip=False, label_smoothing=0.0))  # fmt: skip
  state = training.create_train_state(params, tx)
  losses = []
  for i in range(40):
    state, m = step(state, x, y, jax.random.fold_in(rng, i))
    losses.append(float(m["loss"]))
  assert int(state.step) == 40
  assert losses[-1] < 0.5 * losses[0]  # memorises 16 images
  ev = jax.jit(functools.partial(training.eval_step, model=model, prep=prep))
  valid = jnp.arange(16) < 10
  out = ev(state.params, x, y, valid)
  assert float(out["count"]) == 10
  logits = model.apply({"params": state.params}, prep(x))
  want = float(jnp.sum((jnp.argmax(logits, -1) == y)[:10]))
  assert float(out["correct"]) == want


def test_default_model_shape_and_grey_checkpoint_round_trip(tmp_path, rng):
  model = zt.create_model("vit_fmnist_patch4_28")
  assert model.in_channels == 1 and model.num_patches == 49 and model.num_classes == 10
  x = jnp.zeros((2, 28, 28, 1))
  params = model.init(rng, x)["params"]
  assert params["embed"]["patch"]["kernel"].shape == (4, 4, 1, model.width)
  assert params["embed"]["pos_embed"].shape == (1, 50, model.width)
  path = tmp_path / "m.safetensors"
  zt.save_checkpoint(params, path)
  loaded = zt.load_checkpoint(path, model)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded), strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="in_channels"):
    model.apply({"params": params}, jnp.zeros((2, 28, 28, 3)))
