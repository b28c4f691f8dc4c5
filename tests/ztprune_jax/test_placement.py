"""Pruning between attention and MLP (`placement="after_attention"`) vs after the block."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.models.vit import Mlp
from ztprune_jax.pruning.transforms import PruneArgs

# Methods whose selection reads only the block's attention, keys or values (not its
# output tokens), so the two placements keep the same tokens; the MLP acts per token, so
# the kept tokens' values and the logits agree too.
SAME_SELECTION = ["zero_tprune", "wpr", "wpr_eir_vhf", "topk_cls_attn", "ats_like", "random"]
SCHEDULE = [(0, 0.5), (2, 0.75)]


def _run(model, params, images, capture=False):
  args = PruneArgs(rng=jax.random.key(5))
  kw = dict(return_state=True, transform_args=args)
  if capture:
    kw["capture_intermediates"] = lambda mdl, _: isinstance(mdl, Mlp)
    (logits, state), inter = model.apply({"params": params}, images, mutable=["intermediates"],
                                         **kw)  # fmt: skip
    return logits, state, inter["intermediates"]
  return (*model.apply({"params": params}, images, **kw), None)


def _mlp_tokens(inter, depth):
  """Tokens each block's MLP processed, read from the captured MLP outputs."""
  return tuple(inter[f"block_{i}"]["mlp"]["__call__"][0].shape[1] for i in range(depth))


@pytest.mark.parametrize("method", SAME_SELECTION)
def test_placements_keep_the_same_tokens_and_logits(tiny_vit, method):
  model, params, images = tiny_vit
  after_block = zt.prune(model, method, SCHEDULE)
  after_attn = zt.prune(model, method, SCHEDULE, placement="after_attention")
  lb, sb, _ = _run(after_block, params, images)
  la, sa, _ = _run(after_attn, params, images)
  for kb, ka in zip(sb.kept, sa.kept, strict=True):
    np.testing.assert_array_equal(np.asarray(kb), np.asarray(ka))
  np.testing.assert_allclose(np.asarray(la), np.asarray(lb), atol=2e-5, rtol=1e-5)


def test_after_attention_runs_the_pruning_blocks_mlp_on_the_kept_tokens(tiny_vit):
  model, params, images = tiny_vit
  n = 1 + model.num_patches  # 17
  _, _, inter_b = _run(zt.prune(model, "zero_tprune", SCHEDULE), params, images, capture=True)
  _, _, inter_a = _run(zt.prune(model, "zero_tprune", SCHEDULE, placement="after_attention"),
                       params, images, capture=True)  # fmt: skip
  assert _mlp_tokens(inter_b, model.depth) == (n, 9, 9, 7)
  assert _mlp_tokens(inter_a, model.depth) == (9, 9, 7, 7)


def test_count_flops_charges_the_pruning_blocks_mlp_on_the_kept_tokens(tiny_vit):
  model, _, _ = tiny_vit
  b = zt.count_flops(zt.prune(model, "random", SCHEDULE))
  a = zt.count_flops(zt.prune(model, "random", SCHEDULE, placement="after_attention"))
  assert a["tokens"] == b["tokens"] == (17, 9, 9, 7)
  assert a["mlp_tokens"] == (9, 9, 7, 7)
  # The MLP of blocks 0 and 2 skips the removed tokens: 8 and 2 tokens x 2·d·d_mlp MACs.
  saved = (8 + 2) * 2 * model.width * model.mlp_dim
  assert b["blocks"] - a["blocks"] == saved
  # The option form on an unpruned model counts the same as the pruned model.
  assert zt.count_flops(model, SCHEDULE, method="random", placement="after_attention") == a


def test_fusion_token_reaches_the_mlp_of_its_block(tiny_vit):
  model, _, _ = tiny_vit
  pruned = zt.prune(model, "topk_cls_attn", SCHEDULE, fuse_token=True, placement="after_attention")
  counts = zt.count_flops(pruned)
  assert counts["tokens"] == (17, 10, 10, 8)
  assert counts["mlp_tokens"] == (10, 10, 8, 8)


def test_unknown_placement_is_a_value_error(tiny_vit):
  model, _, _ = tiny_vit
  with pytest.raises(ValueError, match="placement 'middle'"):
    zt.prune(model, "zero_tprune", SCHEDULE, placement="middle")
  with pytest.raises(ValueError, match="placement"):
    zt.prune(model, "random", SCHEDULE, placement=nn.Module)
