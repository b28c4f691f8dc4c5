"""configs/eml.py presets, the run_lib boundary, and the bench's runlocal smoke run."""

import itertools
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from configs import eml as eml_config
from eml_jax import run_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC_FIELDS = (
  "eta margin mu gamma nu rho eps_scale lam_21 lam_nuc hist_temp mem_size n_neg res_size "
  "rank rank_frac standardize use_tstage use_inherit reading"
).split()


@pytest.mark.parametrize("dataset", sorted(eml_config.DATASETS))
def test_every_documented_arg_builds(dataset):
  for reading, shots, ablation, extra in itertools.product(
    "AB", ("one", "multi"), eml_config.ABLATIONS, ("", ",lowrank", ",runlocal")
  ):
    c = eml_config.get_config(
      f"dataset={dataset},reading={reading},shots={shots},ablation={ablation}{extra}"
    )
    assert c.is_locked and c.reading == reading and c.stream.shots == shots
    for f in SPEC_FIELDS:
      assert f in c, f
    assert {"threshold", "max_iterations", "lse_mode", "momentum"} <= set(c.sinkhorn)
  with pytest.raises(ValueError, match="valid"):
    eml_config.get_config("dataset=imagenet")
  with pytest.raises(ValueError, match="ablation"):
    eml_config.get_config("ablation=no_everything")


def test_ablation_presets_switch_components():
  get = eml_config.get_config
  assert get("ablation=no_ot").nu == 0.0
  assert get("ablation=no_forward").mu == 0.0
  assert not get("ablation=no_tstage").use_tstage
  c = get("ablation=no_inherit")
  assert not c.use_inherit and c.gamma == 0.0
  assert get("lowrank").rank_frac < 1 and get("lowrank").lam_nuc > 0
  c = get("lowrank,ablation=no_lowrank")
  assert c.rank_frac == 1.0 and c.lam_nuc == 0.0


def test_train_and_evaluate_runlocal():
  c = eml_config.get_config("runlocal")
  out = run_lib.train_and_evaluate(c, seed=0)
  assert set(out["curve"]) == {25, 50, len(run_lib.stream_from_config(c, 0).stages[-1].y)}
  for v in [*out["curve"].values(), out["euclidean_error"], out["online_mistake_rate"]]:
    assert 0.0 <= v <= 1.0
  assert out["ot_active_frac"] > 0.9 and np.isfinite(out["ms_per_update"])


@pytest.mark.parametrize("dataset", sorted(set(eml_config.DATASETS) - {"synthetic"}))
def test_real_presets_load_with_their_shapes(dataset):
  c = eml_config.get_config(f"dataset={dataset}")
  X, y, C = run_lib.load_data(c, seed=3)
  assert X.shape == (min(c.data.n, len(X)), c.data.d) and C == c.data.n_classes
  assert len(X) == len(y) and set(np.unique(y)) <= set(range(C)) and np.all(np.isfinite(X))
  X2, _, _ = run_lib.load_data(c, seed=4)  # another seed: another row order
  assert not np.array_equal(X, X2)
  with c.unlocked():
    c.data.d = c.data.d + 1
  with pytest.raises(ValueError, match="preset says"):
    run_lib.load_data(c, seed=3)


def test_train_and_evaluate_on_real_data():
  c = eml_config.get_config("dataset=wine,runlocal")
  out = run_lib.train_and_evaluate(c, seed=0)
  assert 0.0 <= out["final_error"] <= 1.0 and 0.0 <= out["euclidean_error"] <= 1.0


def test_bench_runlocal():
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.bench_eml", "--config=configs/eml.py:runlocal"],
    cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ},
  )  # fmt: skip
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  last = proc.stdout.strip().splitlines()[-1]
  assert last.startswith("ms_per_update_d64=") and " speedup_over_pot=" in last
  assert float(last.split()[0].split("=")[1]) > 0
