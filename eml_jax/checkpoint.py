"""Checkpoint and resume of a stream mid-stage with orbax.

The checkpoint holds the whole `EMLState` (the PRNG key stored as its raw key data) plus
the host-side position ``(stage, position)``; restoring and continuing the scan gives
bit-identical results to an uninterrupted run (tested).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from eml_jax import learner as learner_lib


def _to_saveable(state: learner_lib.EMLState) -> dict[str, jax.Array]:
  """Non-empty leaves by their path (orbax cannot store zero-size arrays)."""
  state = state.replace(key=jax.random.key_data(state.key))
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  return {jax.tree_util.keystr(p): v for p, v in flat if np.size(v)}


def save(path: str, state: learner_lib.EMLState, *, stage: int, position: int) -> None:
  """Writes ``state`` and the stream position to directory ``path`` (overwrites).

  Args:
    path: checkpoint directory (absolute or relative; made absolute for orbax).
    state: the learner state.
    stage: index of the current stage.
    position: instances of the current stage already consumed.
  """
  item = {
    "state": _to_saveable(state),
    "stage": np.asarray(stage, np.int64),
    "position": np.asarray(position, np.int64),
  }
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(path), item, force=True)
    ckptr.wait_until_finished()


def restore(path: str, like: learner_lib.EMLState):
  """Reads a checkpoint written by `save`.

  Args:
    path: checkpoint directory.
    like: a state with the same shapes (e.g. from `init_state` / `advance`), giving
      the target structure.

  Returns:
    ``(state, stage, position)``.

  Raises:
    ValueError: the checkpoint's shapes do not match ``like``.
  """
  target = {
    "state": jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _to_saveable(like)),
    "stage": jax.ShapeDtypeStruct((), np.int64),
    "position": jax.ShapeDtypeStruct((), np.int64),
  }
  with ocp.StandardCheckpointer() as ckptr:
    meta = ckptr.metadata(os.path.abspath(path))
    saved_meta = getattr(meta, "item_metadata", meta)["state"]
    want = target["state"]
    if set(saved_meta.keys()) != set(want):
      raise ValueError(f"checkpoint at {path} holds leaves {sorted(saved_meta.keys())}, "
                       f"expected {sorted(want)}")  # fmt: skip
    for name, spec in want.items():
      if tuple(saved_meta[name].shape) != tuple(spec.shape):
        raise ValueError(f"checkpoint leaf {name} has shape {tuple(saved_meta[name].shape)}, "
                         f"expected {tuple(spec.shape)}")  # fmt: skip
    item = ckptr.restore(os.path.abspath(path), target)
  saved = item["state"]
  like_raw = like.replace(key=jax.random.key_data(like.key))
  paths, treedef = jax.tree_util.tree_flatten_with_path(like_raw)
  leaves = []
  for p, want in paths:
    name = jax.tree_util.keystr(p)
    got = saved.get(name, want) if np.size(want) else want
    if got.shape != want.shape:
      raise ValueError(f"checkpoint leaf {name} has shape {got.shape}, expected {want.shape}")
    leaves.append(jnp.asarray(got))
  st = jax.tree_util.tree_unflatten(treedef, leaves)
  st = st.replace(key=jax.random.wrap_key_data(st.key))
  return st, int(item["stage"]), int(item["position"])
