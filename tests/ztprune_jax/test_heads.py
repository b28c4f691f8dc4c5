"""EIR / VHF head-reduction invariants (spec §8)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztprune_jax.zero_tprune import heads

ADMIT_ALL = (-np.inf, np.inf)


def random_scores(seed: int, shape, temperature: float = 1.0) -> jax.Array:
  """``[B, H, N]`` non-negative scores summing to one over N."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=shape) * temperature
  s = np.exp(logits - logits.max(-1, keepdims=True))
  return jnp.asarray(s / s.sum(-1, keepdims=True), jnp.float32)


score_cases = st.tuples(
  st.integers(0, 2**31 - 1),
  st.sampled_from([(1, 1, 2), (2, 3, 5), (2, 6, 17)]),
  st.sampled_from([0.1, 1.0, 5.0, 30.0]),
)
reduce_jit = jax.jit(
  heads.reduce_heads,
  static_argnames=("method", "vhf", "variance_scale", "include_cls", "num_prefix"),
)


@settings(max_examples=20, deadline=None)
@given(case=score_cases, method=st.sampled_from(["mean", "rms"]))
def test_vhf_admitting_every_head_equals_plain_reduction(case, method):
  s = random_scores(*case)
  plain = reduce_jit(s, method=method)
  filtered = reduce_jit(s, method=method, vhf=True, v_range=ADMIT_ALL)
  np.testing.assert_allclose(filtered, plain, rtol=1e-6, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(case=score_cases, lo=st.floats(0, 2), width=st.floats(0, 2))
def test_scores_are_finite_and_between_min_and_max_head(case, lo, width):
  s = random_scores(*case)
  for method in ("mean", "rms"):
    out = np.asarray(reduce_jit(s, method=method, vhf=True, v_range=(lo, lo + width)))
    assert np.all(np.isfinite(out))
    # A (weighted) mean or RMS over a non-empty set of heads lies within their range.
    assert np.all(out >= np.asarray(s).min(1) * (1 - 1e-5) - 1e-9)
    assert np.all(out <= np.asarray(s).max(1) * (1 + 1e-5) + 1e-9)


@pytest.mark.parametrize("vhf", [False, True])
def test_single_head_eir_is_that_head(vhf):
  s = random_scores(0, (3, 1, 9), temperature=4.0)
  np.testing.assert_allclose(heads.eir(s), s[:, 0], rtol=1e-6)
  np.testing.assert_allclose(heads.reduce_heads(s, "rms", vhf=vhf), s[:, 0], rtol=1e-6)


def test_eir_is_root_mean_square():
  s = random_scores(1, (2, 4, 7))
  expected = np.sqrt(np.mean(np.asarray(s, np.float64) ** 2, axis=1))
  np.testing.assert_allclose(heads.eir(s), expected, rtol=1e-6)


def test_mean_one_variance_matches_numpy():
  s = random_scores(2, (2, 3, 10), temperature=2.0)
  patch = np.asarray(s, np.float64)[..., 1:]
  expected = np.var(patch / patch.mean(-1, keepdims=True), axis=-1)
  np.testing.assert_allclose(heads.head_variance(s), expected, rtol=1e-5)
  with_cls = np.var(np.asarray(s, np.float64) * 10, axis=-1)
  np.testing.assert_allclose(heads.head_variance(s, include_cls=True), with_cls, rtol=1e-5)
  raw = np.var(patch, axis=-1)
  np.testing.assert_allclose(heads.head_variance(s, variance_scale="raw"), raw, rtol=1e-5)


def test_raw_scale_drops_every_head_at_paper_range_and_falls_back():
  # On raw scores (Σ s = 1) with N = 197 every variance is < 1/N: no head passes.
  s = random_scores(3, (2, 6, 197), temperature=3.0)
  assert np.all(heads.head_variance(s, variance_scale="raw") < 0.005)
  np.testing.assert_array_equal(heads.head_pass_fraction(s, variance_scale="raw"), 0.0)
  out = heads.reduce_heads(s, vhf=True, variance_scale="raw")
  np.testing.assert_allclose(out, heads.eir(s), rtol=1e-6)


def make_three_heads(n: int = 16) -> jax.Array:
  """Head 0 uniform (Var 0), head 1 moderate (Var ~0.25), head 2 one-hot (Var ~n−2)."""
  uniform = np.full(n, 1.0 / n)
  moderate = np.where(np.arange(n) % 2 == 0, 1.5, 0.5)
  moderate = moderate / moderate.sum()
  one_hot = np.eye(n)[5]
  return jnp.asarray(np.stack([uniform, moderate, one_hot])[None], jnp.float32)


def test_vhf_keeps_only_heads_inside_the_range():
  s = make_three_heads()
  v = np.asarray(heads.head_variance(s))[0]
  assert v[0] < 0.01 and 0.01 <= v[1] <= 0.7 and v[2] > 0.7
  np.testing.assert_array_equal(heads.vhf_mask(s), [[False, True, False]])
  np.testing.assert_allclose(heads.head_pass_fraction(s), [1 / 3], rtol=1e-6)
  np.testing.assert_allclose(heads.reduce_heads(s, vhf=True), s[:, 1], rtol=1e-6)
  np.testing.assert_allclose(heads.reduce_heads(s, "mean", vhf=True), s[:, 1], rtol=1e-6)


def test_fallback_to_all_heads_is_per_image():
  s = jnp.concatenate([make_three_heads(), make_three_heads()[:, :1].repeat(3, axis=1)])
  out = heads.reduce_heads(s, vhf=True)  # image 1 has no passing head
  np.testing.assert_allclose(out[0], s[0, 1], rtol=1e-6)
  np.testing.assert_allclose(out[1], heads.eir(s)[1], rtol=1e-6)


def test_v_range_is_traced():
  s = make_three_heads()
  traces = []

  @jax.jit
  def f(s, v_range):
    traces.append(1)
    return heads.reduce_heads(s, vhf=True, v_range=v_range)

  narrow = f(s, jnp.array([0.01, 0.7]))
  wide = f(s, jnp.array([-1.0, 1e9]))
  assert len(traces) == 1
  np.testing.assert_allclose(narrow, s[:, 1], rtol=1e-6)
  np.testing.assert_allclose(wide, heads.eir(s), rtol=1e-6)


@pytest.mark.parametrize("scale", ["mean_one", "raw"])
def test_degenerate_scores_stay_finite(scale):
  n = 8
  all_on_cls = jnp.zeros((1, 2, n)).at[..., 0].set(1.0)  # patch tokens carry no mass
  tiny = jnp.full((1, 2, n), 1e-30)
  for s in (all_on_cls, tiny, all_on_cls.astype(jnp.bfloat16)):
    v = heads.head_variance(s, variance_scale=scale)
    out = heads.reduce_heads(s, vhf=True, variance_scale=scale)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(out))
    assert out.dtype == jnp.float32


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda s: heads.reduce_heads(s, "max"), "head reduction"),
    (lambda s: heads.reduce_heads(s, vhf=True, variance_scale="unit"), "variance_scale"),
    (lambda s: heads.head_variance(s, num_prefix=5), "num_prefix"),
  ],
)
def test_invalid_options_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call(random_scores(0, (1, 2, 5)))
