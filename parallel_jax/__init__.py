"""parallel_jax: data parallelism over every device (and host) with `jax.sharding`.

Generic device code shared by `ztprune_jax` (evaluation, training) and `eml_jax`
(independent runs batched over the mesh); neither package depends on the other for it.
`sharding` holds the one-axis ``"data"`` mesh, the batch and replicated shardings,
padded/masked host batches, stacked runs and `data_parallel`. Use it as a namespace::

  import parallel_jax as parallel

  mesh = parallel.make_mesh()
  step = parallel.data_parallel(mesh, eval_step, batch_argnums=(1,))
"""

from parallel_jax import sharding
from parallel_jax.sharding import (
  DATA_AXIS,
  batch_sharding,
  data_parallel,
  host_batch_slice,
  initialize_distributed,
  local_multiple,
  make_mesh,
  masked_sum,
  pad_batch,
  replicate,
  replicated_sharding,
  shard_batch,
  stack_trees,
  unstack_tree,
)

__all__ = [
  "DATA_AXIS",
  "batch_sharding",
  "data_parallel",
  "host_batch_slice",
  "initialize_distributed",
  "local_multiple",
  "make_mesh",
  "masked_sum",
  "pad_batch",
  "replicate",
  "replicated_sharding",
  "shard_batch",
  "sharding",
  "stack_trees",
  "unstack_tree",
]
