"""Weighted PageRank invariants (spec §8) over random and adversarial attention graphs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztprune_jax.zero_tprune import keep, wpr

KINDS = ("softmax", "one_hot_rows", "uniform", "tiny", "bf16")


def make_attention(seed: int, shape, kind: str, temperature: float = 1.0) -> jax.Array:
  """A ``[B, H, N, N]`` row-stochastic attention tensor of the given kind."""
  B, H, N = shape
  rng = np.random.default_rng(seed)
  if kind == "one_hot_rows":
    cols = rng.integers(0, N, size=(B, H, N))
    A = np.eye(N)[cols]
  elif kind == "uniform":
    A = np.full((B, H, N, N), 1.0 / N)
  elif kind == "tiny":
    # Every entry 1e-30 except one dominant entry per row (float32-representable).
    A = np.full((B, H, N, N), 1e-30)
    cols = rng.integers(0, N, size=(B, H, N))
    np.put_along_axis(A, cols[..., None], 1.0, axis=-1)
    A = A / A.sum(-1, keepdims=True)
  else:
    logits = rng.normal(size=(B, H, N, N)) * temperature
    A = np.exp(logits - logits.max(-1, keepdims=True))
    A = A / A.sum(-1, keepdims=True)
  A = jnp.asarray(A, jnp.float32)
  return A.astype(jnp.bfloat16) if kind == "bf16" else A


# Compiled once per (shape, static args) and reused across hypothesis examples.
jitted_wpr = jax.jit(wpr.weighted_pagerank, static_argnames=("num_iters", "cls_init", "num_prefix"))

attention_cases = st.tuples(
  st.integers(0, 2**31 - 1),
  st.sampled_from([(1, 1, 1), (1, 2, 2), (2, 1, 5), (2, 3, 8)]),
  st.sampled_from(KINDS),
  st.sampled_from([0.1, 1.0, 10.0, 100.0]),
)


@settings(max_examples=25, deadline=None)
@given(case=attention_cases, num_iters=st.sampled_from([0, 1, 5, 50]))
def test_scores_are_a_distribution(case, num_iters):
  A = make_attention(*case)
  s = jitted_wpr(A, num_iters=num_iters)
  assert s.shape == A.shape[:3]
  assert s.dtype == jnp.float32
  assert np.all(np.isfinite(s))
  assert np.all(np.asarray(s) >= 0.0)
  np.testing.assert_allclose(np.asarray(s).sum(-1), 1.0, rtol=0, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(
  case=attention_cases,
  cls_init=st.sampled_from(["uniform", "sqrt_n", "value"]),
  tol=st.sampled_from([None, 1e-6]),
)
def test_jit_equals_eager(case, cls_init, tol):
  A = make_attention(*case)
  kwargs = dict(cls_init=cls_init, cls_value=3.0 if cls_init == "value" else None, tol=tol)
  eager = wpr.weighted_pagerank(A, 7, **kwargs)
  jitted = jax.jit(lambda A: wpr.weighted_pagerank(A, 7, **kwargs))(A)
  np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [1, 4, 197])
def test_uniform_attention_gives_uniform_scores(n):
  A = jnp.full((2, 3, n, n), 1.0 / n)
  s = wpr.weighted_pagerank(A, 30)
  np.testing.assert_allclose(s, 1.0 / n, rtol=1e-5, atol=0)


@pytest.mark.parametrize("j", [0, 3, 6])
@pytest.mark.parametrize("cls_init", ["uniform", "sqrt_n"])
def test_one_hot_column_gives_basis_vector_after_one_step(j, cls_init):
  n = 7
  A = jnp.zeros((1, 2, n, n)).at[..., j].set(1.0)
  s = wpr.weighted_pagerank(A, 1, cls_init=cls_init)
  np.testing.assert_allclose(s, jnp.broadcast_to(jnp.eye(n)[j], s.shape), rtol=0, atol=1e-6)


def test_matches_numpy_power_iteration():
  A = make_attention(3, (2, 3, 6), "softmax", temperature=2.0)
  s = np.full((2, 3, 6), 1.0 / 6)
  A64 = np.asarray(A, np.float64)
  for _ in range(4):
    s = np.einsum("bhij,bhi->bhj", A64, s)
  np.testing.assert_allclose(wpr.weighted_pagerank(A, 4), s, rtol=1e-5, atol=1e-7)


def test_many_iterations_reach_the_fixed_point():
  A = make_attention(5, (2, 2, 9), "softmax", temperature=1.0)
  s = wpr.weighted_pagerank(A, 200)
  np.testing.assert_allclose(jnp.einsum("bhij,bhi->bhj", A, s), s, rtol=1e-4, atol=1e-6)


def test_tolerance_zero_runs_the_cap_exactly():
  A = make_attention(7, (2, 3, 8), "softmax", temperature=3.0)
  np.testing.assert_array_equal(wpr.weighted_pagerank(A, 13, tol=0.0), wpr.weighted_pagerank(A, 13))


def test_tolerance_stops_early_and_is_close_to_converged():
  A = make_attention(9, (2, 3, 8), "softmax", temperature=1.0)
  loose = wpr.weighted_pagerank(A, 500, tol=1e-3)
  tight = wpr.weighted_pagerank(A, 500)
  assert np.max(np.abs(loose - tight)) < 1e-2
  # Stopped early: differs from the 500-step result (rtol shows it did not run the cap).
  assert np.max(np.abs(loose - tight)) > 0


def test_tolerance_result_does_not_depend_on_the_rest_of_the_batch():
  slow = make_attention(11, (1, 2, 8), "softmax", temperature=0.1)  # converges fast
  fast = make_attention(12, (1, 2, 8), "softmax", temperature=8.0)  # converges slowly
  alone = wpr.weighted_pagerank(slow, 100, tol=1e-4)
  batched = wpr.weighted_pagerank(jnp.concatenate([slow, fast]), 100, tol=1e-4)
  np.testing.assert_array_equal(alone[0], batched[0])


def test_traced_tolerance_and_cls_value_do_not_retrace():
  A = make_attention(1, (1, 2, 5), "softmax")
  traces = []

  @jax.jit
  def f(A, tol, c):
    traces.append(1)
    return wpr.weighted_pagerank(A, 10, cls_init="value", cls_value=c, tol=tol)

  f(A, 1e-3, 2.0)
  f(A, 1e-6, 5.0)
  assert len(traces) == 1


def test_bfloat16_input_is_scored_in_float32():
  A = make_attention(2, (2, 3, 16), "softmax", temperature=5.0)
  s16 = wpr.weighted_pagerank(A.astype(jnp.bfloat16), 50)
  s32 = wpr.weighted_pagerank(A, 50)
  assert s16.dtype == jnp.float32
  np.testing.assert_allclose(s16.sum(-1), 1.0, rtol=0, atol=1e-5)
  # Oracle: float64 power iteration on the bfloat16-rounded graph (rows renormalised).
  # Measured worst relative error of the float32 scores against it, seeds 0-7 of this
  # input kind: 5.9e-6 (4.7e-6 on this seed); 5e-5 is an 8x margin. Iterating in
  # bfloat16 instead would be off by ~1e-2 relative.
  A16 = np.asarray(A.astype(jnp.bfloat16).astype(jnp.float32), np.float64)
  A16 = A16 / A16.sum(-1, keepdims=True)
  s = np.full(A16.shape[:-1], 1 / 16)
  for _ in range(50):
    s = np.einsum("bhij,bhi->bhj", A16, s)
  np.testing.assert_allclose(s16, s, rtol=5e-5, atol=0)
  # Against the float32 graph, the bfloat16 rounding of A itself (2^-8 relative per
  # entry) bounds the difference: measured worst 5.5e-3 relative on seeds 0-7 (this
  # seed: 5.5e-3 relative, 3.1e-4 absolute with scores of median 1.1e-2); 2e-2 relative
  # is a 3.6x margin (rounding effects accumulate, so a smaller factor than above).
  np.testing.assert_allclose(s16, s32, rtol=2e-2, atol=0)


def test_zero_rows_are_treated_as_dangling_nodes():
  A = jnp.zeros((1, 1, 4, 4)).at[0, 0, 0, 2].set(1.0)  # rows 1-3 carry no mass
  s = wpr.weighted_pagerank(A, 20)
  assert np.all(np.isfinite(s))
  np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
  "cls_init, kind", [("uniform", "softmax"), ("sqrt_n", "one_hot_rows"), ("value", "tiny")]
)
def test_token_mask_equals_wpr_on_the_restricted_sub_graph(cls_init, kind):
  A = make_attention(13, (3, 2, 9), kind, temperature=2.0)
  idx = jnp.asarray([[0, 1, 4, 5, 8], [0, 2, 3, 6, 7], [0, 1, 2, 3, 4]], jnp.int32)
  mask = jnp.zeros((3, 9), bool).at[jnp.arange(3)[:, None], idx].set(True)
  kw = dict(cls_init=cls_init, cls_value=2.5 if cls_init == "value" else None)
  masked = wpr.weighted_pagerank(A, 6, token_mask=mask, **kw)
  sub = wpr.weighted_pagerank(keep.restrict_attention(A, idx), 6, **kw)
  np.testing.assert_allclose(keep.gather_scores(masked, idx), sub, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(jnp.where(mask[:, None], 0.0, masked), 0.0)


@pytest.mark.parametrize("tol", [None, 1e-5])
@pytest.mark.parametrize("chunk", [1, 4, "auto"])
def test_batch_chunks_give_the_same_scores(chunk, tol):
  A = make_attention(14, (6, 2, 7), "softmax", temperature=3.0)
  mask = jnp.arange(7)[None] % jnp.arange(1, 7)[:, None] != 1
  for m in (None, mask):
    whole = wpr.weighted_pagerank(A, 20, tol=tol, token_mask=m, batch_chunk=None)
    chunked = wpr.weighted_pagerank(A, 20, tol=tol, token_mask=m, batch_chunk=chunk)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-8)


def test_initial_scores():
  np.testing.assert_allclose(wpr.initial_scores(4), 0.25)
  s = wpr.initial_scores(9, cls_init="sqrt_n")
  np.testing.assert_allclose(s[0] / s[1], 3.0, rtol=1e-6)
  np.testing.assert_allclose(s.sum(), 1.0, rtol=1e-6)
  s = wpr.initial_scores(5, cls_init="value", cls_value=4.0, num_prefix=2)
  np.testing.assert_allclose(s, np.array([4, 4, 1, 1, 1]) / 11, rtol=1e-6)
  np.testing.assert_allclose(wpr.weighted_pagerank(jnp.eye(5)[None, None], 0, num_prefix=0), 0.2)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(num_iters=-1), "num_iters"),
    (dict(num_iters=2.0), "num_iters"),
    (dict(num_iters=2, cls_init="cls"), "cls_init"),
    (dict(num_iters=2, cls_init="value"), "cls_value"),
    (dict(num_iters=2, cls_value=1.0), "cls_value"),
    (dict(num_iters=2, num_prefix=9), "num_prefix"),
    (dict(num_iters=2, batch_chunk=-2), "batch_chunk"),
    (dict(num_iters=2, batch_chunk="some"), "batch_chunk"),
    (dict(num_iters=2, token_mask=jnp.ones((1, 3), bool)), "token_mask"),
  ],
)
def test_invalid_options_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    wpr.weighted_pagerank(jnp.full((1, 1, 4, 4), 0.25), **kwargs)


def test_bad_shape_raises():
  with pytest.raises(ValueError, match="attn"):
    wpr.weighted_pagerank(jnp.ones((2, 4, 4)), 1)


def _mixed_speed_heads(seed: int, B: int = 8, H: int = 6, N: int = 11) -> jax.Array:
  """``[B, H, N, N]`` softmax graphs whose heads mix fast and slowly (temperatures 0.3-6)."""
  rng = np.random.default_rng(seed)
  temps = rng.uniform(0.3, 6.0, size=(B, H, 1, 1))
  logits = rng.normal(size=(B, H, N, N)) * temps
  A = np.exp(logits - logits.max(-1, keepdims=True))
  return jnp.asarray(A / A.sum(-1, keepdims=True), jnp.float32)


def test_compaction_levels_halve_down_to_a_minimum():
  assert wpr._level_sizes(48, True, 30) == (12,)
  assert wpr._level_sizes(256, True, 30) == (64, 16)
  assert wpr._level_sizes(31, True, 30) == ()
  assert wpr._level_sizes(256, True, 5) == ()  # few steps: nothing worth compacting
  assert wpr._level_sizes(48, False, 30) == ()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("chunk", [None, 2])
def test_compacted_convergence_equals_the_flat_loop_bit_for_bit(masked, chunk):
  A = _mixed_speed_heads(21)  # 48 heads: a second level of 12 heads
  mask = None
  if masked:
    mask = jax.random.uniform(jax.random.key(3), A.shape[:1] + A.shape[-1:]) > 0.3
    mask = mask.at[:, 0].set(True)
  kw = dict(tol=1e-5, token_mask=mask, batch_chunk=chunk, cls_init="value", cls_value=2.0)
  flat = wpr.weighted_pagerank(A, 60, compact=False, **kw)
  compact = wpr.weighted_pagerank(A, 60, compact=True, **kw)
  np.testing.assert_array_equal(compact, flat)
  # The deeper levels were used: some heads still move after at most 12 of the 48 do
  # (the 12-head level), before the cap.
  steps = [wpr.weighted_pagerank(A, t, **{**kw, "tol": None}) for t in range(61)]
  moving = [
    int(jnp.sum(jnp.max(jnp.abs(b - a), axis=-1) >= 1e-5))
    for a, b in zip(steps[:-1], steps[1:], strict=True)
  ]
  assert any(0 < n <= 12 for n in moving[:-1]), moving


def test_return_converged_flags_the_heads_stopped_by_the_tolerance():
  A = _mixed_speed_heads(23)
  s, converged = wpr.weighted_pagerank(A, 40, tol=1e-5, return_converged=True)
  np.testing.assert_array_equal(s, wpr.weighted_pagerank(A, 40, tol=1e-5))
  # A head converged iff one more step moves no score by the tolerance (it was frozen
  # at a step that did not) -- checked against the 40-step fixed-count iterate instead:
  # heads still moving at the cap are exactly the unconverged ones.
  s39, s40 = wpr.weighted_pagerank(A, 39), wpr.weighted_pagerank(A, 40)
  moving_at_cap = np.asarray(jnp.max(jnp.abs(s40 - s39), axis=-1) >= 1e-5)
  assert 0 < moving_at_cap.mean() < 1
  np.testing.assert_array_equal(np.asarray(converged), ~moving_at_cap)
  _, none = wpr.weighted_pagerank(A, 40, tol=0.0, return_converged=True)
  assert not np.any(none)
  with pytest.raises(ValueError, match="return_converged"):
    wpr.weighted_pagerank(A, 40, return_converged=True)
