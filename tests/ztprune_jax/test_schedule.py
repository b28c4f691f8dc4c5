"""Pruning schedules resolve to consistent Python ints and reject bad options by name."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztprune_jax.zero_tprune import partition, schedule
from ztprune_jax.zero_tprune.schedule import LayerPlan

DEIT_S = dict(depth=12, num_patches=196)


def check_chain(plans, num_patches: int, part: str = "seq_u"):
  m = num_patches
  for p in plans:
    assert all(isinstance(v, int) for v in p)
    assert p.num_patches_in == m
    assert 1 <= p.num_keep_i <= p.num_keep_s <= p.num_patches_in
    assert p.num_patches_in - p.num_keep_s <= partition.max_removable(p.num_patches_in, part)
    m = p.num_keep_i
  assert [p.layer for p in plans] == sorted({p.layer for p in plans})


def test_paper_finetune_schedule_on_deit_s():
  plans = schedule.keep_ratio_schedule(schedule.PAPER_FINETUNE_KEEP_RATIOS, **DEIT_S)
  assert [p.layer for p in plans] == [2, 5, 8]  # after blocks 3/6/9, 1-indexed
  assert [p.num_patches_in for p in plans] == [196, 176, 140]
  assert [p.num_keep_i for p in plans] == [176, 140, 98]
  assert [p.num_iters for p in plans] == [30, 5, 5]
  # Even S/I split, halves rounded towards the S-stage.
  assert [p.num_keep_s for p in plans] == [186, 158, 119]
  assert (
    schedule.tokens_per_block(plans, **DEIT_S) == (197,) * 3 + (177,) * 3 + (141,) * 3 + (99,) * 3
  )
  assert schedule.tokens_per_block(plans, **DEIT_S, num_prefix=2)[-1] == 100


def test_wpr_iterations_by_depth():
  assert [schedule.wpr_iters_by_depth(i, 12) for i in range(12)] == [30] * 3 + [5] * 6 + [1] * 3
  assert [schedule.wpr_iters_by_depth(i, 12, (50, 10, 1)) for i in (0, 5, 11)] == [50, 10, 1]
  assert [schedule.wpr_iters_by_depth(i, 4) for i in range(4)] == [30, 30, 30, 1]
  assert schedule.wpr_iters_by_depth(6, 12, 7) == 7
  with pytest.raises(ValueError, match="iters"):
    schedule.wpr_iters_by_depth(0, 12, (30, 5))
  with pytest.raises(ValueError, match="layer"):
    schedule.wpr_iters_by_depth(12, 12)


def test_split_budget():
  assert schedule.split_budget(196, 20) == (186, 176)
  assert schedule.split_budget(196, 21) == (185, 175)  # 10.5 rounds up to the S-stage
  assert schedule.split_budget(196, 20, 0.0) == (196, 176)
  assert schedule.split_budget(196, 20, 1.0) == (176, 176)
  assert schedule.split_budget(10, 6, 1.0, partition="full") == (4, 4)
  with pytest.raises(ValueError, match="s_fraction"):
    schedule.split_budget(10, 6, 1.0)  # the bipartite S-stage drops at most 5 of 10


def test_keep_ratio_one_gives_noop_layers():
  plans = schedule.keep_ratio_schedule([(3, 1.0), (7, 1.0)], **DEIT_S)
  assert all(p.is_noop and p.num_keep_s == 196 for p in plans)
  assert schedule.tokens_per_block(plans, **DEIT_S) == (197,) * 12


def test_rounding_and_per_layer_split():
  plans = schedule.keep_ratio_schedule([(0, 0.5, 0.0), (1, 0.55)], depth=4, num_patches=11)
  assert plans[0] == LayerPlan(0, 11, 11, 5, 30)  # floor(5.5); s_fraction 0: no S-stage
  assert plans[1].num_keep_i == 2  # floor(2.75)
  rounded = schedule.keep_ratio_schedule([(0, 0.5)], depth=4, num_patches=11, rounding="round")
  assert rounded[0].num_keep_i == 6


def test_tome_r_schedules():
  constant = schedule.tome_r_schedule(8, **DEIT_S)
  assert [p.layer for p in constant] == list(range(11))
  assert all(p.num_remove == 8 for p in constant)
  assert constant[-1].num_keep_i == 196 - 88
  ramp = schedule.tome_r_schedule(8, **DEIT_S, decreasing=True)
  removed = [p.num_remove for p in ramp]
  assert removed[0] == 16 and removed[-1] == 0
  assert all(a >= b for a, b in zip(removed, removed[1:], strict=False))
  assert abs(sum(removed) - 88) <= 2
  check_chain(ramp, 196)
  custom = schedule.tome_r_schedule(4, **DEIT_S, layers=(0, 11))
  assert [p.layer for p in custom] == [0, 11]


@settings(max_examples=50, deadline=None)
@given(
  layers=st.lists(st.integers(0, 11), min_size=1, max_size=12, unique=True),
  ratios=st.lists(st.floats(0.75, 1.0), min_size=12, max_size=12),
  s_fraction=st.floats(0.0, 1.0),
  part=st.sampled_from(partition.PARTITIONS),
)
def test_random_keep_ratio_schedules_chain(layers, ratios, s_fraction, part):
  entries = [(layer, ratios[i]) for i, layer in enumerate(layers)]
  plans = schedule.keep_ratio_schedule(entries, **DEIT_S, s_fraction=s_fraction, partition=part)
  check_chain(plans, 196, part)
  tokens = schedule.tokens_per_block(plans, **DEIT_S)
  assert tokens[0] == 197 and all(a >= b for a, b in zip(tokens, tokens[1:], strict=False))


@pytest.mark.parametrize(
  "entries, kwargs, match",
  [
    ([(2, 0.0)], {}, "keep_ratio"),
    ([(2, 1.5)], {}, "keep_ratio"),
    ([(2, -0.1)], {}, "keep_ratio"),
    ([(2, 0.001)], {}, "keep_ratio"),  # keeps no patch token
    ([(12, 0.9)], {}, "layer"),  # DeiT-S has blocks 0..11
    ([(-1, 0.9)], {}, "layer"),
    ([(2, 0.9), (2, 0.8)], {}, "layer"),
    ([(2, 0.9, 1.5)], {}, "s_fraction"),
    ([(2, 0.9)], {"partition": "halves"}, "partition"),
    ([(2, 0.9)], {"rounding": "ceil"}, "rounding"),
    ([(2, 0.3)], {"s_fraction": 1.0}, "s_fraction"),  # S-stage cannot drop 138 of 196
    ([(2,)], {}, "schedule entry"),
  ],
)
def test_invalid_keep_ratio_schedules_raise(entries, kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedule.keep_ratio_schedule(entries, **DEIT_S, **kwargs)


@pytest.mark.parametrize(
  "r, kwargs, match",
  [
    (18, {}, "r=18"),  # 11 x 18 = 198 > 196 patch tokens
    (-1, {}, "r=-1"),
    (4, {"layers": (3, 12)}, "layer"),
    (4, {"partition": "halves"}, "partition"),
  ],
)
def test_invalid_r_schedules_raise(r, kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedule.tome_r_schedule(r, **DEIT_S, **kwargs)


def test_removal_schedule_rejects_removing_every_token():
  with pytest.raises(ValueError, match="more tokens than exist"):
    schedule.removal_schedule([(0, 100), (1, 96)], **DEIT_S)
