"""Fixed-shape per-class buffers: the triplet memory and the T-stage reservoir.

Our reconstruction of EML (spec §2): per class the last ``M`` samples (ring buffer)
give positives and negatives for the one-pass triplet loss; a class-balanced reservoir of
at most ``R`` T-stage samples per class is embedded at the end of the T-stage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ClassBuffer:
  """Per-class fixed-size sample buffer.

  Attributes:
    x: ``[C, S, d]`` stored samples (slot contents undefined where invalid).
    seen: ``[C]`` int32, samples of each class offered to the buffer so far.
  """

  x: jax.Array
  seen: jax.Array

  @property
  def valid(self) -> jax.Array:
    """``[C, S]`` bool: which slots hold a sample."""
    S = self.x.shape[1]
    return jnp.arange(S)[None, :] < jnp.minimum(self.seen, S)[:, None]

  @property
  def labels(self) -> jax.Array:
    """``[C, S]`` int32 class of each slot."""
    C, S = self.x.shape[:2]
    return jnp.broadcast_to(jnp.arange(C, dtype=jnp.int32)[:, None], (C, S))


def buffer_init(n_classes: int, size: int, d: int) -> ClassBuffer:
  """Empty buffer of ``n_classes × size`` slots of dimension ``d``."""
  return ClassBuffer(jnp.zeros((n_classes, size, d), jnp.float32), jnp.zeros(n_classes, jnp.int32))


def ring_push(buf: ClassBuffer, x: jax.Array, y: jax.Array) -> ClassBuffer:
  """Stores ``x`` ``[d]`` as the latest sample of class ``y``, overwriting the oldest."""
  slot = buf.seen[y] % buf.x.shape[1]
  return ClassBuffer(buf.x.at[y, slot].set(x), buf.seen.at[y].add(1))


def reservoir_push(buf: ClassBuffer, x: jax.Array, y: jax.Array, key: jax.Array) -> ClassBuffer:
  """Per-class reservoir sampling (Algorithm R): a uniform sample of class ``y``'s stream.

  Args:
    buf: the reservoir.
    x: ``[d]`` sample.
    y: ``[]`` int label.
    key: PRNG key.

  Returns:
    The updated reservoir.
  """
  S = buf.x.shape[1]
  n = buf.seen[y]
  j = jax.random.randint(key, (), 0, jnp.maximum(n + 1, 1))
  slot = jnp.where(n < S, n, j)
  keep = (n < S) | (j < S)
  slot = jnp.minimum(slot, S - 1)
  new_x = buf.x.at[y, slot].set(jnp.where(keep, x, buf.x[y, slot]))
  return ClassBuffer(new_x, buf.seen.at[y].add(1))


def sample_negatives(buf: ClassBuffer, y: jax.Array, key: jax.Array, n: int):
  """Draws ``n`` samples (with replacement) from the other classes' valid slots.

  Args:
    buf: the triplet memory.
    y: ``[]`` label of the arriving sample.
    key: PRNG key.
    n: number of negatives (static).

  Returns:
    ``(x [n, d], valid [n] bool)``; all invalid when no other class has a sample.
  """
  C, S, d = buf.x.shape
  ok = (buf.valid & (buf.labels != y)).reshape(-1)  # [C*S]
  logits = jnp.where(ok, 0.0, -jnp.inf)
  any_ok = jnp.any(ok)
  idx = jax.random.categorical(key, jnp.where(any_ok, logits, 0.0), shape=(n,))  # [n]
  return buf.x.reshape(C * S, d)[idx], jnp.broadcast_to(any_ok, (n,))
