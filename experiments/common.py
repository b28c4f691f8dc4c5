"""Flags and start-up shared by every entry point.

``--distributed`` calls `jax.distributed.initialize()` before any computation, for
multi-host runs (a TPU pod slice launched by `experiments.launch_tpu`); on one host it is
off and nothing changes.
"""

from absl import app, flags

import parallel_jax as parallel

_DISTRIBUTED = flags.DEFINE_bool(
  "distributed", False, "Join a multi-host JAX runtime (jax.distributed.initialize())."
)


def setup_runtime() -> None:
  """Call first in every ``main``: initialises multi-host JAX when ``--distributed``."""
  parallel.initialize_distributed(_DISTRIBUTED.value)


def start(config_flag, workdir_flag) -> tuple:
  """The start of every ``main`` with a config and a required ``--workdir``.

  Initialises the runtime (`setup_runtime`) and returns ``(config, workdir)``.

  Raises:
    app.UsageError: ``--workdir`` was not given.
  """
  setup_runtime()
  if not workdir_flag.value:
    raise app.UsageError("--workdir is required")
  return config_flag.value, workdir_flag.value
