"""Monte-Carlo schedule search: budgets, seeding, scores and errors on a tiny ViT.

Each sampled schedule compiles its own program (several seconds on 2 CPU cores), so the
searches here use the cheapest-to-compile method (``topk_cls_attn``) and few samples;
Zero-TPrune end to end is covered by `tests/test_search_experiment.py`.
"""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ztprune_jax as zt
from ztprune_jax.pruning import flops, pruners, search
from ztprune_jax.zero_tprune import partition, schedule

DEPTH, WIDTH, PATCHES, CLASSES = 4, 192, 16, 10
NUM_IMAGES = 8
BUDGET = 0.02  # GFLOPs; the unpruned tiny model costs 0.0305 (4 blocks of 17 tokens)
METHOD = "topk_cls_attn"
NUM_SAMPLES = 4


def _tiny_model():
  return zt.create_model(
    "deit_tiny_patch16_224", depth=DEPTH, image_size=32, patch_size=8, num_classes=CLASSES
  )


def _random_params(model, seed):
  """Gaussian params of ``model``'s tree (LayerNorm scales 1), built without compiling.

  ``jax.jit(model.init)`` takes seconds to compile on 2 CPU cores; only the tree matters
  here. The scale 0.1 is our choice: large enough that pruning moves the logits.
  """
  x = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), np.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  gen = np.random.default_rng(seed)

  def leaf(path, s):
    if path[-1].key == "scale":
      return np.ones(s.shape, np.float32)
    return (0.1 * gen.standard_normal(s.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


@pytest.fixture(scope="module")
def tiny():
  model = _tiny_model()
  images = np.random.default_rng(1).standard_normal((NUM_IMAGES, 32, 32, 3)).astype(np.float32)
  labels = np.arange(NUM_IMAGES) % CLASSES
  return model, _random_params(model, 0), images, labels


@pytest.fixture(scope="module")
def accuracy_search(tiny):
  model, params, images, labels = tiny
  return search.search_schedule(
    model,
    params,
    images,
    budget_gflops=BUDGET,
    num_samples=NUM_SAMPLES,
    seed=0,
    method=METHOD,
    score="accuracy",
    labels=labels,
    batch_size=3,  # 8 images: batches of 3, 3 and a padded 2
    progress=False,
  )


def _tokens(sched, depth, num_patches, part="seq_u"):
  plans = schedule.keep_ratio_schedule(sched, depth=depth, num_patches=num_patches, partition=part)
  return plans, schedule.tokens_per_block(plans, depth=depth, num_patches=num_patches)


def _macs(tokens, width):
  return sum(flops.block_macs(n, width) for n in tokens)


# ------------------------------------------------------------------------------------------
# sample_schedule (host only, no compilation).


@settings(max_examples=40, deadline=None)
@given(
  seed=st.integers(0, 2**31 - 1),
  depth=st.integers(2, 12),
  frac=st.floats(0.0, 1.0),
  part=st.sampled_from(partition.PARTITIONS),
  s_range=st.sampled_from([(0.0, 1.0), (0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]),
)
def test_sampled_schedule_respects_and_nearly_meets_the_budget(seed, depth, frac, part, s_range):
  kw = dict(depth=depth, num_patches=196, width=384)
  low, high = search.blocks_macs_range(**kw)
  budget = low + frac * (high - low)
  sched = search.sample_schedule(
    seed, budget_blocks_macs=budget, s_fraction_range=s_range, partition=part, **kw
  )
  plans, tokens = _tokens(sched, depth, 196, part)  # also checks the S-stage caps
  assert _macs(tokens, 384) <= budget
  # Near the budget: the bisection stops where one more token in every block would not fit.
  assert _macs([n + 1 for n in tokens], 384) > budget
  layers = [e[0] for e in sched]
  assert layers == sorted(set(layers)) and all(0 <= i < depth - 1 for i in layers)
  for (_, ratio, s), plan in zip(sched, plans, strict=True):
    assert 0.0 < ratio < 1.0 and not plan.is_noop
    assert s <= s_range[1]
    cap = partition.max_removable(plan.num_patches_in, part) / plan.num_remove
    assert s >= min(s_range[0], cap) - 1e-3  # rounded down to 3 decimals


def test_sampler_covers_layers_ratios_and_splits():
  kw = dict(depth=12, num_patches=196, width=384, budget_blocks_macs=3e9)
  draws = [search.sample_schedule(seed, **kw) for seed in range(30)]
  assert len(set(draws)) == 30
  assert len({len(d) for d in draws}) > 3  # the number of pruning layers varies
  s_values = [e[2] for d in draws for e in d]
  assert min(s_values) < 0.2 and max(s_values) > 0.8


def test_sampler_is_seeded():
  kw = dict(depth=DEPTH, num_patches=PATCHES, width=WIDTH, budget_blocks_macs=BUDGET * 1e9)
  a = search.sample_schedule(7, **kw)
  assert a == search.sample_schedule(7, **kw)
  assert a == search.sample_schedule(np.random.default_rng(7), **kw)
  assert search.sample_schedule(jax.random.key(3), **kw) == search.sample_schedule(
    jax.random.PRNGKey(3), **kw
  )
  gen = np.random.default_rng(0)
  seq = [search.sample_schedule(gen, **kw) for _ in range(5)]
  assert len(set(seq)) > 1  # a Generator advances


def test_budget_range_extremes():
  kw = dict(depth=DEPTH, num_patches=PATCHES, width=WIDTH)
  low, high = search.blocks_macs_range(**kw)
  assert high == zt.count_flops(_tiny_model())["blocks"]
  # Lowest: prune after blocks 0, 1, 2 at 0.25: 16 -> 4 -> 1 -> 1 patch tokens.
  assert low == _macs([17, 5, 2, 2], WIDTH)
  assert search.sample_schedule(0, budget_blocks_macs=high, **kw) == ()
  lowest = search.sample_schedule(0, budget_blocks_macs=low, **kw)
  assert _macs(_tokens(lowest, DEPTH, PATCHES)[1], WIDTH) == low


def test_sampler_errors():
  kw = dict(depth=DEPTH, num_patches=PATCHES, width=WIDTH)
  low, high = search.blocks_macs_range(**kw)
  with pytest.raises(ValueError, match="below what any sampled schedule"):
    search.sample_schedule(0, budget_blocks_macs=low - 1, **kw)
  with pytest.raises(ValueError, match="above the unpruned"):
    search.sample_schedule(0, budget_blocks_macs=high + 1, **kw)
  with pytest.raises(ValueError, match="s_fraction_range"):
    search.sample_schedule(0, budget_blocks_macs=high, s_fraction_range=(0.6, 0.4), **kw)
  with pytest.raises(ValueError, match="max_layers"):
    search.sample_schedule(0, budget_blocks_macs=high, max_layers=4, **kw)
  with pytest.raises(ValueError, match="layers"):
    search.sample_schedule(0, budget_blocks_macs=high, layers=[5], **kw)
  with pytest.raises(ValueError, match="min_keep_ratio"):
    search.sample_schedule(0, budget_blocks_macs=high, min_keep_ratio=0.0, **kw)


def test_draw_schedules_splits():
  model = _tiny_model()
  kw = dict(budget_gflops=BUDGET, num_samples=6, seed=0)
  zero = search.draw_schedules(model, method="zero_tprune", **kw)
  assert any(e[2] > 0 for d in zero for e in d)
  # Same seed, same layers and ratios whatever the method: only the split differs.
  for method in sorted(pruners.I_STAGE_ONLY):
    drawn = search.draw_schedules(model, method=method, **kw)
    assert [[e[:2] for e in d] for d in drawn] == [[e[:2] for e in d] for d in zero]
    assert all(e[2] == 0.0 for d in drawn for e in d)
  fixed = search.draw_schedules(model, method="zero_tprune", s_fraction=0.5, **kw)
  for d in fixed:
    for (_, _, s), plan in zip(d, _tokens(d, DEPTH, PATCHES)[0], strict=True):
      cap = partition.max_removable(plan.num_patches_in) / plan.num_remove
      assert s == min(0.5, math.floor(cap * 1000) / 1000)
  with pytest.raises(ValueError, match="no S-stage"):
    search.draw_schedules(model, method="wpr", s_fraction=0.5, **kw)


# ------------------------------------------------------------------------------------------
# Scores.


def test_metrics_against_hand_computed_values():
  ref = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # [N=2, K=3]
  same = search._metrics(ref, ref, np.array([0, 2]))
  assert same == {"top1_agreement": 1.0, "kl": 0.0, "accuracy": 0.5}
  flipped = ref[:, ::-1].copy()  # argmax 2 and 1
  p = np.exp(ref) / np.exp(ref).sum(-1, keepdims=True)
  q = np.exp(flipped) / np.exp(flipped).sum(-1, keepdims=True)
  kl = np.mean(np.sum(p * np.log(p / q), -1))
  got = search._metrics(ref, flipped, None)
  assert set(got) == {"top1_agreement", "kl"} and got["top1_agreement"] == 0.5
  np.testing.assert_allclose(got["kl"], kl, rtol=1e-12)
  np.testing.assert_allclose(search._metrics(ref, ref + 5.0, None)["kl"], 0.0, atol=1e-12)


# ------------------------------------------------------------------------------------------
# search_schedule (each distinct schedule compiles once).


def test_accuracy_search_table(tiny, accuracy_search):
  model, params, images, labels = tiny
  res = accuracy_search
  assert len(res.table) == NUM_SAMPLES and res.score == "accuracy"
  expected = search.draw_schedules(
    model, budget_gflops=BUDGET, num_samples=NUM_SAMPLES, seed=0, method=METHOD
  )
  assert [row["schedule"] for row in res.table] == expected
  for row in res.table:
    assert set(row) == {
      "schedule",
      "gflops",
      "overhead_gflops",
      "score",
      "top1_agreement",
      "kl",
      "accuracy",
    }
    assert row["score"] == row["accuracy"]
    assert row["gflops"] <= BUDGET
    assert row["gflops"] == zt.count_flops(model, row["schedule"], method=METHOD)["blocks"] / 1e9
    assert 0.0 <= row["top1_agreement"] <= 1.0 and row["kl"] >= 0.0
  scores = [row["accuracy"] for row in res.table]
  assert res.best_index == int(np.argmax(scores))
  assert res.best == res.table[res.best_index]["schedule"] and res.best_score == max(scores)
  np.testing.assert_allclose(res.unpruned_gflops, 0.030524928, rtol=1e-12)
  # Independent check of the best row: prune, run all 8 images in one batch, compare.
  pruned = zt.prune(model, METHOD, res.best)
  logits = jax.jit(lambda p, x: pruned.apply({"params": p}, x))(params, images)
  ref = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, images)
  np.testing.assert_allclose(
    res.unpruned_accuracy, np.mean(np.argmax(ref, -1) == labels), rtol=0, atol=0
  )
  np.testing.assert_allclose(
    res.best_score, np.mean(np.argmax(logits, -1) == labels), rtol=0, atol=0
  )
  want = search._metrics(np.asarray(ref), np.asarray(logits), labels)
  np.testing.assert_allclose(res.table[res.best_index]["kl"], want["kl"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("score", ["kl", "agreement"])
def test_same_seed_same_table_and_best_is_optimal(tiny, accuracy_search, score):
  model, params, images, _ = tiny
  res = search.search_schedule(
    model,
    params,
    images,
    budget_gflops=BUDGET,
    num_samples=2,
    seed=0,
    method=METHOD,
    score=score,
    batch_size=3,
    progress=True,
  )
  # The first two draws of seed 0 are those of the 4-sample run, and so are their rows.
  shared = ("schedule", "gflops", "overhead_gflops", "top1_agreement", "kl")
  for row, old in zip(res.table, accuracy_search.table[:2], strict=True):
    assert {k: row[k] for k in shared} == {k: old[k] for k in shared}
    assert "accuracy" not in row
  values = [row["score"] for row in res.table]
  best = int(np.argmin(values)) if score == "kl" else int(np.argmax(values))
  assert res.best_index == best and res.best == res.table[best]["schedule"]
  assert res.unpruned_accuracy is None


# ------------------------------------------------------------------------------------------
# Errors (all raised before anything compiles).


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(budget_gflops=0.001), "below what any sampled schedule"),
    (dict(budget_gflops=0.031), "above the unpruned"),
    (dict(num_samples=0), "num_samples"),
    (dict(score="top5"), "Unknown score"),
    (dict(score="accuracy"), "needs labels"),
    (dict(score="accuracy", labels=np.zeros(7, int)), r"shape \[N\]"),
    (dict(labels=np.zeros((8, 1), int)), r"shape \[N\]"),
    (dict(labels=np.zeros(8)), "integer"),
    (dict(method="no_such_method"), "Unknown pruning method"),
    (dict(batch_size=0), "batch_size"),
  ],
)
def test_search_errors(tiny, kwargs, match):
  model, params, images, _ = tiny
  kw = dict(budget_gflops=BUDGET, num_samples=2, seed=0, method=METHOD, progress=False)
  with pytest.raises(ValueError, match=match):
    search.search_schedule(model, params, images, **{**kw, **kwargs})


def test_search_needs_the_unpruned_model(tiny):
  model, params, images, _ = tiny
  with pytest.raises(ValueError, match="unpruned model"):
    search.search_schedule(
      zt.prune(model, METHOD, [(0, 0.5)]),
      params,
      images,
      budget_gflops=BUDGET,
      num_samples=1,
      seed=0,
      method=METHOD,
    )


def test_budget_at_unpruned_cost_keeps_every_token(tiny):
  model, params, images, _ = tiny
  res = search.search_schedule(
    model,
    params,
    images,
    budget_gflops=zt.count_flops(model)["blocks"] / 1e9,
    num_samples=3,
    seed=0,
    method="zero_tprune",
    score="kl",
    batch_size=8,
    progress=False,
  )
  # Every draw is the empty schedule (evaluated once, listed three times), which must
  # reproduce the unpruned logits: KL 0 and full agreement; ties go to the first row.
  assert [row["schedule"] for row in res.table] == [(), (), ()]
  for row in res.table:
    np.testing.assert_allclose(row["kl"], 0.0, atol=1e-12)
    assert row["top1_agreement"] == 1.0 and row["overhead_gflops"] == 0.0
  assert res.best_index == 0 and res.best == ()
