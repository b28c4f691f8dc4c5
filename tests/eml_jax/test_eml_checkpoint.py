"""Orbax checkpoint mid-stage: resuming is bit-identical to an uninterrupted run."""

import jax
import numpy as np
import pytest

import eml_jax as eml
from eml_jax import checkpoint, synthetic

C, D = 3, 6


def _leaves(tree):
  out = []
  for x in jax.tree.leaves(tree):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    out.append(np.asarray(x))
  return out


def _assert_identical(a, b):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb, strict=True):
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)


def test_resume_mid_stage_is_bit_identical(tmp_path):
  X, y = synthetic.make_classification(48, D + D // 2, C, seed=0)
  h = D // 2
  s = eml.one_shot_from_indices(X, y, range(h), range(h, D), range(D, D + h), (24, 24),
                                seed=0, n_classes=C)  # fmt: skip
  spec = eml.LearnerSpec(n_classes=C, rank=4, mem_size=3, n_neg=3, res_size=3)
  lrn = eml.make_learner(spec)
  hp = eml.HParams.create(nu=1.0)
  (d0, surv, _), (d1, _, tr) = eml.stage_plan(s)
  T, I = s.stages

  # Uninterrupted: T-stage, transition, I-stage (OT term active).
  full = eml.init_state(jax.random.key(7), spec, d0, surv)
  full, mT = eml.run_stage(lrn, full, T.X, T.y, hp)
  full = eml.advance(full, spec, tr, d1)
  full, mI = eml.run_stage(lrn, full, I.X, I.y, hp)

  # Interrupted mid-I-stage (OT term, stored embeddings, RNG all in play) and resumed
  # from disk into a fresh template state.
  st = eml.init_state(jax.random.key(7), spec, d0, surv)
  st, m1 = eml.run_stage(lrn, st, T.X, T.y, hp)
  np.testing.assert_array_equal(m1["loss"], mT["loss"])
  st = eml.advance(st, spec, tr, d1)
  st, m3 = eml.run_stage(lrn, st, I.X[:12], I.y[:12], hp)
  checkpoint.save(str(tmp_path / "i"), st, stage=1, position=12)
  like = eml.advance(eml.init_state(jax.random.key(99), spec, d0, surv), spec, tr, d1)
  st, stage, pos = checkpoint.restore(str(tmp_path / "i"), like)
  assert (stage, pos) == (1, 12)
  st, m4 = eml.run_stage(lrn, st, I.X[pos:], I.y[pos:], hp)
  for k in ("loss", "ot_cost", "n_iters", "mistake"):
    np.testing.assert_array_equal(np.concatenate([m3[k], m4[k]]), mI[k])
  assert bool(np.all(mI["ot_active"]))
  _assert_identical(st, full)


def test_restore_into_wrong_shape_raises(tmp_path):
  spec = eml.LearnerSpec(n_classes=C, rank=4)
  st = eml.init_state(jax.random.key(0), spec, 5, [0, 1])
  checkpoint.save(str(tmp_path / "c"), st, stage=0, position=0)
  with pytest.raises(ValueError, match="has shape"):
    checkpoint.restore(str(tmp_path / "c"), eml.init_state(jax.random.key(0), spec, 6, [0, 1]))
  with pytest.raises(ValueError, match="holds leaves"):  # G: [k, 2] saved, [k, 0] expected
    checkpoint.restore(str(tmp_path / "c"), eml.init_state(jax.random.key(0), spec, 5))
