"""MAC counts in the paper's convention, checked against its DeiT-S numbers and XLA."""

import jax
import jax.numpy as jnp
import pytest

from ztprune_jax.pruning import flops
from ztprune_jax.zero_tprune import schedule

DEIT_S = dict(depth=12, width=384, mlp_ratio=4.0)


def test_unpruned_deit_s_is_4_54_gmacs_blocks_only():
  out = flops.count_flops(**DEIT_S, num_tokens_per_block=[197] * 12)
  assert out["blocks"] == 12 * (12 * 197 * 384**2 + 2 * 197**2 * 384)
  assert round(out["blocks"] / 1e9, 2) == 4.54  # the paper's tables print 4.55
  assert out["patch_embed"] == 196 * 3 * 16 * 16 * 384
  assert out["head"] == 384 * 1000
  assert out["total"] == out["blocks"] + out["patch_embed"] + out["head"]
  assert round(out["total"] / 1e9, 2) == 4.60
  assert out["overhead"] == 0 and out["total_with_overhead"] == out["total"]


def test_paper_finetune_schedule_is_3_49_gmacs_blocks_only():
  plans = schedule.keep_ratio_schedule(
    schedule.PAPER_FINETUNE_KEEP_RATIOS, depth=12, num_patches=196
  )
  tokens = schedule.tokens_per_block(plans, depth=12, num_patches=196)
  out = flops.count_flops(**DEIT_S, num_tokens_per_block=tokens, num_heads=6, pruning_layers=plans)
  assert round(out["blocks"] / 1e9, 2) == 3.49
  assert out["per_block"][3] == flops.block_macs(177, 384)
  # Pruning overhead: positive, well under 1% of the blocks.
  assert 0 < out["overhead"] < 0.01 * out["blocks"]
  reuse = flops.count_flops(
    **DEIT_S, num_tokens_per_block=tokens, num_heads=6, pruning_layers=plans, rerun_wpr=False
  )
  assert reuse["overhead"] < out["overhead"]


def test_overhead_of_one_layer_by_hand():
  plan = schedule.LayerPlan(layer=2, num_patches_in=8, num_keep_s=5, num_keep_i=4, num_iters=3)
  # I' WPR on 9 tokens, key head mean (9 x 16), 4 x 4 sources x destinations x 8 channels,
  # I-stage WPR re-run on 1 + 5 tokens.
  expected = 3 * 2 * 81 + 9 * 16 + 4 * 4 * 8 + 3 * 2 * 36
  assert flops.pruning_overhead_macs(plan, num_heads=2, width=16) == expected
  full = flops.pruning_overhead_macs(plan, num_heads=2, width=16, partition="full")
  assert full == expected - 4 * 4 * 8 + 8 * 8 * 8


def test_mlp_ratio_enters_the_block_count():
  assert flops.block_macs(10, 8, mlp_ratio=2.0) == 4 * 10 * 64 + 2 * 10 * 8 * 16 + 2 * 100 * 8
  assert flops.block_macs(10, 8) == 12 * 10 * 64 + 2 * 100 * 8


def _block(x, wqkv, wo, w1, w2, *, num_heads):
  """A plain pre-LN-free ViT block (matmul structure only) for XLA's cost analysis."""
  n, d = x.shape
  q, k, v = (t.reshape(n, num_heads, d // num_heads) for t in jnp.split(x @ wqkv, 3, -1))
  a = jax.nn.softmax(jnp.einsum("qhd,khd->hqk", q, k), axis=-1)
  x = x + jnp.einsum("hqk,khd->qhd", a, v).reshape(n, d) @ wo
  return x + jax.nn.gelu(x @ w1) @ w2


@pytest.mark.parametrize("n", [17, 64])
def test_block_count_matches_xla_cost_analysis(n):
  d, heads, ratio = 128, 4, 4
  shapes = [(n, d), (d, 3 * d), (d, d), (d, ratio * d), (ratio * d, d)]
  args = [jnp.ones(s, jnp.float32) for s in shapes]
  fn = jax.jit(lambda *a: _block(*a, num_heads=heads))
  cost = fn.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  # XLA counts 2 FLOPs per MAC, plus element-wise work (softmax, GELU, adds): a few %.
  ratio_xla = cost["flops"] / (2 * flops.block_macs(n, d, ratio))
  assert 1.0 <= ratio_xla < 1.05, ratio_xla


def test_invalid_arguments_raise():
  with pytest.raises(ValueError, match="num_tokens_per_block"):
    flops.count_flops(**DEIT_S, num_tokens_per_block=[197] * 11)
  with pytest.raises(ValueError, match="num_tokens_per_block"):
    flops.count_flops(**DEIT_S, num_tokens_per_block=[197] * 11 + [0])
  plan = schedule.LayerPlan(2, 196, 186, 176, 30)
  with pytest.raises(ValueError, match="num_heads"):
    flops.count_flops(**DEIT_S, num_tokens_per_block=[197] * 12, pruning_layers=[plan])
  with pytest.raises(ValueError, match="feature"):
    flops.pruning_overhead_macs(plan, num_heads=6, width=384, feature="keys")
