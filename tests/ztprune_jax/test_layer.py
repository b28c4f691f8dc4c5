"""I-stage selection and the I′ → S → I pruning layer.

The layer tests here check that it composes the library's own stages (`reduce_heads`,
`weighted_pagerank`, `s_stage`, `topk_keep`) in the spec's order, plus shapes, jit and
tracing; the independent oracle (a float64 numpy layer written from the spec, and
hand-made attention run through `prune()`) is in test_layer_oracle.py.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztprune_jax.zero_tprune import heads, keep, partition, wpr
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams, ZeroTPruneOptions, zero_tprune_layer

B, H, N, D, DH = 2, 3, 13, 8, 4


def make_inputs(seed: int = 0, kind: str = "softmax", temperature: float = 2.0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(B, N, D)), jnp.float32)
  if kind == "one_hot_rows":
    A = np.eye(N)[rng.integers(0, N, size=(B, H, N))]
  elif kind == "uniform":
    A = np.full((B, H, N, N), 1.0 / N)
  elif kind == "tiny":
    A = np.full((B, H, N, N), 1e-30)
    np.put_along_axis(A, rng.integers(0, N, size=(B, H, N, 1)), 1.0, axis=-1)
  else:
    logits = rng.normal(size=(B, H, N, N)) * temperature
    A = np.exp(logits - logits.max(-1, keepdims=True))
    A = A / A.sum(-1, keepdims=True)
  A = jnp.asarray(A, jnp.float32)
  if kind == "bf16":
    A, x = A.astype(jnp.bfloat16), x.astype(jnp.bfloat16)
  feats = {
    "x_in": jnp.asarray(rng.normal(size=(B, N, D)), x.dtype),
    "queries": jnp.asarray(rng.normal(size=(B, H, N, DH)), x.dtype),
    "keys": jnp.asarray(rng.normal(size=(B, H, N, DH)), x.dtype),
    "values": jnp.asarray(rng.normal(size=(B, H, N, DH)), x.dtype),
  }
  return x, A, feats


layer_jit = jax.jit(zero_tprune_layer, static_argnames=("num_keep_s", "num_keep_i", "options"))


def check_output(out, x, num_keep_i: int, num_prefix: int = 1):
  K = num_prefix + num_keep_i
  assert out.x.shape == (B, K, D) and out.x.dtype == x.dtype
  idx = np.asarray(out.kept_idx)
  assert idx.shape == (B, K) and idx.dtype == np.int32
  assert np.all(np.diff(idx, axis=-1) > 0)
  assert np.all(idx[:, :num_prefix] == np.arange(num_prefix))
  np.testing.assert_array_equal(out.x, np.take_along_axis(np.asarray(x), idx[..., None], 1))
  assert out.scores.shape == (B, K) and np.all(np.isfinite(out.scores))


# ---------------------------------------------------------------- I-stage selection


def test_topk_keep_keeps_prefix_and_best_patches_in_order():
  scores = jnp.asarray([[9.0, 0.1, 0.7, 0.3, 0.9, 0.5], [0.0, 0.6, 0.2, 0.8, 0.1, 0.4]])
  np.testing.assert_array_equal(keep.topk_keep(scores, 2), [[0, 2, 4], [0, 1, 3]])
  np.testing.assert_array_equal(
    keep.topk_keep(scores, 2, num_prefix=2), [[0, 1, 2, 4], [0, 1, 3, 5]]
  )
  np.testing.assert_array_equal(keep.topk_keep(scores, 0), [[0], [0]])
  np.testing.assert_array_equal(keep.topk_keep(scores, 5), np.tile(np.arange(6), (2, 1)))


def test_topk_keep_treats_nan_as_least_important():
  scores = jnp.asarray([[1.0, np.nan, 0.2, np.nan, 0.1]])
  np.testing.assert_array_equal(keep.topk_keep(scores, 2), [[0, 2, 4]])


@pytest.mark.parametrize("num_keep", [-1, 6, 2.0])
def test_topk_keep_rejects_bad_counts(num_keep):
  with pytest.raises(ValueError, match="num_keep"):
    keep.topk_keep(jnp.zeros((1, 6)), num_keep)


def test_restrict_attention_renormalises_the_sub_graph():
  _, A, _ = make_inputs(1)
  idx = jnp.asarray([[0, 2, 3, 7], [0, 1, 5, 12]], jnp.int32)
  sub = keep.restrict_attention(A, idx)
  assert sub.shape == (B, H, 4, 4)
  np.testing.assert_allclose(sub.sum(-1), 1.0, rtol=1e-6)
  raw = np.stack([np.asarray(A)[b][:, i][:, :, i] for b, i in enumerate(np.asarray(idx))])
  np.testing.assert_allclose(keep.restrict_attention(A, idx, renormalize=False), raw, rtol=0)
  np.testing.assert_allclose(sub, raw / raw.sum(-1, keepdims=True), rtol=1e-5)
  everything = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (B, N))
  np.testing.assert_allclose(keep.restrict_attention(A, everything), A, rtol=1e-5)
  # A row whose mass all went to removed tokens becomes uniform, not NaN.
  one_hot = jnp.zeros((1, 1, 4, 4)).at[..., 3].set(1.0)
  np.testing.assert_allclose(keep.restrict_attention(one_hot, jnp.asarray([[0, 1, 2]])), 1 / 3)


# ---------------------------------------------------------------- the pruning layer


def test_keep_all_is_the_identity():
  x, A, feats = make_inputs(2)
  out = zero_tprune_layer(x, A, feats, num_keep_s=N - 1, num_keep_i=N - 1)
  np.testing.assert_array_equal(out.x, x)
  np.testing.assert_array_equal(out.kept_idx, np.tile(np.arange(N), (B, 1)))


def test_without_s_stage_and_rerun_the_layer_is_wpr_top_k():
  x, A, feats = make_inputs(3)
  opts = ZeroTPruneOptions(num_iters=10, rerun_wpr=False)
  out = zero_tprune_layer(x, A, feats, num_keep_s=N - 1, num_keep_i=5, options=opts)
  s = heads.reduce_heads(wpr.weighted_pagerank(A, 10), "rms", vhf=True)
  np.testing.assert_array_equal(out.kept_idx, keep.topk_keep(s, 5))
  np.testing.assert_allclose(out.scores, keep.gather_scores(s, out.kept_idx), rtol=1e-6)
  check_output(out, x, 5)


def test_layer_is_i_prime_then_s_then_i():
  x, A, feats = make_inputs(4)
  opts = ZeroTPruneOptions(num_iters=7, prime_iters=1)
  out = zero_tprune_layer(x, A, feats, num_keep_s=8, num_keep_i=6, options=opts)
  s_prime = heads.reduce_heads(wpr.weighted_pagerank(A, 1), "rms", vhf=True)
  f = partition.select_feature(feats, "key")
  kept_s = partition.s_stage(s_prime, f, 4)
  sub = keep.restrict_attention(A, kept_s)
  s = heads.reduce_heads(wpr.weighted_pagerank(sub, 7), "rms", vhf=True)
  keep_i = keep.topk_keep(s, 6)
  np.testing.assert_array_equal(out.kept_idx, jnp.take_along_axis(kept_s, keep_i, -1))
  np.testing.assert_allclose(out.scores, jnp.take_along_axis(s, keep_i, -1), rtol=1e-6)
  # Reusing the I′ scores instead ranks survivors by s_prime.
  reuse = zero_tprune_layer(
    x, A, feats, num_keep_s=8, num_keep_i=6, options=dataclasses.replace(opts, rerun_wpr=False)
  )
  np.testing.assert_allclose(reuse.scores, keep.gather_scores(s_prime, reuse.kept_idx), rtol=1e-6)


def test_feature_array_and_x_out():
  x, A, feats = make_inputs(5)
  opts = ZeroTPruneOptions(feature="x_out")
  by_name = zero_tprune_layer(x, A, feats, num_keep_s=8, num_keep_i=6, options=opts)
  by_array = zero_tprune_layer(x, A, x, num_keep_s=8, num_keep_i=6)
  np.testing.assert_array_equal(by_name.kept_idx, by_array.kept_idx)


option_sets = st.builds(
  ZeroTPruneOptions,
  num_iters=st.sampled_from([0, 1, 5]),
  prime_iters=st.sampled_from([None, 1]),
  rerun_wpr=st.booleans(),
  until_converged=st.booleans(),
  cls_init=st.sampled_from(["uniform", "sqrt_n", "value"]),
  head_reduce=st.sampled_from(["mean", "rms"]),
  vhf=st.booleans(),
  variance_scale=st.sampled_from(["mean_one", "raw"]),
  include_cls=st.booleans(),
  partition=st.sampled_from(partition.PARTITIONS),
  feature=st.sampled_from(partition.FEATURES),
  similarity=st.sampled_from(partition.SIMILARITIES),
  num_prefix=st.sampled_from([1, 2]),
  wpr_batch_chunk=st.sampled_from([None, 1, "auto"]),
)


layer_cases = dict(
  options=option_sets,
  kind=st.sampled_from(["softmax", "one_hot_rows", "uniform", "tiny", "bf16"]),
  seed=st.integers(0, 1000),
  keep_s=st.integers(0, 6),
  keep_i=st.integers(0, 12),
)


@settings(max_examples=12, deadline=None)
@given(**layer_cases)
def test_any_options_on_adversarial_graphs_give_valid_output(options, kind, seed, keep_s, keep_i):
  x, A, feats = make_inputs(seed, kind)
  M = N - options.num_prefix
  num_keep_s = M - min(keep_s, partition.max_removable(M, options.partition))
  num_keep_i = min(keep_i, num_keep_s)
  rng = jax.random.key(seed) if options.partition == "random" else None
  out = layer_jit(
    x, A, feats, num_keep_s=num_keep_s, num_keep_i=num_keep_i, options=options, rng=rng
  )
  check_output(out, x, num_keep_i, options.num_prefix)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(**layer_cases)
def test_any_options_on_adversarial_graphs_give_valid_output_many(**case):
  test_any_options_on_adversarial_graphs_give_valid_output.hypothesis.inner_test(**case)


def test_jit_equals_eager():
  x, A, feats = make_inputs(6)
  options = ZeroTPruneOptions(until_converged=True, cls_init="value", wpr_batch_chunk=1)
  kw = dict(num_keep_s=9, num_keep_i=5, options=options)
  eager, jitted = zero_tprune_layer(x, A, feats, **kw), layer_jit(x, A, feats, **kw)
  np.testing.assert_array_equal(eager.kept_idx, jitted.kept_idx)
  np.testing.assert_array_equal(eager.x, jitted.x)
  np.testing.assert_allclose(eager.scores, jitted.scores, rtol=1e-5, atol=1e-7)


def test_compiles_once_per_static_config_not_per_hyperparameter():
  x, A, feats = make_inputs(7)
  traces = []

  @functools.partial(jax.jit, static_argnames=("num_keep_s", "num_keep_i", "options"))
  def f(x, A, feats, hparams, *, num_keep_s, num_keep_i, options):
    traces.append(options)
    return zero_tprune_layer(
      x, A, feats, num_keep_s=num_keep_s, num_keep_i=num_keep_i, options=options, hparams=hparams
    )

  opts = ZeroTPruneOptions(until_converged=True, cls_init="value")
  kw = dict(num_keep_s=9, num_keep_i=5, options=opts)
  a = f(x, A, feats, ZeroTPruneHParams(jnp.array([0.01, 0.7]), 1.0, 1e-6), **kw)
  b = f(x, A, feats, ZeroTPruneHParams(jnp.array([-1.0, 1e9]), 4.0, 1e-3), **kw)
  f(x, A, feats, ZeroTPruneHParams(jnp.array([0.2, 0.3]), 0.5, 0.0), **kw)
  assert len(traces) == 1
  assert not np.array_equal(a.scores, b.scores)  # the traced values do reach the kernel
  f(x, A, feats, ZeroTPruneHParams(jnp.array([0.2, 0.3]), 0.5, 0.0), **kw)
  f(x, A, feats, ZeroTPruneHParams(jnp.array([0.2, 0.3]), 0.5, 0.0), **{**kw, "num_keep_i": 4})
  f(x, A, feats, ZeroTPruneHParams(jnp.array([0.2, 0.3]), 0.5, 0.0), **{**kw, "options": opts})
  assert len(traces) == 2  # a new count compiles; an equal options object does not
  f(x, A, feats, ZeroTPruneHParams(), **{**kw, "options": ZeroTPruneOptions(vhf=False)})
  assert len(traces) == 3


@pytest.mark.parametrize(
  "field, value",
  [
    ("partition", "halves"),
    ("feature", "keys"),
    ("similarity", "cos"),
    ("head_reduce", "max"),
    ("cls_init", "cls"),
    ("variance_scale", "unit"),
    ("num_iters", -1),
    ("prime_iters", 1.5),
    ("num_prefix", -1),
    ("head_axis", 3),
    ("wpr_batch_chunk", "big"),
    ("wpr_compact", "yes"),
    ("warm_converged", 1),
  ],
)
def test_invalid_options_raise_naming_the_option(field, value):
  with pytest.raises(ValueError, match=field):
    ZeroTPruneOptions(**{field: value})


@pytest.mark.parametrize(
  "num_keep_s, num_keep_i, match",
  [(13, 5, "num_keep_s"), (8, 9, "num_keep_i"), (5, 5, "num_keep_s"), (8, -1, "num_keep_i")],
)
def test_invalid_counts_raise(num_keep_s, num_keep_i, match):
  x, A, feats = make_inputs(8)  # 12 patch tokens: the S-stage may drop at most 6
  with pytest.raises(ValueError, match=match):
    zero_tprune_layer(x, A, feats, num_keep_s=num_keep_s, num_keep_i=num_keep_i)


def test_random_partition_needs_rng():
  x, A, feats = make_inputs(9)
  with pytest.raises(ValueError, match="rng"):
    zero_tprune_layer(
      x, A, feats, num_keep_s=8, num_keep_i=6, options=ZeroTPruneOptions(partition="random")
    )
