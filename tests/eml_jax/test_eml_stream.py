"""Feature-evolution data model: one-shot / multi-shot streams and input validation."""

import numpy as np
import pytest

import eml_jax as eml
from eml_jax import synthetic


@pytest.fixture(scope="module")
def data():
  return synthetic.make_classification(300, 12, 3, seed=0)


def test_one_shot_layout(data):
  X, y = data
  s = eml.make_one_shot(X, y, seed=3, fracs=(0.25, 0.5, 0.25), lengths=(100, 80), test_frac=0.1)
  T, I = s.stages
  d_v, d_s = 3, 6
  np.testing.assert_array_equal(T.features[d_v:], I.features[:d_s])  # [v; s] -> [s; a]
  assert len(set(T.features[:d_v]) & set(I.features)) == 0
  assert sorted(np.concatenate([T.features, I.features[d_s:]])) == list(range(12))
  assert T.X.shape == (100, 9) and I.X.shape == (80, 9) and s.test.X.shape == (30, 9)
  np.testing.assert_array_equal(s.test.features, I.features)
  tr = eml.transition(T, I)
  np.testing.assert_array_equal(tr.vanished, np.arange(d_v))
  np.testing.assert_array_equal(T.features[tr.survived_prev], I.features[tr.survived_next])
  np.testing.assert_array_equal(tr.new, np.arange(d_s, 9))
  # The instances are rows of X restricted to the stage's features.
  row = np.flatnonzero((X[:, T.features] == T.X[0]).all(1))
  assert row.size == 1 and y[row[0]] == T.y[0]


def test_one_shot_is_seeded(data):
  X, y = data
  a, b = eml.make_one_shot(X, y, seed=1), eml.make_one_shot(X, y, seed=1)
  c = eml.make_one_shot(X, y, seed=2)
  np.testing.assert_array_equal(a.stages[0].features, b.stages[0].features)
  np.testing.assert_array_equal(a.stages[1].X, b.stages[1].X)
  assert not np.array_equal(a.stages[0].features, c.stages[0].features)


def test_multi_shot_layout(data):
  X, y = data
  s = eml.make_multi_shot(X, y, n_stages=4, seed=0, lengths=(50, 50, 50, 40))
  assert len(s.stages) == 4
  gone = set()
  for t in range(3):
    tr = eml.transition(s.stages[t], s.stages[t + 1])
    assert tr.survived_prev.size > 0 and tr.vanished.size > 0 and tr.new.size > 0
    gone |= {int(f) for f in s.stages[t].features[tr.vanished]}
    assert not gone & {int(f) for f in s.stages[t + 1].features}
  with pytest.raises(ValueError, match="n_stages >= 3"):
    eml.make_multi_shot(X, y, n_stages=2)


def test_bad_indices_raise(data):
  X, y = data
  with pytest.raises(ValueError, match="overlap between v and s"):
    eml.one_shot_from_indices(X, y, [0, 1], [1, 2], [3], (10, 10))
  with pytest.raises(ValueError, match="overlap between s and a"):
    eml.one_shot_from_indices(X, y, [0], [1, 2], [2, 3], (10, 10))
  with pytest.raises(ValueError, match="out of range"):
    eml.one_shot_from_indices(X, y, [0], [1, 2], [12], (10, 10))
  with pytest.raises(ValueError, match="out of range"):
    eml.one_shot_from_indices(X, y, [-1], [1, 2], [3], (10, 10))
  with pytest.raises(ValueError, match="duplicates"):
    eml.one_shot_from_indices(X, y, [0, 0], [1, 2], [3], (10, 10))
  with pytest.raises(ValueError, match="survived"):
    eml.one_shot_from_indices(X, y, [0], [], [3], (10, 10))
  with pytest.raises(ValueError, match="needs 400 instances"):
    eml.one_shot_from_indices(X, y, [0], [1], [3], (200, 200))


def test_validate_stream_rejects_bad_streams(data):
  X, y = data
  s = eml.make_multi_shot(X, y, n_stages=3, seed=0)
  st0, st1, st2 = s.stages
  # A vanished feature reappearing later.
  f2 = np.concatenate([st2.features[:-1], st0.features[:1]])
  bad = s._replace(stages=(st0, st1, st2._replace(features=f2)), test=None)
  with pytest.raises(ValueError, match="vanished earlier and reappear"):
    eml.validate_stream(bad, 12)
  # No survivors between stages.
  disjoint = st1._replace(features=np.setdiff1d(np.arange(12), st0.features)[: len(st1.features)])
  with pytest.raises(ValueError, match="no survived feature"):
    eml.validate_stream(s._replace(stages=(st0, disjoint), test=None), 12)
  # Mismatched dimensions: X's columns vs the feature indices.
  with pytest.raises(ValueError, match="one column per feature"):
    eml.validate_stage(st0._replace(X=st0.X[:, :-1]), 3)
  with pytest.raises(ValueError, match="out of range"):
    eml.validate_stage(st0._replace(features=st0.features + 100), 3, n_features=12)
  with pytest.raises(ValueError, match="labels outside the class range"):
    eml.validate_stage(st0._replace(y=st0.y + 3), 3)
  Xn = st0.X.copy()
  Xn[2, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    eml.validate_stage(st0._replace(X=Xn), 3)
  with pytest.raises(ValueError, match="test split"):
    eml.validate_stream(s._replace(test=s.test._replace(features=st0.features)), 12)


def test_nan_and_label_inputs_to_builders(data):
  X, y = data
  Xn = X.copy()
  Xn[0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    eml.make_one_shot(Xn, y)
  with pytest.raises(ValueError, match="labels outside"):
    eml.make_one_shot(X, y, n_classes=2)
  with pytest.raises(ValueError, match="y must be"):
    eml.make_one_shot(X, y[:-1])
