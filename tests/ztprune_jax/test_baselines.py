"""Baselines: ToMe (parity with the reference, invariants), EViT fusion token, ATS-like, counts."""

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax.models.hooks import BlockOutput, TokenTransform
from ztprune_jax.pruning import pruners, tome
from ztprune_jax.pruning.transforms import AtsLike, PruneArgs, PruneState, TopKClsAttn
from ztprune_jax.zero_tprune.schedule import LayerPlan

FIXTURE = pathlib.Path(__file__).parent.parent / "fixtures" / "tome_reference"
PARITY_ATOL = 1e-4  # float32 logits, as for the timm parity tests
SCHEDULE = [(0, 0.5), (2, 0.5)]  # 16 -> 8 -> 4 patch tokens on the 64-px tiny model


@pytest.fixture(scope="module")
def setup():
  model = zt.create_model("deit_tiny_patch16_224", depth=4, image_size=64, num_classes=10)
  images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  params = jax.jit(model.init)(jax.random.key(0), images)["params"]
  return model, params, images


def _apply(model, params, images, return_state=False):
  """Jitted forward (eager flax is slow on a shared CPU); a fixed key for random methods."""

  @jax.jit
  def fwd(p, x):
    args = PruneArgs(rng=jax.random.key(0))
    return model.apply({"params": p}, x, return_state=return_state, transform_args=args)

  return fwd(params, images)


# ------------------------------------------------------------------------------------------
# ToMe: parity with facebookresearch/ToMe (fixture from tests/fixtures/make_tome_reference.py).


# The default run checks these cases; the others (r0, decreasing, capped, distilled r=5)
# run with the slow tests.
_DEFAULT_CASES = ("r4", "r4_no_prop_attn", "r_list", "distilled_r_list")


def _fixture_cases():
  meta = json.loads(str(np.load(FIXTURE / "reference.npz", allow_pickle=False)["meta"]))
  return [
    pytest.param(c, marks=() if c in _DEFAULT_CASES else pytest.mark.slow)
    for c in sorted(meta["cases"])
  ]


@pytest.mark.parametrize("case", _fixture_cases())
def test_tome_matches_reference_implementation(case):
  ref = np.load(FIXTURE / "reference.npz", allow_pickle=False)
  meta = json.loads(str(ref["meta"]))
  c, sizes = meta["cases"][case], meta["sizes"]
  spec = meta["models"][c["model"]]
  model = zt.create_model(
    spec["name"],
    depth=spec["depth"],
    width=sizes["embed_dim"],
    num_heads=sizes["num_heads"],
    mlp_dim=4 * sizes["embed_dim"],
    image_size=sizes["img_size"],
    num_classes=sizes["num_classes"],
  )
  params = zt.load_checkpoint(FIXTURE / f"{c['model']}.safetensors", model)
  r = tuple(c["r"]) if c["r_form"] == "tuple" else c["r"]
  pruned = zt.prune(model, "tome", r=r, prop_attn=c["prop_attn"])
  logits, state = _apply(pruned, params, ref["images"], return_state=True)
  np.testing.assert_allclose(logits, ref[f"logits/{case}"], atol=PARITY_ATOL, rtol=0)
  np.testing.assert_array_equal(state.source, ref[f"source/{case}"])


# ------------------------------------------------------------------------------------------
# ToMe: invariants on a random model.


def test_tome_r0_equals_unpruned(setup):
  model, params, images = setup
  for pruned in (zt.prune(model, "tome", r=0), zt.prune(model, "tome", 0)):
    np.testing.assert_array_equal(_apply(pruned, params, images), _apply(model, params, images))


def test_tome_sizes_sources_and_smooth_logits(setup):
  model, params, images = setup
  n0 = 1 + model.num_patches
  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x))
  base = fwd(params, images)
  image_scale = float(jnp.abs(fwd(params, images[::-1]) - base).max())  # between images
  prev = base
  for r in (1, 2, 3):
    logits, state = _apply(zt.prune(model, "tome", r=r), params, images, return_state=True)
    assert bool(jnp.all(jnp.isfinite(logits)))
    n = state.size.shape[1]
    assert n == zt.count_flops(zt.prune(model, "tome", r=r))["mlp_tokens"][-1]
    np.testing.assert_allclose(state.size.sum(axis=1), n0)  # sizes account for every token
    counts = np.stack([np.bincount(s, minlength=n) for s in np.asarray(state.source)])
    np.testing.assert_array_equal(counts, state.size)  # source map agrees with sizes
    assert bool(jnp.all(state.pos[:, 0] == 0)) and bool(jnp.all(state.source[:, 0] == 0))
    step = float(jnp.abs(logits - prev).max())
    assert 0 < step < image_scale, (r, step, image_scale)  # one more merge per block: small
    prev = logits


def _pair_model_and_images():
  """A model without position embedding and an image whose patches 0 and 3 are equal."""
  model = zt.create_model("deit_tiny_patch16_224", depth=2, image_size=64, num_classes=10)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
  images[:, :16, 48:64] = images[:, :16, 0:16]  # patch 3 := patch 0 (tokens 1 and 4)
  params = jax.jit(model.init)(jax.random.key(0), images)["params"]
  params["embed"]["pos_embed"] = jnp.zeros_like(params["embed"]["pos_embed"])
  return model, params, jnp.asarray(images)


def test_merging_identical_tokens_with_proportional_attention_changes_nothing():
  # ToMe, Sec. 3: a token of size 2 with log(2) added to its key logit acts as the pair.
  model, params, images = _pair_model_and_images()
  base = _apply(model, params, images)
  merged = zt.prune(model, "tome", r=[1])
  logits, state = _apply(merged, params, images, return_state=True)
  assert state.source.shape == (2, 17) and bool(jnp.all(state.source[:, 1] == state.source[:, 4]))
  np.testing.assert_allclose(logits, base, atol=1e-5, rtol=0)
  # Without proportional attention the merged token counts once: the logits move.
  plain = _apply(zt.prune(model, "tome", r=[1], prop_attn=False), params, images)
  assert float(jnp.abs(plain - base).max()) > 1e-3


def test_tome_r_forms_follow_the_reference_rules(setup):
  model = setup[0]
  assert tome.parse_r(4, 3) == (3, 3, 3, 3)
  assert tome.parse_r(4, [5, 1]) == (5, 1, 0, 0)
  assert tome.parse_r(4, (4, -1.0)) == (8, 5, 2, 0)
  assert zt.prune(model, "tome", r=4, decreasing=True).token_transform.r == (8, 5, 2, 0)
  assert zt.prune(model, "tome", {"r": 4, "decreasing": True}).token_transform.r == (8, 5, 2, 0)
  assert zt.prune(model, "tome", {"r": 3, "layers": [0, 2]}).token_transform.r == (3, 0, 3, 0)
  # a keep-ratio schedule becomes merges inside the same blocks
  assert zt.prune(model, "tome", SCHEDULE).token_transform.r == (8, 0, 4)
  attn, mlp = tome.merge_counts((8, 8, 8, 8), num_tokens=17, num_prefix=1)
  assert attn == (17, 9, 5, 3) and mlp == (9, 5, 3, 2)  # capped at half the patches


# ------------------------------------------------------------------------------------------
# Every method: the token counts the forward pass uses are the ones count_flops assumes.


@dataclasses.dataclass(frozen=True)
class _Recorder(TokenTransform):
  """Delegates to ``inner`` and records (attention tokens, MLP tokens) per block."""

  inner: Any = None
  log: Any = dataclasses.field(default=None, compare=False, hash=False)

  def init_state(self, x, num_prefix, args=None):
    return self.inner.init_state(x, num_prefix, args)

  def attn_bias(self, layer, state):
    return self.inner.attn_bias(layer, state)

  def after_attention(self, layer, x, out, state):
    x2, state = self.inner.after_attention(layer, x, out, state)
    self.log.append((x.shape[1], x2.shape[1]))
    return x2, state

  def after_block(self, layer, x, out, state):
    return self.inner.after_block(layer, x, out, state)


VARIANTS = [(m, {}) for m in sorted(pruners.PRUNERS)] + [
  ("topk_cls_attn", {"fuse_token": True}),
  ("tome", {"r": 3}),
]


@pytest.mark.parametrize("method, options", VARIANTS, ids=lambda v: str(v))
def test_token_counts_match_count_flops(setup, method, options):
  model, params, images = setup
  sched = None if "r" in options else SCHEDULE
  pruned = zt.prune(model, method, sched, **options)
  log = []
  rec = pruned.clone(token_transform=_Recorder(pruned.token_transform, log))
  args = PruneArgs(rng=jax.random.key(0))
  logits = jax.eval_shape(lambda: rec.apply({"params": params}, images, transform_args=args))
  assert logits.shape == (2, 10)
  counts = zt.count_flops(pruned)
  assert tuple(a for a, _ in log) == counts["tokens"]
  assert tuple(m for _, m in log) == counts["mlp_tokens"]
  if method != "tome" and not options:  # hard pruners at one budget: one token count
    assert counts["tokens"] == (17, 9, 9, 5)
  if options.get("fuse_token"):
    assert counts["tokens"] == (17, 10, 10, 6)
  # count_flops on the unpruned model with the same arguments agrees
  assert zt.count_flops(model, sched, method=method, **options)["tokens"] == counts["tokens"]


def test_tome_flops_count_merged_mlp_tokens_and_matching():
  full = zt.count_flops("deit_small_patch16_224")
  model = zt.create_model("deit_small_patch16_224")
  c = zt.count_flops(zt.prune(model, "tome", r=8))
  assert c["tokens"][0] == 197 and c["mlp_tokens"][0] == 189 and c["mlp_tokens"][-1] == 101
  assert c["blocks"] < full["blocks"] and c["overhead"] > 0
  assert c["total_with_overhead"] == c["total"] + c["overhead"]


# ------------------------------------------------------------------------------------------
# EViT fusion token and ATS-like.


def _block_output(x, cls_row):
  """A BlockOutput whose every head's CLS attention row is ``cls_row [B, N]``."""
  b, n, d = x.shape
  attn = jnp.broadcast_to(cls_row[:, None, None, :], (b, 2, n, n))
  v = jnp.broadcast_to(x.reshape(b, n, 2, d // 2).transpose(0, 2, 1, 3), (b, 2, n, d // 2))
  return BlockOutput(x, attn, v, v, v)


def test_fusion_token_is_the_attention_weighted_sum_of_dropped_tokens():
  x = jax.random.normal(jax.random.key(0), (1, 7, 4))
  cls_row = jnp.array([[0.1, 0.3, 0.05, 0.2, 0.15, 0.12, 0.08]])
  plan = LayerPlan(0, 6, 6, 3, 0)
  t = TopKClsAttn((plan,), 1, fuse_token=True)
  state = t.init_state(x, 1)
  y, state = t.after_block(0, x, _block_output(x, cls_row), state)
  assert y.shape == (1, 1 + 3 + 1, 4)
  np.testing.assert_array_equal(state.pos, [[0, 1, 3, 4, -1]])  # top-3 patches, then fused
  want = 0.05 * x[0, 2] + 0.12 * x[0, 5] + 0.08 * x[0, 6]
  np.testing.assert_allclose(y[0, -1], want, rtol=1e-6)


def test_ats_like_masks_duplicate_samples():
  x = jax.random.normal(jax.random.key(0), (1, 7, 4))
  x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)  # equal value norms: scores = attention
  cls_row = jnp.array([[0.1, 0.85, 0.01, 0.01, 0.01, 0.01, 0.01]])  # patch 1 dominates
  plan = LayerPlan(0, 6, 6, 4, 0)
  t = AtsLike((plan,), 1)
  y, state = t.after_block(0, x, _block_output(x, cls_row), t.init_state(x, 1))
  assert y.shape == (1, 5, 4)
  pos = np.asarray(state.pos[0])
  assert pos[0] == 0 and (np.diff(pos) >= 0).all() and (pos == 1).sum() >= 2
  repeat = np.concatenate([[False], pos[1:] == pos[:-1]])
  np.testing.assert_array_equal(np.asarray(state.bias[0]) < 0, repeat)
  assert t.attn_bias(1, state) is state.bias


def test_masked_duplicate_changes_no_other_token(setup):
  model, params, images = setup
  p = params["block_1"]
  block = zt.models.vit.Block(192, 3, 768)
  x = jax.random.normal(jax.random.key(2), (1, 5, 192))
  dup = jnp.concatenate([x, x[:, 2:3]], axis=1)  # token 5 repeats token 2
  bias = jnp.array([[0.0] * 5 + [-1e9]])
  fwd = jax.jit(lambda x, bias=None: block.apply({"params": p}, x, bias)[0])
  y, y_dup = fwd(x), fwd(dup, bias)
  np.testing.assert_allclose(y_dup[:, :5], y, atol=1e-5, rtol=0)
  np.testing.assert_allclose(y_dup[:, 5], y[:, 2], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
  "method, options", [("topk_cls_attn", {"fuse_token": True}), ("ats_like", {})]
)
def test_fusion_and_ats_run_end_to_end(setup, method, options):
  model, params, images = setup
  pruned = zt.prune(model, method, SCHEDULE, **options)
  logits, state = _apply(pruned, params, images, return_state=True)
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  extra = int(bool(options))
  assert [k.shape for k in state.kept] == [(2, 1 + 8 + extra), (2, 1 + 4 + extra)]
  assert isinstance(state, PruneState)


def test_random_is_seeded_and_uniform(setup):
  model, params, images = setup

  def kept_fn():  # a fresh model and a fresh compile each time
    pruned = zt.prune(model, "random", SCHEDULE)

    @jax.jit
    def kept(seed):
      args = PruneArgs(rng=jax.random.key(seed))
      return pruned.apply({"params": params}, images, return_state=True, transform_args=args)[1]

    return kept

  first, again = kept_fn(), kept_fn()
  for a, b in zip(first(1).kept, again(1).kept, strict=True):  # same seed: same tokens
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first(1).kept[0], first(2).kept[0])
  # Uniform: over 200 seeds x 2 images each patch survives the first layer (8 of 16) with
  # probability 1/2 and the second (4 of 16) with 1/4. Binomial(400, p) stays within 4.5
  # standard deviations of its mean except with probability < 3e-4 over all 32 counts.
  counts = np.zeros((2, 16))
  for seed in range(200):
    state = first(seed)
    for layer, kept in enumerate(state.kept):
      kept = np.asarray(kept)
      assert (kept[:, 0] == 0).all() and (np.diff(kept, axis=1) > 0).all()
      np.add.at(counts[layer], kept[:, 1:].ravel() - 1, 1)
  for layer, p in enumerate((0.5, 0.25)):
    sd = np.sqrt(400 * p * (1 - p))
    assert np.all(np.abs(counts[layer] - 400 * p) < 4.5 * sd), counts[layer]


# ------------------------------------------------------------------------------------------
# Bad arguments.


@pytest.mark.parametrize(
  "method, sched, options, match",
  [
    ("tome", None, dict(r=-1), "r"),
    ("tome", None, dict(r="8"), "r"),
    ("tome", None, dict(r=[1, 2, 3, 4, 5]), "depth"),
    ("tome", None, dict(r=(4, 2.0)), "inflect"),
    ("tome", None, dict(r=[2], decreasing=True), "decreasing"),
    ("tome", 4, dict(r=4), "not both"),
    ("tome", None, dict(r=4, prop_attn="yes"), "prop_attn"),
    ("tome", [(0, 0.25)], {}, "half"),
    ("tome", None, dict(r=4, bogus=1), "bogus"),
    ("topk_cls_attn", SCHEDULE, dict(fuse_token=1), "fuse_token"),
    ("ats_like", SCHEDULE, dict(fuse_token=True), "takes no options"),
  ],
)
def test_bad_baseline_arguments_raise(setup, method, sched, options, match):
  with pytest.raises(ValueError, match=match):
    zt.prune(setup[0], method, sched, **options)


def test_tome_on_a_model_with_other_prefix_raises(setup):
  with pytest.raises(ValueError, match="num_prefix"):
    tome.ToMe((1,), num_prefix=3)
