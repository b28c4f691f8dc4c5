"""Inherited memory at the stage switch (issue 15): carry, ridge imputation, fairness."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eml_jax as eml
from eml_jax import baselines as B
from eml_jax import impute, memory, protocol, synthetic


def test_ridge_map_matches_numpy_normal_equations():
  r = np.random.default_rng(0)
  d, s_idx = 7, np.array([4, 1, 6])
  Z = r.normal(size=(9, d)).astype(np.float32)
  rm = impute.ridge_init(s_idx, d)
  for z in Z:
    rm = impute.ridge_update(rm, jnp.asarray(z))
  a_idx = np.setdiff1d(np.arange(d), s_idx)
  Zs, Za = Z[:, s_idx].astype(np.float64), Z[:, a_idx].astype(np.float64)
  lam = 0.5
  # Oracle: the ridge solution min_B Σ‖z_a − B z_s‖² + λ‖B‖², B = Za^T Zs (Zs^T Zs + λI)^-1.
  want = Za.T @ Zs @ np.linalg.inv(Zs.T @ Zs + lam * np.eye(3))
  got = np.asarray(impute.ridge_coef(rm, jnp.float32(lam)))
  # float32 sums of 9 outer products and a 3x3 solve: measured max error 2e-7; margin 50x.
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(rm.a_idx), a_idx)


def test_carry_restricts_to_survivors_and_view_imputes_only_carried_slots():
  buf = memory.buffer_init(2, 3, 4)
  for y, v in [(0, 1.0), (1, 2.0), (0, 3.0)]:
    buf = memory.ring_push(buf, jnp.asarray([v, 10 * v, 100 * v, 1000 * v]), jnp.int32(y))
  sp, sn = np.array([1, 3]), np.array([2, 0])  # survivors move to positions 2 and 0
  new, inh = impute.carry_buffer(buf, sp, sn, 5, 2.0)
  x = np.asarray(new.x)
  np.testing.assert_array_equal(x[0, 0], [2000.0, 0, 20.0, 0, 0])
  np.testing.assert_array_equal(x[0, 1], [6000.0, 0, 60.0, 0, 0])
  np.testing.assert_array_equal(np.asarray(new.seen), [2, 1])  # the ring order continues
  np.testing.assert_array_equal(np.asarray(inh), [[1, 1, 0], [1, 0, 0]])
  rm = impute.ridge_update(impute.ridge_init(sn, 5), jnp.asarray([1.0, 3.0, 1.0, 5.0, 7.0]))
  v = np.asarray(impute.view(new.x, inh, rm, jnp.float32(1.0)))
  B_ = np.asarray(impute.ridge_coef(rm, jnp.float32(1.0)))  # [3, 2]: new <- survivors
  np.testing.assert_allclose(v[0, 0, [1, 3, 4]], B_ @ x[0, 0, [2, 0]], rtol=1e-6)
  np.testing.assert_array_equal(v[0, 0, [2, 0]], x[0, 0, [2, 0]])  # observed ones untouched
  np.testing.assert_array_equal(v[1, 1], x[1, 1])  # an empty slot is not imputed
  buf2, inh2 = impute.push(new, inh, jnp.ones(5), jnp.int32(0))  # overwrites slot 2 (seen 2)
  pushed, inh2 = impute.push(buf2, inh2, jnp.ones(5), jnp.int32(0))  # then slot 0, the oldest
  np.testing.assert_array_equal(np.asarray(inh2[0]), [0, 1, 0])
  assert np.asarray(pushed.x)[0, 0, 1] == 1.0


@pytest.fixture(scope="module")
def toy():
  X, y = synthetic.make_classification(500, 13, 3, sep=2.5, seed=1)  # T 9, I 8 features
  Xtr, ytr, Xte, yte = protocol.split_scale(X, y, seed=0, test_frac=0.3)
  return protocol.make_stream(Xtr, ytr, Xte, yte, seed=0, n_classes=3)


def _eml_at_switch(stream, mode):
  spec = eml.LearnerSpec(n_classes=3, rank=8, standardize=False, inherit_memory=mode,
                         inherit_from="L", inherit_basis="complement")  # fmt: skip
  lrn = eml.make_learner(spec)
  plan = eml.stage_plan(stream)
  hp = eml.HParams.create(nu=0.0)
  s = eml.init_state(jax.random.key(0), spec, plan[0][0], plan[0][1])
  s, _ = eml.run_stage(lrn, s, stream.stages[0].X, stream.stages[0].y, hp)
  return lrn, s, eml.advance(s, spec, plan[1][2], plan[1][0], plan[1][1]), hp


def test_eml_and_transferring_baseline_start_the_istage_with_the_same_memory(toy):
  _, sT, sI, _ = _eml_at_switch(toy, "zero")
  T, I = toy.stages
  tr = eml.transition(T, I)
  want = np.zeros((3, 5, len(I.features)), np.float32)  # from the T-stage's last 5 per class
  for c in range(3):
    rows = T.X[T.y == c][-5:] / math.sqrt(len(T.features))
    order = np.arange(len(rows)) + (np.sum(T.y == c) - len(rows))  # ring slots
    for j, o in enumerate(order):
      want[c, o % 5, tr.survived_next] = rows[j, tr.survived_prev] * math.sqrt(
        len(T.features) / len(I.features)
      )
  # atol: float32 rescaling of values of order 1; measured 1e-7.
  np.testing.assert_allclose(np.asarray(sI.mem.x), want, atol=1e-6)
  assert np.asarray(sI.mem_inh).all()
  # The baseline that transfers gets the same memory (its inputs are scaled by 1/√d too).
  sc = protocol.scaled_stream(toy)
  st, _ = B.run_stream(B.OPML_WARM._replace(transfer=None), sc._replace(stages=sc.stages[:1]),
                       {}, jax.random.key(0))  # fmt: skip
  _, bI = B.online.begin_stage(B.OPML_WARM, sc.stages, 1, st, jax.random.key(0), n_classes=3,
                               memory_mode="zero")  # fmt: skip
  np.testing.assert_allclose(np.asarray(bI.mem.x), np.asarray(sI.mem.x), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(bI.mem.seen), np.asarray(sI.mem.seen))
  _, b0 = B.online.begin_stage(B.OPML_WARM, sc.stages, 1, st, jax.random.key(0), n_classes=3)
  assert int(b0.mem.seen.sum()) == 0  # "none": the memory restarts empty


@pytest.mark.parametrize("mode", ["zero", "ridge"])
def test_inherited_memory_lowers_the_first_istage_mistakes(toy, mode):
  lrn, _, s_mem, hp = _eml_at_switch(toy, mode)
  _, _, s_none, _ = _eml_at_switch(toy, "none")
  I = toy.stages[1]
  _, m_mem = eml.run_stage(lrn, s_mem, I.X, I.y, hp)
  lrn0 = eml.make_learner(lrn.spec._replace(inherit_memory="none"))
  _, m_none = eml.run_stage(lrn0, s_none, I.X, I.y, hp)
  first = lambda m: int(np.asarray(m["mistake"])[:10].sum())  # noqa: E731
  # An empty memory predicts class 0 for the first instance and knows one sample per class
  # at best after it; the carried one knows 5 per class from the start.
  assert first(m_mem) < first(m_none), (first(m_mem), first(m_none))
