"""Every config-driven entry point refuses a misspelt `--config.<field>` with one line naming it.

Runs each `python -m experiments.X` in a subprocess, as a user would; parsing fails before
any work starts, so each run costs only the imports.
"""

import importlib
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY_POINTS = sorted(
  p.stem for p in (ROOT / "experiments").glob("*.py") if "DEFINE_config_file" in p.read_text()
)


def _default_config(module: str) -> str:
  m = re.search(r'DEFINE_config_file\(\s*"config",\s*"([^"]+)"', (ROOT / "experiments" /
                f"{module}.py").read_text())  # fmt: skip
  return m.group(1) if m else f"configs/{module}.py"


def test_every_experiment_is_config_driven():
  assert {"demo", "evaluate", "sweep", "train"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_misspelt_override_is_refused_with_the_close_match(module):
  config_file = _default_config(module)
  name = pathlib.Path(config_file).stem
  fields = importlib.import_module(f"configs.{name}").get_config("runlocal").keys()
  field = max(fields, key=len)
  typo = field[:-1]  # one letter short: difflib's closest match is the real field
  proc = subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", f"--config={config_file}:runlocal",
     f"--config.{typo}=1"],
    cwd=ROOT, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 1
  assert f'Did you mean "{field}"' in proc.stderr, proc.stderr[-2000:]
  # One clear line naming the override, not a traceback through ml_collections.
  assert f"FATAL config override error in --config.{typo}=1" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_unknown_flag_and_bad_value_exit_with_a_message():
  for extra in ("--wrokdir=/tmp/x", "--config.k=abc"):
    proc = subprocess.run(
      [sys.executable, "-m", "experiments.eml_benchmark",
       "--config=configs/eml_benchmark.py:runlocal", extra],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FATAL" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
