"""S-stage invariants: partitions, features, similarities, duplicate removal (spec §3, §8)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztprune_jax.zero_tprune import partition

BIPARTITE = ("seq_u", "seq_i", "alternate", "random")

s_stage_jit = jax.jit(
  partition.s_stage,
  static_argnames=("num_remove", "partition", "similarity_metric", "num_prefix"),
)


def case_arrays(seed: int, B: int, N: int, C: int = 6):
  rng = np.random.default_rng(seed)
  scores = jnp.asarray(rng.random((B, N)), jnp.float32)
  feature = jnp.asarray(rng.normal(size=(B, N, C)), jnp.float32)
  return scores, feature


def check_kept(idx, N: int, num_prefix: int, num_remove: int):
  idx = np.asarray(idx)
  assert idx.dtype == np.int32
  assert idx.shape[1] == N - num_remove
  assert np.all(np.diff(idx, axis=-1) > 0), "kept indices must be strictly increasing"
  assert np.all(idx[:, :num_prefix] == np.arange(num_prefix)), "prefix tokens must be kept"
  assert np.all((idx >= 0) & (idx < N))


@settings(max_examples=20, deadline=None)
@given(
  seed=st.integers(0, 2**31 - 1),
  shape=st.sampled_from([(1, 3, 1), (2, 9, 1), (2, 12, 2), (1, 17, 0)]),
  part=st.sampled_from(partition.PARTITIONS),
  metric=st.sampled_from(partition.SIMILARITIES),
  frac=st.floats(0, 1),
)
def test_kept_indices_are_sorted_unique_and_keep_prefix(seed, shape, part, metric, frac):
  B, N, P = shape
  scores, feature = case_arrays(seed, B, N)
  cap = partition.max_removable(N - P, part)
  r = int(round(frac * cap))
  rng = jax.random.key(seed) if part == "random" else None
  idx = s_stage_jit(
    scores, feature, rng=rng, num_remove=r, partition=part, similarity_metric=metric, num_prefix=P
  )
  check_kept(idx, N, P, r)
  if part != "full":  # only sources may be removed
    src, dst = partition.split_tokens(scores[:, P:], part, rng=rng)
    kept = [set(row) for row in np.asarray(idx)]
    for b in range(B):
      assert set(np.asarray(dst[b]) + P) <= kept[b]


@pytest.mark.parametrize("part", BIPARTITE)
@pytest.mark.parametrize("metric", partition.SIMILARITIES)
def test_exact_duplicates_in_the_source_half_are_removed_first(part, metric):
  B, N, P, num_dup = 2, 15, 1, 3
  scores, feature = case_arrays(7, B, N, C=8)
  # Unit norm, so that the dot product ranks like cosine and duplicates win under it too.
  feature = feature / jnp.linalg.norm(feature, axis=-1, keepdims=True)
  rng = jax.random.key(3) if part == "random" else None
  src, dst = (np.asarray(a) + P for a in partition.split_tokens(scores[:, P:], part, rng=rng))
  f = np.array(feature)
  dups = []
  for b in range(B):
    dups.append(set(src[b, :num_dup]))
    f[b, src[b, :num_dup]] = f[b, dst[b, :num_dup]]  # sources copy destinations
  idx = partition.s_stage(
    scores,
    jnp.asarray(f),
    num_dup,
    partition=part,
    similarity_metric=metric,
    num_prefix=P,
    rng=rng,
  )
  check_kept(idx, N, P, num_dup)
  for b in range(B):
    removed = set(range(N)) - set(np.asarray(idx[b]))
    assert removed == dups[b]


def test_full_partition_matches_all_pairs_without_self_matches():
  scores, feature = case_arrays(0, 1, 9)
  f = np.array(feature)
  f[0, 6] = f[0, 2]  # one duplicate pair among the patch tokens
  idx = partition.s_stage(scores, jnp.asarray(f), 1, partition="full")
  removed = set(range(9)) - set(np.asarray(idx[0]))
  assert len(removed) == 1 and removed <= {2, 6}


def test_seq_u_sources_are_the_less_important_half():
  scores = jnp.asarray([[0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6]], jnp.float32)
  src, dst = partition.split_tokens(scores, "seq_u")
  assert set(np.asarray(src[0])) == {1, 3, 5, 6}  # ceil(7/2) least important
  assert set(np.asarray(dst[0])) == {0, 2, 4}
  src, dst = partition.split_tokens(scores, "seq_i")
  assert set(np.asarray(src[0])) == {0, 2, 4, 6}
  src, dst = partition.split_tokens(scores, "alternate")
  np.testing.assert_array_equal(src[0], [0, 2, 4, 6])
  np.testing.assert_array_equal(dst[0], [1, 3, 5])


def test_random_partition_depends_on_the_key_only():
  scores, _ = case_arrays(0, 2, 10)
  a = partition.split_tokens(scores, "random", rng=jax.random.key(0))[0]
  b = partition.split_tokens(scores * 0.5, "random", rng=jax.random.key(0))[0]
  c = partition.split_tokens(scores, "random", rng=jax.random.key(1))[0]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_seq_u_drops_background_duplicates_not_the_important_token():
  # Token 1 is important and unique; tokens 2..9 are near-identical background.
  N = 10
  f = np.random.default_rng(0).normal(size=(1, N, 4)) * 1e-3
  f[0, 2:] += np.array([1.0, 0, 0, 0])
  f[0, 1] = [0, 1.0, 0, 0]
  scores = jnp.asarray([[0.5, 0.4] + [0.1 - 0.001 * i for i in range(N - 2)]], jnp.float32)
  idx = partition.s_stage(scores, jnp.asarray(f, jnp.float32), 4)
  kept = set(np.asarray(idx[0]))
  assert {0, 1} <= kept
  assert len(kept & set(range(2, N))) == 4


def test_similarities_match_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 3, 5))
  diff = a[:, :, None] - b[:, None]
  expected = {
    "dot": np.einsum("bic,bjc->bij", a, b),
    "cosine": np.einsum("bic,bjc->bij", a, b)
    / np.linalg.norm(a, axis=-1)[:, :, None]
    / np.linalg.norm(b, axis=-1)[:, None],
    "l1": -np.abs(diff).sum(-1),
    "l2": -np.sqrt((diff**2).sum(-1)),
    "linf": -np.abs(diff).max(-1),
  }
  for metric, want in expected.items():
    got = partition.similarity(jnp.asarray(a), jnp.asarray(b), metric)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=metric)


@pytest.mark.parametrize("metric", partition.SIMILARITIES)
def test_zero_and_bfloat16_features_stay_finite(metric):
  scores, feature = case_arrays(1, 2, 9)
  for f in (jnp.zeros_like(feature), feature.astype(jnp.bfloat16), feature * 1e-30):
    sim = partition.similarity(f, f, metric)
    assert np.all(np.isfinite(sim))
    idx = partition.s_stage(scores, f, 4, similarity_metric=metric)
    check_kept(idx, 9, 1, 4)


def test_jit_equals_eager():
  scores, feature = case_arrays(4, 2, 13)
  for part in partition.PARTITIONS:
    rng = jax.random.key(0) if part == "random" else None
    kw = dict(num_remove=5, partition=part, rng=rng)
    np.testing.assert_array_equal(
      partition.s_stage(scores, feature, **kw), s_stage_jit(scores, feature, **kw)
    )


class Outputs(NamedTuple):
  x_in: jax.Array
  queries: jax.Array
  keys: jax.Array
  values: jax.Array


def test_select_feature():
  rng = np.random.default_rng(0)
  B, H, N, dh, D = 2, 3, 5, 4, 12
  q, k, v = (jnp.asarray(rng.normal(size=(B, H, N, dh)), jnp.float32) for _ in range(3))
  x_in = jnp.asarray(rng.normal(size=(B, N, D)), jnp.float32)
  out = Outputs(x_in, q, k, v)
  np.testing.assert_allclose(partition.select_feature(out, "key"), k.mean(1), rtol=1e-6)
  np.testing.assert_allclose(partition.select_feature(out, "query"), q.mean(1), rtol=1e-6)
  np.testing.assert_allclose(partition.select_feature(out, "value"), v.mean(1), rtol=1e-6)
  np.testing.assert_array_equal(partition.select_feature(out, "x_in"), x_in)
  concat = partition.select_feature(out, "key_concat")
  assert concat.shape == (B, N, H * dh)
  np.testing.assert_array_equal(concat[:, :, dh : 2 * dh], k[:, 1])
  # Flax [B, N, H, dh] layout, singular names in a mapping.
  flax_layout = {"key": jnp.swapaxes(k, 1, 2)}
  np.testing.assert_allclose(
    partition.select_feature(flax_layout, "key", head_axis=2), k.mean(1), rtol=1e-6
  )
  with pytest.raises(ValueError, match="x_out"):
    partition.select_feature(out, "x_out")
  with pytest.raises(ValueError, match="feature"):
    partition.select_feature(out, "keys_mean")


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(partition="halves"), "partition"),
    (dict(similarity_metric="cos"), "similarity"),
    (dict(num_remove=6), "num_remove"),
    (dict(partition="full", num_remove=10), "num_remove"),
    (dict(num_remove=-1), "num_remove"),
    (dict(partition="random"), "rng"),
    (dict(rng=jax.random.key(0)), "rng"),
  ],
)
def test_invalid_options_raise(kwargs, match):
  scores, feature = case_arrays(0, 1, 10)  # 9 patch tokens: bipartite cap 5, full cap 9
  kwargs = {"num_remove": 2, **kwargs}
  with pytest.raises(ValueError, match=match):
    partition.s_stage(scores, feature, **kwargs)
