"""`experiments.launch_tpu`: the gcloud commands it would run (``--dry_run``), and errors."""

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from experiments import launch_tpu


def test_commands_target_every_worker_and_quote_args():
  cmds = launch_tpu.build_commands(
    "pod", "us-central2-b", "experiments.evaluate", ["--config=configs/eval.py:x", "--a=b c"],
    project="proj", setup=True, repo="https://example.org/r.git", ref="abc123",
  )  # fmt: skip
  assert len(cmds) == 2
  for cmd in cmds:
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert "--worker=all" in cmd and "--zone=us-central2-b" in cmd and "--project=proj" in cmd
  setup = cmds[0][-1].removeprefix("--command=")
  assert "git clone -q https://example.org/r.git ztprune-jax" in setup
  assert "fetch -q origin abc123" in setup and "'.[tpu]'" in setup
  run = cmds[1][-1].removeprefix("--command=")
  assert shlex.split(run)[-4:] == [
    "experiments.evaluate",
    "--distributed",
    "--config=configs/eval.py:x",
    "--a=b c",
  ]


def test_bad_launches_raise():
  with pytest.raises(ValueError, match="--tpu and --zone"):
    launch_tpu.build_commands("", "z", "experiments.evaluate", [])
  with pytest.raises(ValueError, match="--module"):
    launch_tpu.build_commands("t", "z", "experiments.nope", [])
  with pytest.raises(ValueError, match="--repo"):
    launch_tpu.build_commands("t", "z", "experiments.evaluate", [], setup=True)


def test_dry_run_prints_and_executes_nothing():
  res = subprocess.run(
    [sys.executable, "-m", "experiments.launch_tpu", "--tpu=t", "--zone=z", "--dry_run",
     "--module=experiments.sweep", "--", "--config=configs/sweep.py:runlocal"],
    capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert res.returncode == 0, res.stderr
  (line,) = res.stdout.strip().splitlines()
  assert shlex.split(line)[-1].endswith(
    "-m experiments.sweep --distributed --config=configs/sweep.py:runlocal"
  )
  assert "not executed" in res.stderr


@pytest.mark.parametrize("module", launch_tpu._ENTRY_POINTS)
def test_launched_entry_points_accept_distributed(module):
  """`launch_tpu` passes `--distributed`: every entry point it launches must define it."""
  path = pathlib.Path(__file__).resolve().parents[1] / (module.replace(".", "/") + ".py")
  text = path.read_text()
  assert re.search(r"^from experiments import (.*, )?common\b", text, re.M), module
  assert "common.setup_runtime()" in text or "common.start(" in text  # start() calls it
