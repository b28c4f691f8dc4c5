"""Inherited memory at a stage switch: stored samples on the survived features, new ones imputed.

Issue 15 (our design, not the paper's): at a transition the per-class memory keeps its
stored samples, restricted to the features that survive; their new features are unknown.
Two fillings, chosen by ``mode``:

* ``"zero"``: the new features stay 0 (the inputs are standardised, so 0 is the mean);
* ``"ridge"``: a linear map ``B`` ``[d_a, d_s]`` from survived to new features, learned
  online from the arriving instances of the new stage by closed-form ridge regression,
  ``B = S_as (S_ss + λ I)⁻¹`` with ``S_ss = Σ z_s z_sᵀ`` and ``S_as = Σ z_a z_sᵀ``
  (sums over the new stage's instances so far), fills them with ``B x_s`` at every use.

``"none"`` (the memory restarts empty) is the spec §2 behaviour. A slot stops being
"inherited" once a new-stage sample overwrites it. Shared by EML (`learner.advance`,
`learner.step`) and the baselines that transfer (`baselines.online`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from eml_jax import memory

MODES = ("none", "zero", "ridge")


@struct.dataclass
class RidgeMap:
  """Sufficient statistics of the online ridge map from survived to new features.

  Attributes:
    ss: ``[d_s, d_s]`` ``Σ z_s z_sᵀ`` (``[0, 0]`` when no map is learned).
    as_: ``[d_a, d_s]`` ``Σ z_a z_sᵀ``.
    s_idx: ``[d_s]`` int32 positions of the survived features in this stage.
    a_idx: ``[d_a]`` int32 positions of the new features.
  """

  ss: jax.Array
  as_: jax.Array
  s_idx: jax.Array
  a_idx: jax.Array


def ridge_empty() -> RidgeMap:
  """The map of a stage that inherits nothing (or fills with zeros): all shapes 0."""
  z = jnp.zeros((0,), jnp.int32)
  return RidgeMap(jnp.zeros((0, 0)), jnp.zeros((0, 0)), z, z)


def ridge_init(s_idx, d: int) -> RidgeMap:
  """Zero statistics for survived positions ``s_idx`` in a stage of ``d`` features."""
  s = np.asarray(s_idx, np.int32)
  a = np.setdiff1d(np.arange(d, dtype=np.int32), s)
  return RidgeMap(
    jnp.zeros((s.size, s.size)), jnp.zeros((a.size, s.size)), jnp.asarray(s), jnp.asarray(a)
  )


def ridge_update(r: RidgeMap, z: jax.Array) -> RidgeMap:
  """Adds one new-stage instance ``z`` ``[d]`` to the statistics."""
  zs, za = z[r.s_idx], z[r.a_idx]  # [d_s], [d_a]
  return r.replace(ss=r.ss + jnp.outer(zs, zs), as_=r.as_ + jnp.outer(za, zs))


def ridge_coef(r: RidgeMap, lam: jax.Array) -> jax.Array:
  """``B = S_as (S_ss + λ I)⁻¹`` ``[d_a, d_s]`` (0 before any instance: ``S_as = 0``)."""
  d_s = r.ss.shape[0]
  A = r.ss + jnp.maximum(lam, 1e-6) * jnp.eye(d_s)  # [d_s, d_s], SPD
  return jnp.linalg.solve(A, r.as_.T).T  # A symmetric: (A⁻¹ S_asᵀ)ᵀ = S_as A⁻¹


def carry_buffer(buf: memory.ClassBuffer, sp, sn, d_next: int, scale: float):
  """The next stage's memory: stored samples on the survived features, new features 0.

  Args:
    buf: the memory at the end of the stage, ``x [C, M, d]``.
    sp: ``[d_s]`` positions of the survived features in this stage.
    sn: ``[d_s]`` their positions in the next stage.
    d_next: features of the next stage.
    scale: factor applied to the carried values (input scale ``√(d / d_next)`` when
      inputs are divided by ``√d`` per stage).

  Returns:
    ``(buffer, inherited)``: the `memory.ClassBuffer` ``x [C, M, d_next]`` with the same
    ``seen`` counts (the ring order continues), and ``[C, M]`` bool, the slots that hold
    a carried sample.
  """
  C, M, _ = buf.x.shape
  x = (
    jnp.zeros((C, M, d_next), buf.x.dtype)
    .at[:, :, np.asarray(sn)]
    .set(buf.x[:, :, np.asarray(sp)] * scale)
  )
  return memory.ClassBuffer(x, buf.seen), buf.valid


def input_scale(d_prev: int, d_next: int) -> float:
  """``√(d_prev / d_next)``: re-scales a sample divided by ``√d_prev`` to ``1/√d_next``."""
  return math.sqrt(d_prev / d_next)


def view(x: jax.Array, inherited: jax.Array, r: RidgeMap, lam: jax.Array) -> jax.Array:
  """The memory as seen by the learner: carried slots get ``B x_s`` on the new features.

  Args:
    x: ``[C, M, d]`` stored samples (carried ones have 0 on the new features).
    inherited: ``[C, M]`` bool, carried slots.
    r: the ridge statistics (``[0, 0]`` shapes: returns ``x`` unchanged, the "zero" mode).
    lam: ridge ``λ``.

  Returns:
    ``[C, M, d]``.
  """
  if r.ss.shape[0] == 0 or r.as_.shape[0] == 0:
    return x
  B = ridge_coef(r, lam)  # [d_a, d_s]
  filled = x.at[:, :, r.a_idx].set(x[:, :, r.s_idx] @ B.T)  # [C, M, d]
  return jnp.where(inherited[..., None], filled, x)


def push(
  buf: memory.ClassBuffer, inherited: jax.Array, x: jax.Array, y: jax.Array
) -> tuple[memory.ClassBuffer, jax.Array]:
  """`memory.ring_push`, and the overwritten slot no longer holds a carried sample."""
  slot = buf.seen[y] % buf.x.shape[1]
  return memory.ring_push(buf, x, y), inherited.at[y, slot].set(False)
