"""Seed-parallel EML benchmark runs: stacked, vmapped, sharded runs equal the sequential ones.

The same 3 wine streams run seed by seed (`learner.run_stream`, `online.run_stream`,
`protocol.run_eml`, `protocol.run_baseline`) and all at once on a ``"data"`` mesh: of the
one CPU device here, and of 8 fake CPU devices in a subprocess (3 runs padded to 8).
"""

import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parallel_jax as parallel
from eml_jax import baselines, datasets, learner, protocol
from eml_jax.baselines import online

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)
BASELINES = {"opml": dict(lam=1e-2), "opid": dict(eta=1.0)}
ATOL = 1e-4  # final metrics: float32 rounding of batched vs unbatched ops over ~100 steps


@functools.cache  # one learner (and compilation) for the whole module
def setup_runs():
  """``(streams, keys, lrn, hp)``: 3 small wine streams (T- and I-stage of 30 rows)."""
  X, y = datasets.load("wine")
  streams = [
    protocol.seed_stream(X, y, 3, s, test_frac=0.3, max_train=60, max_test=30) for s in SEEDS
  ]
  keys = [jax.random.key(s) for s in SEEDS]
  spec = learner.LearnerSpec(n_classes=3, rank=6, mem_size=3, n_neg=3, res_size=4)
  lrn = learner.make_learner(spec)
  hp = learner.HParams.create(eta=0.03, nu=0.3)  # the OT term on
  return streams, keys, lrn, hp


@functools.cache
def baseline(name):
  method = baselines.get_baseline(name)
  return method, baselines.make_runner(method)


def parallel_outputs(mesh) -> dict[str, np.ndarray]:
  """Flat dict of the seed-parallel results over ``mesh`` (also run by the subprocess)."""
  streams, keys, lrn, hp = setup_runs()
  out = {}
  states, m, _ = protocol.eml_runs_pass(lrn, streams, hp, keys, mesh=mesh)
  out["eml/L"] = np.stack([s.L for s in states])
  out["eml/ot_active"] = m["ot_active"]
  res = protocol.run_eml_runs(lrn, streams, hp, keys, mesh=mesh)
  out["eml/mistakes"] = np.stack([r["mistakes"] for r in res])
  out["eml/knn_error"] = np.array([r["knn_error"] for r in res])
  scaled = [protocol.scaled_stream(s) for s in streams]
  for name, bhp in BASELINES.items():
    method, runner = baseline(name)
    states, _, _ = protocol.baseline_runs_pass(method, runner, scaled, bhp, keys, mesh=mesh)
    for i, leaf in enumerate(jax.tree.leaves(parallel.stack_trees([s.metric for s in states]))):
      out[f"{name}/metric{i}"] = np.asarray(leaf)
    res = protocol.run_baseline_runs(method, runner, scaled, bhp, keys, mesh=mesh)
    out[f"{name}/mistakes"] = np.stack([r["mistakes"] for r in res])
    out[f"{name}/knn_error"] = np.array([r["knn_error"] for r in res])
  return out


@pytest.fixture(scope="module")
def sequential() -> dict[str, np.ndarray]:
  """The same flat dict from the sequential (one run at a time) path."""
  streams, keys, lrn, hp = setup_runs()
  out = {}
  finals = [learner.run_stream(lrn, s, hp, k) for s, k in zip(streams, keys, strict=True)]
  out["eml/L"] = np.stack([st.L for st, _ in finals])
  out["eml/ot_active"] = np.stack([np.asarray(ms[-1]["ot_active"]) for _, ms in finals])
  res = [protocol.run_eml(lrn, s, hp, k) for s, k in zip(streams, keys, strict=True)]
  out["eml/mistakes"] = np.stack([r["mistakes"] for r in res])
  out["eml/knn_error"] = np.array([r["knn_error"] for r in res])
  scaled = [protocol.scaled_stream(s) for s in streams]
  for name, bhp in BASELINES.items():
    method, runner = baseline(name)
    metrics = [online.run_stream(method, s, bhp, k, runner=runner)[0].metric
               for s, k in zip(scaled, keys, strict=True)]  # fmt: skip
    for i, leaf in enumerate(jax.tree.leaves(parallel.stack_trees(metrics))):
      out[f"{name}/metric{i}"] = np.asarray(leaf)
    res = [protocol.run_baseline(method, runner, s, bhp, k)
           for s, k in zip(scaled, keys, strict=True)]  # fmt: skip
    out[f"{name}/mistakes"] = np.stack([r["mistakes"] for r in res])
    out[f"{name}/knn_error"] = np.array([r["knn_error"] for r in res])
  return out


def _assert_same(seq, par):
  assert sorted(seq) == sorted(par)
  assert seq["eml/ot_active"].any()  # the OT term took part
  for name in seq:
    a, b = seq[name], par[name]
    assert a.shape == b.shape, name
    if "/L" in name or "/metric" in name:
      np.testing.assert_allclose(b, a, rtol=0, atol=ATOL, err_msg=name)
    else:  # online mistakes, 5-NN test errors: exactly equal
      np.testing.assert_array_equal(b, a, err_msg=name)


def test_one_device_mesh_equals_sequential(sequential):
  _assert_same(sequential, parallel_outputs(parallel.make_mesh(1)))


def test_evaluate_with_mesh_equals_sequential(sequential):
  """`evaluate(mesh=)` keeps the seed-major row order and every result field."""
  X, y = datasets.load("wine")
  streams, _, lrn, hp = setup_runs()
  eml_v = protocol.Variant(
    one=lambda s, k: protocol.run_eml(lrn, s, hp, k),
    runs=lambda ss, ks, mesh: protocol.run_eml_runs(lrn, ss, hp, ks, mesh=mesh),
  )
  method, runner = baseline("opid")
  opid_v = protocol.Variant(
    one=lambda s, k: protocol.run_baseline(method, runner, protocol.scaled_stream(s), {}, k),
    runs=lambda ss, ks, mesh: protocol.run_baseline_runs(
      method, runner, [protocol.scaled_stream(s) for s in ss], {}, ks, mesh=mesh
    ),
  )
  plain = lambda s, k: {"knn_error": float(s.stages[0].y[0]), "mistakes": np.zeros(1)}  # noqa: E731
  methods = {"eml": eml_v, "opid": opid_v, "plain": plain}
  kw = dict(seeds=SEEDS, test_frac=0.3, max_train=60, max_test=30)
  calls = []
  seq = protocol.evaluate(X, y, 3, methods, progress=lambda: calls.append(1), **kw)
  par = protocol.evaluate(X, y, 3, methods, mesh=parallel.make_mesh(), **kw)
  assert len(calls) == len(par) == 9
  for a, b in zip(seq, par, strict=True):
    assert (a["seed"], a["method"]) == (b["seed"], b["method"])
    assert set(a) == set(b)
    for f in ("knn_error", "online_error", "clf_error"):
      if f in a:
        assert a[f] == b[f], (a["seed"], a["method"], f)
    np.testing.assert_array_equal(a["mistakes"], b["mistakes"])
    assert b["method"] == "plain" or b["sec_per_update"] > 0
  eml_rows = [r for r in par if r["method"] == "eml"]
  np.testing.assert_array_equal([r["knn_error"] for r in eml_rows], sequential["eml/knn_error"])


_EIGHT_DEVICES = textwrap.dedent(
  """
  import sys
  import jax, numpy as np
  sys.path.insert(0, "tests/eml_jax")
  import test_eml_parallel_runs as T
  import parallel_jax as parallel
  assert jax.device_count() == 8, jax.devices()
  mesh = parallel.make_mesh()
  np.savez(sys.argv[1], **T.parallel_outputs(mesh))
  print("runs", len(T.SEEDS), "devices", mesh.size)
  """
)


def test_eight_devices_equal_sequential(sequential, tmp_path):
  """3 runs padded to 8 on 8 fake devices: same results as one run at a time."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")  # fmt: skip
  out = tmp_path / "par.npz"
  res = subprocess.run(
    [sys.executable, "-c", _EIGHT_DEVICES, str(out)], env=env, capture_output=True, text=True,
    timeout=600, cwd=ROOT,
  )  # fmt: skip
  assert res.returncode == 0, res.stderr[-3000:]
  assert res.stdout.split() == ["runs", "3", "devices", "8"]
  with np.load(out) as f:
    _assert_same(sequential, dict(f))


def test_stack_unstack_pads_by_repeating_the_last_tree():
  trees = [{"a": jnp.full((2,), i), "k": jax.random.key(i)} for i in range(3)]
  st = parallel.stack_trees(trees, 4)
  assert st["a"].shape == (4, 2) and st["k"].shape == (4,)
  np.testing.assert_array_equal(st["a"][:, 0], [0, 1, 2, 2])
  back = parallel.unstack_tree(st, 3)
  assert len(back) == 3
  for t, b in zip(trees, back, strict=True):
    np.testing.assert_array_equal(b["a"], t["a"])
    np.testing.assert_array_equal(jax.random.key_data(b["k"]), jax.random.key_data(t["k"]))
  assert len(parallel.unstack_tree(parallel.stack_trees(trees))) == 3
  with pytest.raises(ValueError, match="differs from tree 0"):
    parallel.stack_trees([jnp.zeros(2), jnp.zeros(3)])
  with pytest.raises(ValueError, match="at least one tree"):
    parallel.stack_trees([])
  with pytest.raises(ValueError, match="cannot take"):
    parallel.unstack_tree(st, 5)


def test_runs_need_equal_shapes_and_one_key_each():
  streams, keys, lrn, hp = setup_runs()
  X, y = datasets.load("wine")
  other = protocol.seed_stream(X, y, 3, 0, test_frac=0.3, max_train=40)
  mesh = parallel.make_mesh(1)
  with pytest.raises(ValueError, match="cannot batch"):
    protocol.run_eml_runs(lrn, [streams[0], other], hp, keys[:2], mesh=mesh)
  with pytest.raises(ValueError, match="one key per stream"):
    protocol.run_eml_runs(lrn, streams, hp, keys[:2], mesh=mesh)
