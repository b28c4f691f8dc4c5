"""Supervised ViT training kernels: preprocessing, augmentation, AdamW schedule, steps.

Pure functions; `experiments/train.py` binds the static collaborators (model, optimiser)
with `functools.partial` and jits them. Images enter as uint8 ``[B, H, W]`` (grey) or
``[B, H, W, C]`` and are normalised, resized to the model's ``image_size`` and given the
model's ``in_channels`` on device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs: ``step`` (int32 scalar), ``params``, ``opt_state``."""

  step: Array
  params: dict
  opt_state: optax.OptState


def preprocess(
  images: Array,
  *,
  mean: Sequence[float],
  std: Sequence[float],
  image_size: int,
  in_channels: int,
) -> Array:
  """uint8 ``[B, H, W]`` / ``[B, H, W, C]`` -> normalised float32 ``[B, S, S, in_channels]``.

  Grey images are repeated to 3 channels when the model wants RGB; other sizes are resized
  bilinearly to ``S = image_size`` (e.g. 28 -> 224 for fine-tuning DeiT).
  """
  x = images.astype(jnp.float32) / 255.0
  if x.ndim == 3:
    x = x[..., None]  # [B, H, W, 1]
  c = x.shape[-1]
  if c != in_channels:
    if c != 1:
      raise ValueError(f"cannot map {c}-channel images to in_channels={in_channels}")
    x = jnp.repeat(x, in_channels, axis=-1)
  b, h, w, c = x.shape
  if (h, w) != (image_size, image_size):
    x = jax.image.resize(x, (b, image_size, image_size, c), "bilinear")
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  if mean.shape not in ((), (1,), (c,)) or std.shape != mean.shape:
    raise ValueError(f"mean/std need 1 or {c} entries, got {mean.shape} and {std.shape}")
  return (x - mean) / std


def augment(key: Array, images: Array, *, pad: int, flip: bool) -> Array:
  """Random crop after zero padding, and random horizontal flip.

  Args:
    key: PRNG key.
    images: ``[B, H, W]`` or ``[B, H, W, C]`` (any dtype; padding uses 0 = background).
    pad: pixels of padding on each side before cropping back to ``H x W`` (0: no crop).
    flip: flip each image left-right with probability 1/2.

  Returns:
    Augmented images, same shape and dtype.
  """
  b, h, w = images.shape[:3]
  k_crop, k_flip = jax.random.split(key)
  if pad:
    widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3)
    padded = jnp.pad(images, widths)
    offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)  # [B, 2]

    def crop(img, off):
      start = (off[0], off[1]) + (0,) * (images.ndim - 3)
      return jax.lax.dynamic_slice(img, start, (h, w) + images.shape[3:])

    images = jax.vmap(crop)(padded, offsets)
  if flip:
    do = jax.random.bernoulli(k_flip, 0.5, (b,))  # [B]
    do = do.reshape((b,) + (1,) * (images.ndim - 1))
    images = jnp.where(do, images[:, :, ::-1], images)
  return images


def _decay_mask(params: dict) -> dict:
  """Weight decay on matrices/kernels only (not biases, norms, tokens, positions)."""
  flat = flax.traverse_util.flatten_dict(params)
  mask = {
    k: (v.ndim >= 2 and k[-1] not in ("pos_embed", "cls_token", "dist_token"))
    for k, v in flat.items()
  }
  return flax.traverse_util.unflatten_dict(mask)


def make_optimizer(
  *,
  learning_rate: float,
  total_steps: int,
  warmup_steps: int,
  weight_decay: float,
  end_learning_rate: float = 0.0,
  b1: float = 0.9,
  b2: float = 0.999,
  grad_clip_norm: float | None = 1.0,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW with linear warm-up then cosine decay; returns ``(tx, schedule)``."""
  if total_steps <= warmup_steps:
    raise ValueError(f"total_steps {total_steps} must exceed warmup_steps {warmup_steps}")
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, learning_rate, warmup_steps, total_steps, end_value=end_learning_rate
  )
  parts = [] if not grad_clip_norm else [optax.clip_by_global_norm(grad_clip_norm)]
  parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=_decay_mask))
  return optax.chain(*parts), schedule


def create_train_state(params: dict, tx: optax.GradientTransformation) -> TrainState:
  """A fresh `TrainState` at step 0."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def cross_entropy(logits: Array, labels: Array, label_smoothing: float = 0.0) -> Array:
  """Mean cross-entropy of ``logits [B, K]`` against int ``labels [B]`` (smoothed)."""
  k = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, k), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def train_step(
  state: TrainState,
  images: Array,
  labels: Array,
  key: Array,
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  prep: functools.partial,
  pad: int,
  flip: bool,
  label_smoothing: float,
) -> tuple[TrainState, dict]:
  """One AdamW step on an augmented batch.

  Args:
    state: current `TrainState`.
    images: uint8 ``[B, H, W]`` (or ``[B, H, W, C]``); labels: int ``[B]``.
    key: PRNG key for this step's augmentation (the caller folds in the step).
    model, tx, prep, pad, flip, label_smoothing: static collaborators and options.

  Returns:
    The new state and ``{"loss", "accuracy", "grad_norm"}`` scalars.
  """
  x = prep(augment(key, images, pad=pad, flip=flip))

  def loss_fn(params):
    logits = model.apply({"params": params}, x)
    return cross_entropy(logits, labels, label_smoothing), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
    "grad_norm": optax.global_norm(grads),
  }
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(
  params: dict, images: Array, labels: Array, valid: Array, *, model: nn.Module, prep
) -> dict:
  """Sums over the ``valid [B]`` rows of a (padded) batch: ``correct``, ``loss``, ``count``."""
  logits = model.apply({"params": params}, prep(images))
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  w = valid.astype(jnp.float32)
  return {
    "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * w),
    "loss": jnp.sum(losses * w),
    "count": jnp.sum(w),
  }
