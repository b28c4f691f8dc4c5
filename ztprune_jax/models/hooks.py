"""The token-transform hook: how pruning/merging methods wrap a ViT without forking it.

`VisionTransformer` calls a `TokenTransform` at two points of every block (after the
attention residual and after the MLP residual). A transform may change the number of
tokens; shapes stay static because every count is a Python int fixed at trace time.
The identity transform reproduces the plain model exactly, and a transformed model
uses the same parameter tree as the base model (it is the same linen module, cloned
with `token_transform=...`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

Array = jax.Array


class BlockOutput(NamedTuple):
  """What one block exposes to a transform, computed once in its attention.

  Attributes:
    x_in: ``[B, N, D]`` the block's input tokens.
    attn: ``[B, H, N, N]`` post-softmax attention probabilities (rows sum to 1).
    queries: ``[B, H, N, dh]`` per-head queries ``LN1(x) W_q``.
    keys: ``[B, H, N, dh]`` per-head keys ``LN1(x) W_k``.
    values: ``[B, H, N, dh]`` per-head values ``LN1(x) W_v``.
  """

  x_in: Array
  attn: Array
  queries: Array
  keys: Array
  values: Array


@dataclasses.dataclass(frozen=True)
class TokenTransform:
  """Identity transform; subclass and override the hooks you need.

  A transform is static configuration (hashable, frozen). Per-example state (token
  sizes, kept indices) flows through the hooks as a pytree.
  """

  def init_state(self, x: Array, num_prefix: int, args: Any = None) -> Any:
    """Returns the initial state for tokens ``x`` ``[B, N, D]``.

    ``args`` is whatever the caller passed as ``model.apply(..., transform_args=...)``:
    traced per-call inputs such as numeric hyperparameters or a PRNG key, so that
    changing them does not recompile.
    """
    del x, num_prefix, args
    return None

  def attn_bias(self, layer: int, state: Any) -> Array | None:
    """Additive attention-logit bias ``[B, N]`` on keys (e.g. ToMe's log size)."""
    del layer, state
    return None

  def after_attention(
    self, layer: int, x: Array, out: BlockOutput, state: Any
  ) -> tuple[Array, Any]:
    """Runs between the attention residual and the MLP (ToMe merges here)."""
    del layer, out
    return x, state

  def after_block(self, layer: int, x: Array, out: BlockOutput, state: Any) -> tuple[Array, Any]:
    """Runs after the block's MLP residual (Zero-TPrune prunes here)."""
    del layer, out
    return x, state
