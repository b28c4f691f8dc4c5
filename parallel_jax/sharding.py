"""Data parallelism over all devices (and hosts) with `jax.sharding`.

One mesh axis, ``"data"``: batches are split along it, parameters are replicated. Each
host loads only its own slice of every global batch (`host_batch_slice`), pads it to a
multiple of its local devices with a mask (`pad_batch`), and `shard_batch` assembles the
global array with `jax.make_array_from_process_local_data`. A function jitted with
`data_parallel` then runs on every device at once; reductions over the batch axis inside
it are global (XLA inserts the all-reduce). Independent runs (e.g. the seeds of a benchmark)
batch the same way: `stack_trees` stacks their states on a leading axis (padded to a
multiple of the mesh), a `jax.vmap` of the per-run function goes through `data_parallel`,
and `unstack_tree` splits the result again.

Typical use::

  mesh = parallel.make_mesh()
  params = parallel.replicate(mesh, params)
  step = parallel.data_parallel(mesh, eval_step, batch_argnums=(1,))
  batch, mask = parallel.pad_batch(local_batch, parallel.local_multiple(mesh))
  out = step(params, parallel.shard_batch(mesh, (batch, mask)))

Multi-host (a TPU pod slice): call `initialize_distributed(True)` before any other JAX
call on every host (`experiments/launch_tpu.py` does that through a flag).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(enabled: bool, **kwargs) -> None:
  """Calls `jax.distributed.initialize(**kwargs)` when ``enabled`` (multi-host runs).

  On Cloud TPU VMs the coordinator address and process ids are discovered
  automatically; elsewhere pass ``coordinator_address``, ``num_processes``,
  ``process_id``. Must run before the first JAX computation.
  """
  if enabled:
    jax.distributed.initialize(**kwargs)


def make_mesh(num_devices: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
  """A 1-D mesh named ``"data"`` over ``num_devices`` (default: all) devices.

  Raises:
    ValueError: ``num_devices`` is not in ``[1, jax.device_count()]``.
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"num_devices must lie in [1, {len(devices)}], got {num_devices}")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``"data"``; other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places a pytree (e.g. params) on every device of ``mesh``."""
  return jax.device_put(tree, replicated_sharding(mesh))


def local_multiple(mesh: Mesh) -> int:
  """Number of this host's devices in ``mesh``: a host batch must be a multiple of it."""
  return sum(d.process_index == jax.process_index() for d in mesh.devices.flat)


def host_batch_slice(
  global_batch_size: int, process_index: int | None = None, process_count: int | None = None
) -> slice:
  """The rows of a global batch that host ``process_index`` loads.

  Raises:
    ValueError: the global batch does not split evenly over hosts.
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} outside [0, {count})")
  if global_batch_size % count:
    raise ValueError(
      f"global batch size {global_batch_size} is not divisible by process_count {count}"
    )
  per_host = global_batch_size // count
  return slice(index * per_host, (index + 1) * per_host)


def pad_batch(batch: Any, multiple: int) -> tuple[Any, np.ndarray]:
  """Pads every leaf's leading axis to a multiple of ``multiple`` with zeros.

  Args:
    batch: pytree of arrays sharing the leading size ``B``.
    multiple: e.g. `local_multiple(mesh)`.

  Returns:
    ``(padded, mask)``: leaves ``[B', ...]`` with ``B' = ceil(B / multiple) · multiple``,
    and a bool mask ``[B']`` that is True on the ``B`` real rows. Padded rows are kept
    (never dropped) and must be masked out of every reduction.

  Raises:
    ValueError: leaves disagree on ``B``, or ``multiple < 1``.
  """
  if multiple < 1:
    raise ValueError(f"multiple must be >= 1, got {multiple}")
  leaves = jax.tree.leaves(batch)
  sizes = {np.shape(x)[0] for x in leaves}
  if len(sizes) != 1:
    raise ValueError(f"batch leaves disagree on the leading (batch) size: {sorted(sizes)}")
  (b,) = sizes
  pad = -b % multiple

  def _pad(x):
    x = np.asarray(x)
    return np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x

  mask = np.arange(b + pad) < b
  return jax.tree.map(_pad, batch), mask


def stack_trees(trees: Sequence[Any], multiple: int = 1) -> Any:
  """Stacks pytrees of equal structure and shapes on a new leading (run) axis.

  For running independent runs as one batch (`jax.vmap` over the leading axis, split over
  ``"data"`` with `data_parallel`). The run count is padded to a multiple of
  ``multiple`` by repeating the last tree: padded runs are real, finite computations
  (no zeros that could produce NaNs or slow an iterative solver), dropped by
  `unstack_tree`.

  Args:
    trees: ``n`` pytrees with the same structure and leaf shapes (PRNG key leaves too).
    multiple: e.g. ``mesh.size``.

  Returns:
    One pytree with leaves ``[n', ...]``, ``n' = ceil(n / multiple) · multiple``.

  Raises:
    ValueError: no trees, ``multiple < 1``, or the trees differ in structure or shapes.
  """
  trees = list(trees)
  if not trees or multiple < 1:
    raise ValueError(f"need at least one tree and multiple >= 1; got {len(trees)}, {multiple}")
  shapes = [jax.tree.map(jnp.shape, t) for t in trees]
  if any(s != shapes[0] for s in shapes[1:]):
    bad = next(i for i, s in enumerate(shapes) if s != shapes[0])
    raise ValueError(f"tree {bad} differs from tree 0 in structure or shapes: cannot stack")
  trees += [trees[-1]] * (-len(trees) % multiple)
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack_tree(tree: Any, n: int | None = None) -> list[Any]:
  """The first ``n`` (default: all) entries of a pytree's leading axis, as a list of pytrees.

  Inverse of `stack_trees` (``n`` drops its padding).
  """
  size = jax.tree.leaves(tree)[0].shape[0]
  n = size if n is None else n
  if not 0 <= n <= size:
    raise ValueError(f"cannot take {n} entries from a leading axis of {size}")
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def shard_batch(mesh: Mesh, host_batch: Any) -> Any:
  """Assembles global arrays from every host's local rows, split over ``"data"``.

  Args:
    mesh: from `make_mesh`.
    host_batch: pytree of this host's arrays ``[B_host, ...]``, ``B_host`` a multiple of
      `local_multiple(mesh)` (use `pad_batch`).

  Returns:
    The same pytree of `jax.Array` with global leading size ``B_host · process_count``.
  """
  sharding = batch_sharding(mesh)
  n = local_multiple(mesh)

  def _put(x):
    x = np.asarray(x)
    if x.shape[0] % n:
      raise ValueError(
        f"host batch of {x.shape[0]} rows does not split over {n} local devices; "
        "pad it with parallel.pad_batch"
      )
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(_put, host_batch)


def data_parallel(
  mesh: Mesh,
  fn: Callable[..., Any],
  batch_argnums: Sequence[int],
  *,
  batch_outputs: bool = False,
  static_argnums: Sequence[int] = (),
  donate_argnums: Sequence[int] = (),
) -> Callable[..., Any]:
  """``jax.jit(fn)`` with batch arguments split over ``"data"`` and the rest replicated.

  Args:
    mesh: from `make_mesh`.
    fn: a pure function; positional arguments listed in ``batch_argnums`` are pytrees of
      ``[B, ...]`` arrays, the others (params, hyper-parameters) are replicated.
    batch_argnums: positions of the batch arguments.
    batch_outputs: True when every output leaf is per-example ``[B, ...]`` (e.g. logits,
      kept split); False for reduced outputs (sums, metrics), replicated.
    static_argnums: forwarded to `jax.jit`.
    donate_argnums: forwarded to `jax.jit` (e.g. a train state updated in place).

  Returns:
    The jitted function. It compiles once per input shapes, like `jax.jit`.
  """
  batch_argnums = tuple(batch_argnums)
  static_argnums = tuple(static_argnums)

  def wrapped(*args):
    args = list(args)
    for i in batch_argnums:
      args[i] = jax.lax.with_sharding_constraint(args[i], batch_sharding(mesh))
    return fn(*args)

  out_sharding = batch_sharding(mesh) if batch_outputs else replicated_sharding(mesh)
  return jax.jit(
    wrapped,
    out_shardings=out_sharding,
    static_argnums=static_argnums,
    donate_argnums=tuple(donate_argnums),
  )


def masked_sum(values: jax.Array, mask: jax.Array) -> jax.Array:
  """``Σ values[mask]`` over the leading axis, for reductions over a padded batch.

  Args:
    values: ``[B, ...]``.
    mask: ``[B]`` bool.
  """
  m = mask.reshape(mask.shape + (1,) * (values.ndim - 1))
  return jnp.sum(jnp.where(m, values, 0), axis=0)
