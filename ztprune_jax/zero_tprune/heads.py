"""Combining per-head WPR scores: mean, EIR and VHF (Zero-TPrune, I-stage).

* EIR, "emphasize informative region": root-mean-square over heads,
  ``s(x) = sqrt(mean_h s_h(x)²)``, so a token one head finds very important beats a
  token every head finds lukewarm.
* VHF, "variance-based head filter": keep head ``h`` only when the variance of its score
  distribution lies in ``[v_min, v_max]``; heads outside are degenerate (nearly uniform,
  or all mass on a few tokens). If no head of an image passes, all heads are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
  "DEFAULT_V_RANGE",
  "HEAD_REDUCTIONS",
  "VARIANCE_SCALES",
  "eir",
  "head_pass_fraction",
  "head_variance",
  "reduce_heads",
  "vhf_mask",
]

HEAD_REDUCTIONS = ("mean", "rms")
VARIANCE_SCALES = ("mean_one", "raw")
# The paper's VHF range. It only admits any head on the mean-one scale (spec §2).
DEFAULT_V_RANGE = (0.01, 0.7)


def head_variance(
  s: jax.Array,
  *,
  num_prefix: int = 1,
  include_cls: bool = False,
  variance_scale: str = "mean_one",
) -> jax.Array:
  """Variance of each head's score distribution over tokens (Zero-TPrune, VHF).

  Which tokens and which scale are not settled by the paper (spec: open). Defaults are
  ours: on raw scores (which sum to one) every variance is below ``0.005`` and the
  paper's range ``[0.01, 0.7]`` would drop every head, and with CLS included CLS soaks
  up most of the mass. So by default the variance is taken over patch tokens only,
  rescaled to mean one: ``Var_j(N' · s_h[j] / Σ_j' s_h[j'])`` over the ``N'`` tokens.

  Args:
    s: ``[B, H, N]`` per-head scores (e.g. from ``weighted_pagerank``).
    num_prefix: number of prefix tokens at the front of ``N``.
    include_cls: also include the prefix tokens in the variance.
    variance_scale: ``"mean_one"`` (default) or ``"raw"`` (variance of ``s`` itself).

  Returns:
    ``[B, H]`` float32 variances. A head with no mass on the chosen tokens gets 0.

  Raises:
    ValueError: naming ``variance_scale`` or ``num_prefix`` when invalid.
  """
  if variance_scale not in VARIANCE_SCALES:
    raise ValueError(f"Unknown variance_scale {variance_scale!r}; valid: {list(VARIANCE_SCALES)}")
  if not 0 <= num_prefix < s.shape[-1]:
    raise ValueError(f"num_prefix={num_prefix} must lie in [0, {s.shape[-1] - 1}]")
  s = s.astype(jnp.float32)
  if not include_cls:
    s = s[..., num_prefix:]  # [B, H, N']
  if variance_scale == "mean_one":
    mean = s.mean(axis=-1, keepdims=True)  # [B, H, 1]
    s = jnp.where(mean > 0, s / jnp.where(mean > 0, mean, 1.0), 0.0)
  return s.var(axis=-1)  # [B, H]


def vhf_mask(
  s: jax.Array,
  v_range: Sequence[float] | jax.Array = DEFAULT_V_RANGE,
  **variance_kwargs,
) -> jax.Array:
  """Which heads pass the variance filter, before any fallback (Zero-TPrune, VHF).

  Args:
    s: ``[B, H, N]`` per-head scores.
    v_range: ``(v_min, v_max)``, inclusive; Python floats or a traced ``[2]`` array.
    **variance_kwargs: ``num_prefix``, ``include_cls``, ``variance_scale`` as in
      :func:`head_variance`.

  Returns:
    ``[B, H]`` bool.
  """
  v = head_variance(s, **variance_kwargs)  # [B, H]
  v_min = jnp.asarray(v_range[0], jnp.float32)
  v_max = jnp.asarray(v_range[1], jnp.float32)
  return (v >= v_min) & (v <= v_max)


def head_pass_fraction(
  s: jax.Array,
  v_range: Sequence[float] | jax.Array = DEFAULT_V_RANGE,
  **variance_kwargs,
) -> jax.Array:
  """Fraction of heads that pass VHF per image, before the all-heads fallback.

  For reporting how selective the filter is on a real model.

  Args:
    s: ``[B, H, N]`` per-head scores.
    v_range: ``(v_min, v_max)`` as in :func:`vhf_mask`.
    **variance_kwargs: as in :func:`head_variance`.

  Returns:
    ``[B]`` float32 in ``[0, 1]``.
  """
  return vhf_mask(s, v_range, **variance_kwargs).mean(axis=-1, dtype=jnp.float32)


def eir(s: jax.Array) -> jax.Array:
  """EIR: root-mean-square over heads (Zero-TPrune, I-stage).

  Args:
    s: ``[B, H, N]`` per-head scores.

  Returns:
    ``[B, N]`` float32, ``sqrt(mean_h s[:, h]²)``.
  """
  s = s.astype(jnp.float32)
  return jnp.sqrt(jnp.mean(jnp.square(s), axis=1))


def reduce_heads(
  s: jax.Array,
  method: str = "rms",
  *,
  vhf: bool = False,
  v_range: Sequence[float] | jax.Array = DEFAULT_V_RANGE,
  variance_scale: str = "mean_one",
  include_cls: bool = False,
  num_prefix: int = 1,
) -> jax.Array:
  """Combines per-head scores into one score per token.

  ``method="mean"`` is plain WPR's head average; ``"rms"`` is EIR. With ``vhf=True``
  the mean/RMS runs over the heads that pass :func:`vhf_mask` only, or over all heads
  of an image where none passes (Zero-TPrune, EIR + VHF).

  Args:
    s: ``[B, H, N]`` per-head scores.
    method: ``"mean"`` or ``"rms"`` (static).
    vhf: apply the variance-based head filter (static).
    v_range: VHF ``(v_min, v_max)``; may be traced, so sweeps do not recompile.
    variance_scale: see :func:`head_variance`.
    include_cls: see :func:`head_variance`.
    num_prefix: see :func:`head_variance`.

  Returns:
    ``[B, N]`` float32 token scores (prefix tokens included; rankers skip them).

  Raises:
    ValueError: naming ``method`` (or a VHF option) when invalid.
  """
  if method not in HEAD_REDUCTIONS:
    raise ValueError(f"Unknown head reduction method {method!r}; valid: {list(HEAD_REDUCTIONS)}")
  s = s.astype(jnp.float32)
  if not vhf:
    return eir(s) if method == "rms" else s.mean(axis=1)
  keep = vhf_mask(
    s, v_range, num_prefix=num_prefix, include_cls=include_cls, variance_scale=variance_scale
  )  # [B, H]
  keep = keep | ~jnp.any(keep, axis=-1, keepdims=True)  # all-heads fallback
  w = keep.astype(jnp.float32)[..., None]  # [B, H, 1]
  n_kept = w.sum(axis=1)  # [B, 1], >= 1
  if method == "rms":
    return jnp.sqrt((w * jnp.square(s)).sum(axis=1) / n_kept)
  return (w * s).sum(axis=1) / n_kept
