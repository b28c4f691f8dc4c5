"""Smoke tests of experiments/bench_pruning.py's issue-14 modes in `runlocal` (seconds idle)."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(arg, *flags):
  cmd = [
    sys.executable,
    "-m",
    "experiments.bench_pruning",
    f"--config=configs/bench_pruning.py:{arg}",
  ]
  proc = subprocess.run(
    [*cmd, *flags], cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ}
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  return proc.stdout.strip().splitlines()


def test_methods_prints_ratio_to_random_on_the_same_schedule():
  lines = _run("runlocal,methods", "--config.methods=tome,zero_tprune")
  assert any(line.startswith("random ") for line in lines)  # added for zero_tprune
  ratio = [line for line in lines if line.startswith("zero_tprune_over_random_same_schedule=")]
  assert len(ratio) == 1 and float(ratio[0].split("=")[1]) > 0
  assert lines[-1].startswith("zero_tprune_over_tome_throughput=")


def test_profile_lists_every_part_of_the_layer():
  lines = _run("runlocal,profile")
  rows = [
    line.split("|")[1].strip() for line in lines if line.startswith("| ") and "---" not in line
  ]
  assert rows[0] == "part"
  assert {"I' WPR", "I-stage WPR (mask + iterations)", "whole layer"} <= set(rows)
  assert lines[-2].startswith("layer_over_block=") and float(lines[-2].split("=")[1]) > 0
  share, tol = lines[-1].split()
  assert share.startswith("heads_converged_within_cap=") and tol == "tol=1e-05"
  assert 0.0 <= float(share.split("=")[1]) <= 1.0


def test_agreement_reference_agrees_with_itself():
  lines = _run("runlocal,agreement")
  rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
  assert rows["paper_exact"].split("|")[3].strip() == "100.00"  # min over layers
  assert "warm50" in rows
