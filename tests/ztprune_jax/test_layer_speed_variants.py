"""Speed options of the pruning layer (issue 14): WPR snapshots and warm starts.

The oracle is a numpy power iteration written from the spec (Zero-TPrune, I-stage:
``s_{t+1}[j] = Σ_i A[i, j] s_t[i] / Σ_j' A[i, j']``), with the sub-graph of the
survivors gathered explicitly, independent of ``wpr.py``'s masked formulation.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ztprune_jax.zero_tprune import heads, partition, wpr
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer

B, H, N, D, DH = 2, 3, 13, 8, 4
PAPER = dict(until_converged=False)  # the fixed step count that warm starts build on (default)
TOL = dict(until_converged=True)


def _inputs(seed=0, temperature=2.0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(B, H, N, N)) * temperature
  A = np.exp(logits - logits.max(-1, keepdims=True))
  A = A / A.sum(-1, keepdims=True)
  x = rng.normal(size=(B, N, D)).astype(np.float32)
  keys = rng.normal(size=(B, H, N, DH)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(A, jnp.float32), {"keys": jnp.asarray(keys)}


def _np_wpr(A, steps, s0):
  """Power iteration on each head's row-normalised graph: ``[..., K, K], [..., K]``."""
  P = A / A.sum(-1, keepdims=True)
  s = s0 / s0.sum(-1, keepdims=True)
  for _ in range(steps):
    s = np.einsum("...ij,...i->...j", P, s)
  return s


@pytest.mark.parametrize("chunk", [None, 1])
def test_snapshot_is_the_iterate_at_that_step(chunk):
  _, A, _ = _inputs()
  final, snap = wpr.weighted_pagerank(A, 9, snapshot_iter=4, batch_chunk=chunk)
  # Same arithmetic in the same order as separate runs: equal bit for bit.
  np.testing.assert_array_equal(final, wpr.weighted_pagerank(A, 9, batch_chunk=chunk))
  np.testing.assert_array_equal(snap, wpr.weighted_pagerank(A, 4, batch_chunk=chunk))
  s0 = np.full((B, H, N), 1.0 / N)
  # float32 vs float64 over 4 steps: measured max error 4.8e-8; 10x margin.
  np.testing.assert_allclose(snap, _np_wpr(np.asarray(A, np.float64), 4, s0), atol=5e-7)


@pytest.mark.parametrize("chunk", [None, 1])
def test_warm_start_continues_the_iteration(chunk):
  _, A, _ = _inputs(1)
  s3 = wpr.weighted_pagerank(A, 3, batch_chunk=chunk)
  cont = wpr.weighted_pagerank(A, 5, init=3.0 * s3, batch_chunk=chunk)  # any scale
  # 3 + 5 steps from s_0; only the renormalisation of `init` rounds differently
  # (measured max difference 6.0e-8, one float32 ulp of ~0.5); margin 10x.
  np.testing.assert_allclose(cont, wpr.weighted_pagerank(A, 8, batch_chunk=chunk), atol=6e-7)


def test_warm_start_on_survivors_matches_gathered_subgraph():
  _, A, _ = _inputs(2)
  rng = np.random.default_rng(3)
  alive_idx = np.sort(np.stack([rng.choice(N, 9, replace=False) for _ in range(B)]), -1)
  mask = np.zeros((B, N), bool)
  np.put_along_axis(mask, alive_idx, True, -1)
  init = rng.uniform(size=(B, H, N)).astype(np.float32)
  got = wpr.weighted_pagerank(A, 6, token_mask=jnp.asarray(mask), init=jnp.asarray(init))
  A64 = np.asarray(A, np.float64)
  sub = np.take_along_axis(A64, alive_idx[:, None, :, None], 2)
  sub = np.take_along_axis(sub, alive_idx[:, None, None, :], 3)  # [B, H, K, K]
  want = _np_wpr(sub, 6, np.take_along_axis(init, alive_idx[:, None, :], -1).astype(np.float64))
  got = np.asarray(got)
  # measured max error 1.3e-7 (float32 vs float64); margin 10x.
  np.testing.assert_allclose(np.take_along_axis(got, alive_idx[:, None, :], -1), want, atol=1.3e-6)
  assert np.all(got[~np.broadcast_to(mask[:, None], got.shape)] == 0)


@pytest.mark.parametrize("warm_start", [0.0, 0.5, 1.0])
def test_layer_warm_start_matches_numpy_oracle(warm_start):
  x, A, feats = _inputs(4)
  num_iters, keep_s, keep_i = 6, 9, 5  # of M = 12 patches: S drops 3, I drops 4 more
  options = ZeroTPruneOptions(num_iters=num_iters, warm_start=warm_start, **PAPER)
  out = jax.jit(
    lambda x, A, f: zero_tprune_layer(
      x, A, f, num_keep_s=keep_s, num_keep_i=keep_i, options=options
    )
  )(x, A, feats)
  k = int(np.floor(warm_start * num_iters))
  assert options.shared_iters == k
  A64 = np.asarray(A, np.float64)
  s0 = np.full((B, H, N), 1.0 / N)
  s_prime_h = _np_wpr(A64, num_iters, s0)
  s_warm_h = _np_wpr(A64, k, s0)
  # S-stage from the oracle's I′ scores, by the (separately tested) S-stage kernel.
  s_prime = heads.reduce_heads(jnp.asarray(s_prime_h, jnp.float32), "rms", vhf=True)
  feat = partition.select_feature(feats, "key")
  kept_s = np.asarray(partition.s_stage(s_prime, feat, 12 - keep_s))  # [B, 1 + keep_s]
  sub = np.take_along_axis(A64, kept_s[:, None, :, None], 2)
  sub = np.take_along_axis(sub, kept_s[:, None, None, :], 3)
  start = np.take_along_axis(s_warm_h if k else s0, kept_s[:, None, :], -1)
  s_i_h = _np_wpr(sub, num_iters - k, start)  # [B, H, K]
  s_i = np.asarray(heads.reduce_heads(jnp.asarray(s_i_h, jnp.float32), "rms", vhf=True))
  order = np.argsort(-s_i[:, 1:], axis=-1, kind="stable")[:, :keep_i] + 1
  want_idx = np.sort(np.take_along_axis(kept_s, order, -1), -1)
  np.testing.assert_array_equal(out.kept_idx[:, 1:], want_idx)
  want_scores = np.take_along_axis(s_i, np.sort(order, -1), -1)
  # float32 layer vs float64 oracle: measured max error 6.0e-8 (over the three
  # warm_start values); margin 10x.
  np.testing.assert_allclose(out.scores[:, 1:], want_scores, atol=6e-7)


def test_warm_start_zero_is_the_paper_path_bit_for_bit():
  x, A, feats = _inputs(5)
  kw = dict(num_keep_s=9, num_keep_i=5)
  ref = zero_tprune_layer(x, A, feats, **kw, options=ZeroTPruneOptions(num_iters=7, **PAPER))
  zero = zero_tprune_layer(
    x, A, feats, **kw, options=ZeroTPruneOptions(num_iters=7, warm_start=0.0, **PAPER)
  )
  tiny = zero_tprune_layer(  # floor(0.1 * 7) = 0 shared steps: the paper's path too
    x, A, feats, **kw, options=ZeroTPruneOptions(num_iters=7, warm_start=0.1, **PAPER)
  )
  for other in (zero, tiny):
    np.testing.assert_array_equal(other.kept_idx, ref.kept_idx)
    np.testing.assert_array_equal(other.scores, ref.scores)


def test_shared_iters_rule():
  assert ZeroTPruneOptions(num_iters=30, warm_start=0.5, **PAPER).shared_iters == 15
  assert ZeroTPruneOptions(num_iters=5, warm_start=0.5, **PAPER).shared_iters == 2
  assert ZeroTPruneOptions(num_iters=1, warm_start=0.5, **PAPER).shared_iters == 0
  assert ZeroTPruneOptions(num_iters=30, warm_start=1.0, prime_iters=10, **PAPER).shared_iters == 10


@pytest.mark.parametrize(
  "kwargs, needle",
  [
    (dict(warm_start=1.5), "warm_start"),
    (dict(warm_start=-0.1), "warm_start"),
    (dict(warm_start=True), "warm_start"),
    (dict(warm_start=0.5, until_converged=True), "until_converged"),
    (dict(warm_start=0.5, rerun_wpr=False, **PAPER), "rerun_wpr"),
  ],
)
def test_bad_warm_start_options(kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    ZeroTPruneOptions(**kwargs)


def test_bad_snapshot_and_init():
  _, A, _ = _inputs()
  with pytest.raises(ValueError, match="snapshot_iter"):
    wpr.weighted_pagerank(A, 3, snapshot_iter=4)
  with pytest.raises(ValueError, match="snapshot_iter"):
    wpr.weighted_pagerank(A, 3, snapshot_iter=1, tol=1e-6)
  with pytest.raises(ValueError, match="init"):
    wpr.weighted_pagerank(A, 3, init=jnp.ones((B, N)))


def test_warm_converged_without_converged_heads_is_the_default_path_bit_for_bit():
  x, A, feats = _inputs(6)
  kw = dict(num_keep_s=9, num_keep_i=5, hparams=ZeroTPruneHParams(tol=0.0))  # none converge
  ref = zero_tprune_layer(x, A, feats, **kw, options=ZeroTPruneOptions(num_iters=7, **TOL))
  warm = zero_tprune_layer(
    x, A, feats, **kw, options=ZeroTPruneOptions(num_iters=7, warm_converged=True, **TOL)
  )
  np.testing.assert_array_equal(warm.kept_idx, ref.kept_idx)
  np.testing.assert_array_equal(warm.scores, ref.scores)


def test_warm_converged_reaches_the_fixed_point_of_the_survivors_graph():
  x, A, feats = _inputs(7, temperature=0.5)  # fast-mixing heads: all converge in I′
  _, converged = wpr.weighted_pagerank(A, 200, tol=1e-7, return_converged=True)
  assert np.all(converged)
  kw = dict(num_keep_s=9, num_keep_i=5, hparams=ZeroTPruneHParams(tol=1e-7))
  options = ZeroTPruneOptions(num_iters=200, warm_converged=True, vhf=False, **TOL)
  out = zero_tprune_layer(x, A, feats, **kw, options=options)
  cold_options = dataclasses.replace(options, warm_converged=False)
  cold = zero_tprune_layer(x, A, feats, **kw, options=cold_options)  # I-stage from s_0
  # Both I-stage runs stop within the tolerance of the survivors' fixed point, from
  # different starts: the same tokens, scores equal up to the tolerance but not bit for
  # bit (the warm start was taken). Measured max difference 3.0e-8 over input seeds 0-7
  # (1.5e-8 on this one); 10x margin.
  np.testing.assert_array_equal(out.kept_idx, cold.kept_idx)
  np.testing.assert_allclose(out.scores, cold.scores, atol=3e-7)
  assert np.any(np.asarray(out.scores) != np.asarray(cold.scores))


def test_warm_converged_needs_the_tolerance_path():
  with pytest.raises(ValueError, match="warm_converged"):
    ZeroTPruneOptions(warm_converged=True)  # the default runs the paper's fixed steps
  with pytest.raises(ValueError, match="warm_converged"):
    ZeroTPruneOptions(warm_converged=True, rerun_wpr=False, **TOL)
