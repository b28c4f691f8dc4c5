r"""Runs an experiment on every worker of a Cloud TPU VM (pod slice) through `gcloud`.

Prints, then executes (unless ``--dry_run``), one ``gcloud compute tpus tpu-vm ssh
--worker=all`` command per step:

1. ``--setup``: clone (or update) the repository on every worker and install it with the
   ``tpu`` extra (``jax[tpu]``) into ``.venv``.
2. run: ``python -m <module> --distributed <args after -->`` on every worker at once;
   ``--distributed`` makes the entry point call `jax.distributed.initialize()`, so all
   hosts join one JAX runtime and `parallel_jax` shards over every chip.

Example (prints the commands only)::

  python -m experiments.launch_tpu --tpu=my-v4-32 --zone=us-central2-b --setup \
    --repo=https://github.com/<you>/ztprune-jax.git \
    --module=experiments.evaluate --dry_run -- \
    --config=configs/eval.py:imagenet_deit_s --config.method=zero_tprune

Every worker must see the data (e.g. ImageNet in a GCS-fused or per-host ``manual_dir``);
each host reads only its slice (`parallel_jax.host_batch_slice`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence

from absl import flags

from experiments import cli

_TPU = flags.DEFINE_string("tpu", None, "TPU VM (pod slice) name.")
_ZONE = flags.DEFINE_string("zone", None, "GCP zone of the TPU VM.")
_PROJECT = flags.DEFINE_string("project", None, "GCP project (default: gcloud's).")
_MODULE = flags.DEFINE_string("module", "experiments.evaluate", "Entry point to run.")
_REPO = flags.DEFINE_string("repo", None, "Git URL of this repository (needed by --setup).")
_REF = flags.DEFINE_string("ref", "main", "Branch or commit checked out by --setup.")
_DIR = flags.DEFINE_string("remote_dir", "ztprune-jax", "Checkout directory on the workers.")
_SETUP = flags.DEFINE_bool("setup", False, "Clone/update and install before running.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands without running them.")

_ENTRY_POINTS = (
  "experiments.evaluate",
  "experiments.sweep",
  "experiments.train",
  "experiments.search_schedule",
  "experiments.eml_benchmark",
)


def ssh_command(tpu: str, zone: str, project: str | None, remote: str) -> list[str]:
  """The ``gcloud ... ssh --worker=all --command=<remote>`` argv."""
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}", "--worker=all"]
  if project:
    cmd.append(f"--project={project}")
  return [*cmd, f"--command={remote}"]


def setup_script(repo: str, ref: str, remote_dir: str) -> str:
  """Shell run on every worker: clone or update the repo, install with ``[tpu]``."""
  d, r = shlex.quote(remote_dir), shlex.quote(ref)
  return (
    f"set -e; [ -d {d}/.git ] || git clone -q {shlex.quote(repo)} {d}; "
    f"git -C {d} fetch -q origin {r}; git -C {d} checkout -q FETCH_HEAD; "
    f"cd {d} && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
  )


def run_script(remote_dir: str, module: str, args: Sequence[str]) -> str:
  """Shell run on every worker: the entry point with ``--distributed`` and ``args``."""
  argv = " ".join(shlex.quote(a) for a in args)
  return f"cd {shlex.quote(remote_dir)} && .venv/bin/python -m {module} --distributed {argv}"


def build_commands(
  tpu: str,
  zone: str,
  module: str,
  args: Sequence[str],
  *,
  project: str | None = None,
  setup: bool = False,
  repo: str | None = None,
  ref: str = "main",
  remote_dir: str = "ztprune-jax",
) -> list[list[str]]:
  """All gcloud argvs for one launch, in order.

  Raises:
    ValueError: missing TPU name or zone, ``setup`` without ``repo``, or a module that is
      not an entry point.
  """
  if not tpu or not zone:
    raise ValueError("--tpu and --zone are required")
  if module not in _ENTRY_POINTS:
    raise ValueError(f"--module must be one of {list(_ENTRY_POINTS)}, got {module!r}")
  cmds = []
  if setup and not repo:
    raise ValueError("--setup needs --repo (the git URL the workers clone)")
  if setup:
    cmds.append(ssh_command(tpu, zone, project, setup_script(repo, ref, remote_dir)))
  cmds.append(ssh_command(tpu, zone, project, run_script(remote_dir, module, args)))
  return cmds


def main(argv: Sequence[str]) -> None:
  cmds = build_commands(
    _TPU.value, _ZONE.value, _MODULE.value, argv[1:], project=_PROJECT.value,
    setup=_SETUP.value, repo=_REPO.value, ref=_REF.value, remote_dir=_DIR.value,
  )  # fmt: skip
  for cmd in cmds:
    print(shlex.join(cmd), flush=True)
    if not _DRY_RUN.value:
      subprocess.run(cmd, check=True)
  if _DRY_RUN.value:
    print(f"dry_run: {len(cmds)} command(s) not executed", file=sys.stderr)


if __name__ == "__main__":
  cli.run(main)
