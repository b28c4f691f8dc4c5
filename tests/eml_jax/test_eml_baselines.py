"""Baselines: each update rule against a hand/numpy reference, shapes, and learning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eml_jax as eml
from eml_jax import baselines as B
from eml_jax import protocol, synthetic


def _hp(method, **kw):
  return {k: jnp.asarray(v, jnp.float32) for k, v in {**method.hparams, **kw}.items()}


def _vecs(d=6, seed=0):
  r = np.random.default_rng(seed)
  return [jnp.asarray(r.normal(size=d) / math.sqrt(d), jnp.float32) for _ in range(3)]


def test_opml_matches_explicit_inverse():
  d = 6
  L = jnp.asarray(np.eye(d) + 0.1 * np.random.default_rng(1).normal(size=(d, d)), jnp.float32)
  x, p, q = _vecs(d)
  q = x + 0.05 * (q - x)  # a near negative: the triplet is active
  t, f = jnp.array(True), jnp.array(False)
  got = B.opml_update(L, x, 0, p, t, q, t, _hp(B.OPML, lam=0.1))
  a, b = np.asarray(x - p, np.float64), np.asarray(x - q, np.float64)
  want = np.asarray(L, np.float64) @ np.linalg.inv(
    np.eye(d) + 0.1 * (np.outer(a, a) - np.outer(b, b))
  )
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
  # No negative yet (or an inactive triplet): unchanged.
  np.testing.assert_array_equal(np.asarray(B.opml_update(L, x, 0, p, t, q, f, _hp(B.OPML))), L)
  far = x + 10.0 * (q - x) / jnp.linalg.norm(q - x)
  np.testing.assert_array_equal(np.asarray(B.opml_update(L, x, 0, x, t, far, t, _hp(B.OPML))), L)


def test_oasis_passive_aggressive_step():
  x, p, q = jnp.array([1.0, 0.0]), jnp.array([0.5, 0.0]), jnp.array([1.0, 0.0])
  t = jnp.array(True)
  # loss = 1 - 0.5 + 1 = 1.5; V = x (p - q)^T, |V|^2 = 0.25; tau = min(C, 6).
  W = B.oasis_update(jnp.eye(2), x, 0, p, t, q, t, _hp(B.OASIS, C=0.1))
  np.testing.assert_allclose(np.asarray(W), [[0.95, 0.0], [0.0, 1.0]], atol=1e-6)
  W = B.oasis_update(jnp.eye(2), x, 0, p, t, q, t, _hp(B.OASIS, C=100.0))
  np.testing.assert_allclose(np.asarray(W), [[1.0 - 6 * 0.5, 0.0], [0.0, 1.0]], atol=1e-5)
  # After the unclipped step the triplet sits exactly on the margin.
  np.testing.assert_allclose(float(x @ W @ p - x @ W @ q), 1.0, atol=1e-5)


def test_rdml_stays_psd_and_matches_numpy():
  x, p, q = _vecs(5, seed=3)
  t = jnp.array(True)
  A = B.rdml_update(jnp.eye(5), x, 0, p, t, q, t, _hp(B.RDML, lam=50.0, b=0.0))
  w = np.linalg.eigvalsh(np.asarray(A, np.float64))
  assert w.min() > -1e-4
  # Reference: similar step, PSD projection, then the dissimilar step (skipped: b = 0).
  u = np.asarray(x - p, np.float64)
  M = np.eye(5) - 50.0 * np.outer(u, u)
  ev, V = np.linalg.eigh(M)
  want = (V * np.maximum(ev, 0)) @ V.T
  np.testing.assert_allclose(np.asarray(A), want, atol=1e-4)


def test_lego_closed_form_and_direction():
  x, p, q = _vecs(4, seed=5)
  t = jnp.array(True)
  hp = _hp(B.LEGO, eta=0.5, t_sim=0.01, t_dis=50.0)
  A = B.lego_update(jnp.eye(4), x, 0, p, t, q, t, hp)
  assert np.linalg.eigvalsh(np.asarray(A, np.float64)).min() > 0  # stays PD
  u = np.asarray(x - p)
  A1 = B.lego_update(jnp.eye(4), x, 0, p, t, q, jnp.array(False), hp)
  yh, target, eta = float(u @ u), 0.01, 0.5
  c = eta * target * yh - 1
  ybar = (c + math.sqrt(c * c + 4 * eta * yh * yh)) / (2 * eta * yh)
  # The closed form lands exactly on ybar, which lies between the target and yh.
  np.testing.assert_allclose(float(u @ np.asarray(A1) @ u), ybar, rtol=1e-4)
  assert target < ybar < yh
  v = np.asarray(x - q)
  assert float(v @ np.asarray(A) @ v) > float(v @ np.asarray(A1) @ v)  # dissimilar pushed out


def test_latest_pair_picks_latest_same_and_other_class():
  m = B.EUCLIDEAN.init(None, 2, 3, None)
  s = B.init_online(m, 3, 2, mem_size=2)
  hp = {}
  runner = B.make_runner(B.EUCLIDEAN)
  X = jnp.array([[1.0, 0], [2, 0], [3, 0], [4, 0], [5, 0]])
  y = jnp.array([0, 1, 0, 2, 0], jnp.int32)
  s, _ = runner(s, X[:4], y[:4], hp)
  p, p_ok, q, q_ok = B.latest_pair(s, jnp.int32(0))
  assert bool(p_ok) and bool(q_ok)
  np.testing.assert_array_equal(np.asarray(p), [3, 0])  # latest class-0 sample
  np.testing.assert_array_equal(np.asarray(q), [4, 0])  # latest sample of another class
  _, p_ok, _, q_ok = B.latest_pair(B.init_online(m, 3, 2), jnp.int32(1))
  assert not bool(p_ok) and not bool(q_ok)


@pytest.mark.parametrize("mode", ["euclid", "dot"])
def test_knn_embedded_matches_brute_force(mode):
  r = np.random.default_rng(0)
  G, Q = r.normal(size=(40, 3)).astype(np.float32), r.normal(size=(13, 3)).astype(np.float32)
  gy = r.integers(0, 3, 40).astype(np.int32)
  s = ((Q[:, None] - G[None]) ** 2).sum(-1) if mode == "euclid" else -Q @ G.T
  want = []
  for row in s:
    votes = np.zeros(3)
    for rank, i in enumerate(np.argsort(row, kind="stable")[:5]):
      votes[gy[i]] += 1 + 1e-3 * (5 - rank) / 5
    want.append(np.argmax(votes))
  for chunk in (4, 256):
    got = B.knn_predict_embedded(G, gy, Q, k=5, n_classes=3, mode=mode, chunk=chunk)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_opid_transfer_inherits_compressor():
  m = B.OPID.init(None, 5, 3, np.array([3, 4]))
  m = dict(m, Wc=jnp.ones((3, 2)))
  out = B.OPID.transfer(m, np.array([3, 4]), np.array([0, 1]), 4, None)
  np.testing.assert_array_equal(np.asarray(out["W"][:, :2]), 1.0)
  np.testing.assert_array_equal(np.asarray(out["W"][:, 2:]), 0.0)
  assert out["Wc"].shape == (3, 0)


def test_get_baseline_lists_names():
  with pytest.raises(ValueError, match="opml"):
    B.get_baseline("nope")


@pytest.fixture(scope="module")
def toy_stream():
  X, y = synthetic.make_classification(700, 12, 3, sep=3.0, seed=0)
  Xtr, ytr, Xte, yte = protocol.split_scale(X, y, seed=0, test_frac=0.3)
  return protocol.scaled_stream(protocol.make_stream(Xtr, ytr, Xte, yte, seed=0, n_classes=3))


@pytest.mark.parametrize("name", sorted(B.BASELINES))
def test_every_baseline_learns_on_separable_toy(name, toy_stream):
  method = B.get_baseline(name)
  state, ms = B.run_stream(method, toy_stream, {}, jax.random.key(0))
  leaves = jax.tree.leaves(state.metric)
  assert all(np.all(np.isfinite(np.asarray(v))) for v in leaves if v.dtype.kind == "f")
  n_stages = 2 if method.transfer is not None else 1
  assert len(ms) == n_stages
  I = toy_stream.stages[-1]
  assert ms[-1]["mistake"].shape == (len(I.y),)
  err = B.knn_error(method, state.metric, I.X, I.y, toy_stream.test.X, toy_stream.test.y,
                    n_classes=3)  # fmt: skip
  online = float(np.mean(np.asarray(ms[-1]["mistake"])))
  chance = 2 / 3
  assert 0 <= err < chance / 2 and online < chance / 2, (err, online)


def test_eml_and_baselines_share_the_stream_interface(toy_stream):
  # EML runs on the unscaled stream, baselines on the scaled one; same stages and labels.
  assert isinstance(toy_stream, eml.Stream)
  assert toy_stream.stages[-1].X.shape[1] == len(toy_stream.stages[-1].features)


def test_knn_error_is_an_exact_fraction():
  """Baselines' and EML's test errors are mistakes / n in float64: equal counts tie exactly."""
  G = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]], np.float32)
  gy = np.array([0, 0, 1, 1], np.int32)
  Q = np.array([[0.0, 0.1], [5.0, 5.1], [0.05, 0.0]], np.float32)
  qy = np.array([0, 1, 1], np.int32)  # the third query is wrong under any sane metric
  method = B.get_baseline("euclidean")
  metric = method.init(jax.random.key(0), 2, 2, None)
  err = B.knn_error(method, metric, G, gy, Q, qy, n_classes=2, k=1)
  assert err == 1 / 3  # float32 averaging gives 0.3333333432674408


def _opml_core_matlab(L, lam, x, p, q):
  """``OML_Core.m`` of the authors' code (github WenbinLee/OPML), transcribed to numpy."""
  a, b = x - p, x - q
  aa, bb, ab = a @ a, b @ b, a @ b
  tr = lam * (aa - bb)
  tr2 = lam**2 * (aa * aa - 2 * ab * ab + bb * bb)
  eta, beta = 1 + tr, 0.5 * (tr**2 - tr2)
  G = np.outer(a, a) - np.outer(b, b)
  return L - eta * lam / (eta + beta) * L @ G + lam**2 / (eta + beta) * L @ G @ G


def _opml_matlab_loop(X, y, lam):
  """``OML_OPML.m``'s loop: one queue entry per class (first-appearance order), the previous
  sample, the triplet rule of the authors' code, margin 1 (float64 numpy oracle)."""
  L = np.eye(X.shape[1])
  latest, latest_y, queue, queue_y = X[0], y[0], [X[0]], [y[0]]
  for x, c in zip(X[1:], y[1:], strict=True):
    idx = queue_y.index(c) if c in queue_y else None
    if len(queue) >= 2 and idx is not None:
      if latest_y == c:
        p = latest
        q = queue[-2] if idx == len(queue) - 1 else queue[-1]
      else:
        p, q = queue[idx], latest
      if np.sum((L @ (x - p)) ** 2) + 1 - np.sum((L @ (x - q)) ** 2) > 0:
        L = _opml_core_matlab(L, lam, x, p, q)
    if idx is None:
      queue.append(x)
      queue_y.append(c)
    else:
      queue[idx] = x
    latest, latest_y = x, c
  return L


def test_opml_triplets_follow_the_authors_code():
  r = np.random.default_rng(0)
  n, d = 60, 5
  y = r.integers(0, 3, n)  # 3 classes: runs of one class make the two constructions differ
  X = (r.normal(size=(n, d)) + 0.5 * y[:, None]) / math.sqrt(d)
  want = _opml_matlab_loop(X, [int(v) for v in y], 0.1)
  got = {}
  for m in (B.OPML, B.OPML_LATEST):
    s = B.init_online(jnp.eye(d), 3, d, mem_size=2)
    s, _ = B.make_runner(m)(s, jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.int32),
                            _hp(m, lam=0.1))  # fmt: skip
    got[m.name] = np.asarray(s.metric, np.float64)
  rel = lambda a: np.abs(a - want).max() / np.abs(want).max()  # noqa: E731
  # float32 over 60 updates: measured relative max difference 1.8e-7; margin ~50x.
  assert rel(got["opml"]) < 1e-5, rel(got["opml"])
  # The earlier construction (negative: latest sample of any other class) lands far away
  # (measured 0.57): the stream does tell the two apart.
  assert rel(got["opml_latest"]) > 0.1, rel(got["opml_latest"])


def test_opml_triplet_rule_cases():
  m = B.EUCLIDEAN.init(None, 2, 3, None)
  runner = B.make_runner(B.EUCLIDEAN)
  s = B.init_online(m, 3, 2, mem_size=2)
  # Queue order by first appearance: 1, 2, 0. Stream: 1, 2, 0, 2, 1, 1.
  X = jnp.array([[1.0, 0], [2, 0], [3, 0], [4, 0], [5, 0], [6, 0]])
  y = jnp.array([1, 2, 0, 2, 1, 1], jnp.int32)
  s, _ = runner(s, X, y, {})
  # Arriving class 1, previous sample class 1: p = previous ([6]), q = last queue entry
  # (class 0: [3]), not the latest other-class sample (class 2: [4]).
  p, ok, q, _ = B.opml_triplet(s, jnp.int32(1))
  assert bool(ok) and np.asarray(p)[0] == 6 and np.asarray(q)[0] == 3
  p, _, q, _ = B.latest_pair(s, jnp.int32(1))
  assert np.asarray(q)[0] == 4
  # Arriving class 0 after class 1: the last queue entry is x's own class, but the previous
  # sample differs: q = previous ([6]), p = class 0's entry ([3]).
  p, ok, q, _ = B.opml_triplet(s, jnp.int32(0))
  assert bool(ok) and np.asarray(p)[0] == 3 and np.asarray(q)[0] == 6
  s2, _ = runner(s, X[2:3], y[2:3], {})  # now the previous sample is class 0 (the last entry)
  p, _, q, _ = B.opml_triplet(s2, jnp.int32(0))
  assert np.asarray(p)[0] == 3 and np.asarray(q)[0] == 4  # the entry before it: class 2
  # One class seen, or a class not in the queue yet: no triplet.
  s1, _ = runner(B.init_online(m, 3, 2, mem_size=2), X[:1], y[:1], {})
  assert not bool(B.opml_triplet(s1, jnp.int32(1))[1])
  s3, _ = runner(B.init_online(m, 3, 2, mem_size=2), X[:2], y[:2], {})
  assert not bool(B.opml_triplet(s3, jnp.int32(0))[1])
