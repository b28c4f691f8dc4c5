"""Vision Transformer / DeiT in Flax linen (pre-norm, timm-compatible semantics).

One module covers timm's ViT (AugReg), DeiT and DeiT-distilled families and the small
CPU models of this project. Every block exposes its attention probabilities and
per-head q/k/v (`BlockOutput`) to an optional `TokenTransform`, which is how pruning
and merging methods wrap the model: `model.clone(token_transform=t)` has the same
parameter tree as `model`, and the identity transform gives the same logits.

Parameter tree (names are ours; `ztprune_jax.checkpoints` converts timm, Hugging Face
and big_vision checkpoints into it)::

  embed/{patch/{kernel,bias}, cls_token, dist_token?, pos_embed}
  block_{i}/{norm1, attn/{qkv,proj}, ls1?, norm2, mlp/{fc1,fc2}, ls2?}
  norm | fc_norm, head, head_dist?
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ztprune_jax.models import hooks, posemb

Array = jax.Array
Dtype = Any

# timm/HF ViTs use the exact (erf) GELU; flax's default is the tanh approximation.
exact_gelu = jax.tree_util.Partial(nn.gelu, approximate=False)


class Mlp(nn.Module):
  """Two-layer GELU MLP. ``[B, N, D] -> [B, N, D]``."""

  hidden_dim: int
  dtype: Dtype = jnp.float32
  activation: Callable[[Array], Array] = exact_gelu

  @nn.compact
  def __call__(self, x: Array) -> Array:
    width = x.shape[-1]
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x)
    x = self.activation(x)
    return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection.

  Returns the output and a `BlockOutput`-shaped record of ``attn [B, H, N, N]``
  (post-softmax, float32 softmax), ``q, k, v [B, H, N, dh]``. Unused records cost
  nothing under `jax.jit` (dead-code eliminated).
  """

  width: int
  num_heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, attn_bias: Array | None = None):
    """Args: ``x [B, N, D]``; ``attn_bias`` ``[B, N]`` added to logits per key, or None."""
    b, n, _ = x.shape
    h = self.num_heads
    dh = self.width // h
    qkv = nn.Dense(3 * self.width, dtype=self.dtype, name="qkv")(x)  # [B, N, 3D]
    qkv = qkv.reshape(b, n, 3, h, dh).transpose(2, 0, 3, 1, 4)  # [3, B, H, N, dh]
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = jnp.einsum("bhqd,bhkd->bhqk", q * (dh**-0.5), k)  # [B, H, N, N]
    logits = logits.astype(jnp.float32)
    if attn_bias is not None:
      if attn_bias.shape != (b, n):
        raise ValueError(f"attn_bias must be [B, N] = {(b, n)}, got {attn_bias.shape}")
      logits = logits + attn_bias[:, None, None, :].astype(jnp.float32)
    attn = jax.nn.softmax(logits, axis=-1)  # [B, H, N, N], float32
    out = jnp.einsum("bhqk,bhkd->bqhd", attn.astype(self.dtype), v).reshape(b, n, self.width)
    out = nn.Dense(self.width, dtype=self.dtype, name="proj")(out)
    return out, (attn, q, k, v)


class LayerScale(nn.Module):
  """Per-channel residual scale (CaiT/DINOv2). ``[..., D] -> [..., D]``."""

  init_value: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.initializers.constant(self.init_value), (x.shape[-1],))
    return x * scale.astype(x.dtype)


class Block(nn.Module):
  """Pre-norm Transformer block, callable in two halves so transforms can sit between."""

  width: int
  num_heads: int
  mlp_dim: int
  ln_eps: float = 1e-6
  layerscale_init: float | None = None
  dtype: Dtype = jnp.float32

  def setup(self):
    self.norm1 = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype)
    self.attn = Attention(self.width, self.num_heads, dtype=self.dtype)
    self.norm2 = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype)
    self.mlp = Mlp(self.mlp_dim, dtype=self.dtype)
    if self.layerscale_init is not None:
      self.ls1 = LayerScale(self.layerscale_init)
      self.ls2 = LayerScale(self.layerscale_init)

  def _scale(self, name: str, y: Array) -> Array:
    return getattr(self, name)(y) if self.layerscale_init is not None else y

  def attention_residual(
    self, x: Array, attn_bias: Array | None = None
  ) -> tuple[Array, hooks.BlockOutput]:
    """``x + Attn(LN1(x))``. Args: ``x [B, N, D]``, ``attn_bias [B, N]`` or None."""
    y, (attn, q, k, v) = self.attn(self.norm1(x), attn_bias)
    return x + self._scale("ls1", y), hooks.BlockOutput(x, attn, q, k, v)

  def mlp_residual(self, x: Array) -> Array:
    """``x + MLP(LN2(x))`` for ``x [B, N, D]``."""
    return x + self._scale("ls2", self.mlp(self.norm2(x)))

  def __call__(self, x: Array, attn_bias: Array | None = None):
    x, out = self.attention_residual(x, attn_bias)
    return self.mlp_residual(x), out


class Embedding(nn.Module):
  """Patchify, prepend CLS (and distillation) tokens, add learned positions.

  Images whose patch grid differs from the configured one get the position
  embedding resampled on the fly (torch-exact bicubic; static shapes under jit).
  """

  width: int
  patch_size: int
  image_size: int
  class_token: bool = True
  dist_token: bool = False
  pos_embed_antialias: bool = False
  dtype: Dtype = jnp.float32

  @property
  def num_prefix(self) -> int:
    return int(self.class_token) + int(self.dist_token)

  @nn.compact
  def __call__(self, images: Array) -> Array:
    """``images [B, H, W, C]`` (NHWC, normalised) -> tokens ``[B, P + h*w, D]``."""
    p = self.patch_size
    if images.ndim != 4:
      raise ValueError(f"images must be NHWC [B, H, W, C], got shape {images.shape}")
    if images.shape[1] % p or images.shape[2] % p:
      raise ValueError(f"image size {images.shape[1:3]} is not divisible by patch size {p}")
    x = nn.Conv(
      self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="patch"
    )(images)
    b, gh, gw, d = x.shape
    x = x.reshape(b, gh * gw, d)
    init = nn.initializers.normal(0.02)
    prefix = []
    if self.class_token:
      prefix.append(self.param("cls_token", nn.initializers.zeros, (1, 1, d)))
    if self.dist_token:
      prefix.append(self.param("dist_token", init, (1, 1, d)))
    grid = self.image_size // p
    pos = self.param("pos_embed", init, (1, self.num_prefix + grid * grid, d))
    pos = posemb.resample_pos_embed(
      pos, (gh, gw), self.num_prefix, (grid, grid), antialias=self.pos_embed_antialias
    )
    if prefix:
      tokens = [jnp.broadcast_to(t, (b, 1, d)).astype(x.dtype) for t in prefix]
      x = jnp.concatenate([*tokens, x], axis=1)
    return x + pos.astype(x.dtype)


class VisionTransformer(nn.Module):
  """ViT/DeiT classifier. ``images [B, H, W, C] -> logits [B, num_classes]``.

  Attributes:
    num_classes: classifier outputs; 0 returns the pooled features ``[B, D]``.
    patch_size, image_size: the patch grid the position embedding is trained for.
    width, depth, num_heads, mlp_dim: Transformer size.
    class_token: prepend a CLS token. dist_token: prepend a distillation token
      (DeiT-distilled; the two heads are averaged at inference, as timm does).
    global_pool: ``"token"`` (CLS output) or ``"avg"`` (mean of non-prefix tokens).
    fc_norm: normalise after pooling instead of before (timm's default for ``avg``);
      None picks timm's default.
    ln_eps: LayerNorm epsilon (1e-6 for timm; Hugging Face ViT uses 1e-12).
    layerscale_init: enables LayerScale with this initial value.
    pos_embed_antialias: torch ``antialias`` flag used when resampling positions.
    in_channels: image channels ``C`` the patch embedding expects (1 for grey images).
    dtype: computation dtype (params stay float32; softmax runs in float32).
    token_transform: optional hook applied inside every block (pruning/merging).
  """

  num_classes: int = 1000
  patch_size: int = 16
  image_size: int = 224
  width: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_dim: int = 1536
  class_token: bool = True
  dist_token: bool = False
  global_pool: str = "token"
  fc_norm: bool | None = None
  ln_eps: float = 1e-6
  layerscale_init: float | None = None
  pos_embed_antialias: bool = False
  in_channels: int = 3
  dtype: Dtype = jnp.float32
  token_transform: hooks.TokenTransform | None = None

  @property
  def num_prefix_tokens(self) -> int:
    return int(self.class_token) + int(self.dist_token)

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @property
  def use_fc_norm(self) -> bool:
    return self.global_pool == "avg" if self.fc_norm is None else self.fc_norm

  @nn.compact
  def __call__(self, images: Array, return_state: bool = False, transform_args: Any = None):
    """Classifies images.

    Args:
      images: ``[B, H, W, C]`` NHWC, normalised.
      return_state: also return the token transform's final state (e.g. kept indices).
      transform_args: traced inputs for the token transform (hyperparameters, PRNG key).

    Returns:
      logits ``[B, num_classes]`` (features ``[B, D]`` if ``num_classes == 0``), and the
      transform state when ``return_state``.
    """
    _validate(self)
    if images.ndim == 4 and images.shape[-1] != self.in_channels:
      raise ValueError(
        f"images have {images.shape[-1]} channels, the model expects in_channels="
        f"{self.in_channels} (NHWC [B, H, W, C])"
      )
    x = Embedding(
      self.width,
      self.patch_size,
      self.image_size,
      self.class_token,
      self.dist_token,
      self.pos_embed_antialias,
      dtype=self.dtype,
      name="embed",
    )(images)
    t = self.token_transform or hooks.TokenTransform()
    state = t.init_state(x, self.num_prefix_tokens, transform_args)
    for i in range(self.depth):
      block = Block(
        self.width,
        self.num_heads,
        self.mlp_dim,
        self.ln_eps,
        self.layerscale_init,
        dtype=self.dtype,
        name=f"block_{i}",
      )
      x, out = block.attention_residual(x, t.attn_bias(i, state))
      x, state = t.after_attention(i, x, out, state)
      x = block.mlp_residual(x)
      x, state = t.after_block(i, x, out, state)
    logits = self._classify(x)
    return (logits, state) if return_state else logits

  def _classify(self, x: Array) -> Array:
    """Final norm, pooling and head(s): ``[B, N', D] -> [B, classes]`` (or ``[B, D]``)."""
    p = self.num_prefix_tokens
    norm = functools.partial(nn.LayerNorm, epsilon=self.ln_eps, dtype=self.dtype)
    if not self.use_fc_norm:
      x = norm(name="norm")(x)
    pooled = x[:, p:].mean(axis=1) if self.global_pool == "avg" else x[:, 0]
    if self.use_fc_norm:
      pooled = norm(name="fc_norm")(pooled)
    if not self.num_classes:
      return pooled
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(pooled)
    if self.dist_token:
      dist = nn.Dense(self.num_classes, dtype=self.dtype, name="head_dist")(x[:, 1])
      logits = (logits + dist) / 2
    return logits


def _validate(m: VisionTransformer) -> None:
  """Raises ValueError naming the first invalid field of a VisionTransformer."""
  positive = ("patch_size", "image_size", "width", "depth", "num_heads", "mlp_dim", "in_channels")
  for name in positive:
    if getattr(m, name) < 1:
      raise ValueError(f"VisionTransformer.{name} must be >= 1, got {getattr(m, name)}")
  if m.num_classes < 0:
    raise ValueError(f"VisionTransformer.num_classes must be >= 0, got {m.num_classes}")
  if m.width % m.num_heads:
    raise ValueError(f"width {m.width} is not divisible by num_heads {m.num_heads}")
  if m.image_size % m.patch_size:
    raise ValueError(f"image_size {m.image_size} is not divisible by patch_size {m.patch_size}")
  if m.global_pool not in ("token", "avg"):
    raise ValueError(f"global_pool must be 'token' or 'avg', got {m.global_pool!r}")
  if m.global_pool == "token" and not m.class_token:
    raise ValueError("global_pool='token' needs class_token=True")
  if m.dist_token and not m.class_token:
    raise ValueError("dist_token=True needs class_token=True")
