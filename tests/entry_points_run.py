"""Runs an experiment entry point in a subprocess from the repository root, as a user would."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
  """``python -m module *args`` in the repository root; stdout/stderr captured as text."""
  cmd = [sys.executable, "-m", module, *args]
  return subprocess.run(
    cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ}
  )


def run_ok(module: str, *args: str, timeout: int = 600) -> str:
  """`run_module`, asserting exit status 0 (the output tails in the message); its stdout."""
  proc = run_module(module, *args, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc.stdout
