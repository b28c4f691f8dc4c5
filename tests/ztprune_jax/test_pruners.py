"""`prune()` and the method registry on the Flax ViT: equivalence, shapes, tracing, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.pruning import pruners
from ztprune_jax.pruning.transforms import PruneArgs
from ztprune_jax.zero_tprune.layer import ZeroTPruneHParams

METHODS = sorted(pruners.PRUNERS)
# Methods that hard-prune to distinct tokens in original order (ToMe reorders as the
# reference does; ats_like may repeat a sample): see tests/ztprune_jax/test_baselines.py.
HARD_PRUNING = [m for m in METHODS if m not in ("tome", "ats_like")]


def _apply(model, params, images, **kw):
  return model.apply({"params": params}, images, **kw)


@pytest.mark.parametrize("method", METHODS)
def test_keep_all_equals_unpruned(tiny_vit, method):
  model, params, images = tiny_vit
  pruned = pruners.prune(model, method, [(0, 1.0), (1, 1.0), (3, 1.0)])
  args = PruneArgs(rng=jax.random.key(0))
  np.testing.assert_array_equal(
    _apply(pruned, params, images, transform_args=args), _apply(model, params, images)
  )


@pytest.mark.parametrize("method", METHODS)
def test_pruned_params_tree_is_the_base_tree(tiny_vit, method):
  model, params, images = tiny_vit
  pruned = pruners.prune(model, method, [(1, 0.5)])
  args = PruneArgs(rng=jax.random.key(0))
  variables = pruned.init(jax.random.key(0), images, transform_args=args)
  assert jax.tree.structure(variables["params"]) == jax.tree.structure(params)


@pytest.mark.parametrize("method", HARD_PRUNING)
def test_kept_positions_follow_the_schedule(tiny_vit, method):
  model, params, images = tiny_vit
  pruned = pruners.prune(model, method, [(0, 0.5), (2, 0.5)])
  logits, state = _apply(
    pruned, params, images, return_state=True, transform_args=PruneArgs(rng=jax.random.key(3))
  )
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  assert [k.shape for k in state.kept] == [(2, 1 + 8), (2, 1 + 4)]
  for kept in state.kept:
    kept = np.asarray(kept)
    assert (kept[:, 0] == 0).all()  # CLS kept, first
    assert (np.diff(kept, axis=1) > 0).all()  # original order, no duplicates
  first, second = (np.asarray(k) for k in state.kept)
  for b in range(2):
    assert set(second[b]) <= set(first[b])  # later layers keep a subset


def test_distilled_model_keeps_both_prefix_tokens():
  model = zt.create_model("deit_tiny_distilled_patch16_224", depth=2, image_size=64)
  images = jnp.ones((1, 64, 64, 3))
  params = model.init(jax.random.key(0), images)["params"]
  pruned = pruners.prune(model, "zero_tprune", [(0, 0.5)])
  _, state = _apply(pruned, params, images, return_state=True)
  assert state.kept[0].shape == (1, 2 + 8)
  np.testing.assert_array_equal(state.kept[0][0, :2], [0, 1])


def test_compiles_once_per_schedule_and_not_per_hparams(tiny_vit):
  model, params, images = tiny_vit
  pruned = pruners.prune(model, "zero_tprune", [(1, 0.5)])
  traces = []

  @jax.jit
  def fwd(p, x, hp):
    traces.append(1)
    return _apply(pruned, p, x, transform_args=PruneArgs(hparams=hp))

  for lo, hi in ((0.01, 0.7), (0.0, 10.0), (0.2, 0.3)):
    fwd(params, images, ZeroTPruneHParams(v_range=(jnp.float32(lo), jnp.float32(hi))))
  assert len(traces) == 1


def test_flops_of_paper_schedules():
  # Spec: unpruned DeiT-S ~4.54 G blocks-only (paper prints 4.55); 3/6/9 schedule ~3.49 G.
  base = pruners.count_flops("deit_small_patch16_224")
  sched = pruners.count_flops("deit_small_patch16_224", [(2, 0.9), (5, 0.8), (8, 0.7)])
  assert round(base["blocks"] / 1e9, 2) == 4.54
  assert round(sched["blocks"] / 1e9, 2) == 3.49
  model = zt.create_model("deit_small_patch16_224")
  pruned = pruners.prune(model, "zero_tprune", [(2, 0.9), (5, 0.8), (8, 0.7)])
  assert pruners.count_flops(pruned) == sched


@pytest.mark.parametrize("method", ["zero_tprune", "topk_cls_attn"])
def test_flops_agree_with_xla_cost_analysis(tiny_vit, method):
  model, params, images = tiny_vit
  pruned = pruners.prune(model, method, [(0, 0.5), (2, 0.5)])
  args = PruneArgs(rng=jax.random.key(0))
  for m in (model, pruned):
    fn = jax.jit(lambda p, x, m=m: _apply(m, p, x, transform_args=args))
    cost = fn.lower(params, images).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla_macs = cost["flops"] / 2 / images.shape[0]
    ours = pruners.count_flops(m)["total_with_overhead"]
    # XLA also counts elementwise work (LayerNorm, softmax, GELU) that the paper's
    # convention leaves out, so it may only exceed ours, and by a few percent.
    assert 1.0 <= xla_macs / ours <= 1.10, (m.token_transform, xla_macs, ours)


def test_random_needs_a_key(tiny_vit):
  model, params, images = tiny_vit
  with pytest.raises(ValueError, match="PRNG key"):
    _apply(pruners.prune(model, "random", [(0, 0.5)]), params, images)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(method="zero_tpruen"), "zero_tprune"),
    (dict(method="zero_tprune", partition="halves"), "partition"),
    (dict(method="zero_tprune", bogus=1), "bogus"),
    (dict(method="wpr", s_fraction=0.5), "s_fraction"),
    (dict(method="random", feature="key"), "takes no options"),
  ],
)
def test_invalid_options_raise(tiny_vit, kwargs, match):
  model = tiny_vit[0]
  with pytest.raises(ValueError, match=match):
    pruners.prune(model, schedule=[(0, 0.5)], **kwargs)


@pytest.mark.parametrize(
  "sched, match",
  [([(0, 1.5)], "keep"), ([(9, 0.5)], "layer|block"), (200, "r|remove|token"), ({"x": 1}, "r")],
)
def test_invalid_schedules_raise(tiny_vit, sched, match):
  with pytest.raises(ValueError, match=match):
    pruners.prune(tiny_vit[0], "zero_tprune", sched)


def test_schedule_for_another_image_size_raises(tiny_vit):
  model, params, _ = tiny_vit
  pruned = pruners.prune(model, "zero_tprune", [(0, 0.5)])
  with pytest.raises(ValueError, match="patch tokens"):
    _apply(pruned, params, jnp.ones((1, 96, 96, 3)))


# Every registry entry pinned: the ablation ladder's head reduction and VHF, the full
# method's defaults, the baselines' classes. Behaviour behind these options is checked
# against hand-made attention in tests/ztprune_jax/test_layer_oracle.py.
_LADDER = {
  "wpr": dict(head_reduce="mean", vhf=False),
  "wpr_eir": dict(head_reduce="rms", vhf=False),
  "wpr_eir_vhf": dict(head_reduce="rms", vhf=True),
  "zero_tprune": dict(
    head_reduce="rms",
    vhf=True,
    partition="seq_u",
    feature="key",
    similarity="cosine",
    rerun_wpr=True,
    cls_init="uniform",
    variance_scale="mean_one",
    include_cls=False,
  ),
}
_BASELINES = {
  "topk_cls_attn": "TopKClsAttn",
  "ats_like": "AtsLike",
  "random": "RandomDrop",
  "tome": "ToMe",
}


def test_every_registry_entry_is_pinned():
  assert set(pruners.PRUNERS) == set(_LADDER) | set(_BASELINES)
  assert pruners.I_STAGE_ONLY == set(pruners.PRUNERS) - {"zero_tprune"}


@pytest.mark.parametrize("method", sorted(_LADDER))
def test_ladder_rungs_have_their_options(tiny_vit, method):
  model = tiny_vit[0]
  pruner = pruners.prune(model, method, [(0, 0.5), (2, 0.5)]).token_transform
  assert type(pruner).__name__ == "ZeroTPrune" and pruner.num_prefix == 1
  for name, value in _LADDER[method].items():
    assert getattr(pruner.options, name) == value, (method, name)
  # The rungs below the full method have no S-stage: every removal is the I-stage's.
  s_removals = [p.num_patches_in - p.num_keep_s for p in pruner.plans]
  assert (sum(s_removals) == 0) == (method != "zero_tprune")


@pytest.mark.parametrize("method", sorted(_BASELINES))
def test_baseline_entries_build_their_classes(tiny_vit, method):
  pruner = pruners.prune(tiny_vit[0], method, [(0, 0.5)]).token_transform
  assert type(pruner).__name__ == _BASELINES[method]


def test_ladder_rung_refuses_a_head_reduction_other_than_its_preset(tiny_vit):
  model, _, _ = tiny_vit
  sched = {"r": 2, "layers": [0]}
  with pytest.raises(ValueError, match="fixes"):
    pruners.prune(model, "wpr", sched, s_fraction=0.0, head_reduce="rms")
  with pytest.raises(ValueError, match="vhf"):
    pruners.prune(model, "wpr_eir", sched, s_fraction=0.0, vhf=True)
  # The preset's own values are accepted (a config may spell them out).
  rung = pruners.prune(model, "wpr_eir_vhf", sched, head_reduce="rms", vhf=True)
  assert rung.token_transform.options.head_reduce == "rms" and rung.token_transform.options.vhf
