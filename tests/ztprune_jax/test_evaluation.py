"""evaluation.py: budget -> schedule, masked top-k accuracy, throughput, kept-patch maps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ztprune_jax as zt
from ztprune_jax import data
from ztprune_jax.eval import evaluation


def _tiny(**kw):
  cfg = dict(depth=2, image_size=16, patch_size=4, width=32, num_heads=2, mlp_dim=64)
  return zt.create_model("deit_tiny_patch16_224", **{**cfg, "num_classes": 7, **kw})


def test_schedule_for_budget_is_nearest_and_method_generic():
  model = _tiny()
  methods = [m for m in ("zero_tprune", "random", "topk_cls_attn", "tome") if m in zt.PRUNERS]
  for method in methods:
    opts = {} if method in ("zero_tprune", "tome") else {"s_fraction": 0.0}
    costs = {}
    for r in range(model.num_patches):
      try:
        pruned = zt.prune(model, method, {"r": r}, **opts)
      except ValueError:
        break
      costs[r] = zt.count_flops(pruned)["blocks"] / 1e9
    for budget in np.linspace(min(costs.values()), max(costs.values()), 7):
      bs = evaluation.schedule_for_budget(model, method, float(budget))
      best = min(abs(c - budget) for c in costs.values())
      assert math.isclose(abs(bs.gflops - budget), best, rel_tol=0, abs_tol=1e-15)
      assert bs.gflops == costs[bs.r]
  # Above the unpruned cost: no pruning.
  assert evaluation.schedule_for_budget(model, "zero_tprune", 10.0).r == 0


@pytest.mark.parametrize(
  "budget,match",
  [
    (0.0, "positive"),
    (-1.0, "positive"),
    (float("nan"), "finite"),
    (1e-9, "below"),
    ("2", "number"),
  ],
)
def test_schedule_for_budget_rejects_bad_budgets(budget, match):
  with pytest.raises(ValueError, match=match):
    evaluation.schedule_for_budget(_tiny(), "zero_tprune", budget)


def test_schedule_for_budget_unknown_method():
  with pytest.raises(ValueError, match="Unknown pruning method 'zero_prune'"):
    evaluation.schedule_for_budget(_tiny(), "zero_prune", 0.001)


def test_evaluate_counts_masked_topk_like_numpy(rng):
  model = _tiny()
  x = jax.random.normal(rng, (10, 16, 16, 3))
  params = model.init(rng, x[:1])["params"]
  logits = np.asarray(model.apply({"params": params}, x))
  labels = np.array(jax.random.randint(jax.random.key(1), (10,), 0, 7), np.int32)
  labels[:3] = logits[:3].argmax(-1)  # some hits for sure
  loader = data.BatchLoader(data.InMemorySource(np.asarray(x), labels), 4)  # 2 padded
  res = evaluation.evaluate(model, params, loader, progress=False)
  top5 = np.argsort(-logits, axis=-1)[:, :5]
  assert res.num_examples == 10
  assert res.top1 == pytest.approx(np.mean(logits.argmax(-1) == labels))
  assert res.top5 == pytest.approx(np.mean((top5 == labels[:, None]).any(-1)))
  # A pruned model goes through the same loop (and keeps every token at r=0).
  pruned = zt.prune(model, "zero_tprune", {"r": 0})
  assert evaluation.evaluate(pruned, params, loader, progress=False).top1 == res.top1


@pytest.fixture
def eval_traces(monkeypatch):
  """A list that grows by one each time `evaluation.eval_step` is traced (fresh step cache)."""
  traces = []
  real = evaluation.eval_step

  def counting(*a, **k):
    traces.append(1)
    return real(*a, **k)

  monkeypatch.setattr(evaluation, "eval_step", counting)
  evaluation._jitted_eval_step.cache_clear()  # earlier tests may have built the same step
  yield traces
  evaluation._jitted_eval_step.cache_clear()  # drop steps that trace the counting wrapper


def test_evaluate_compiles_once_per_shape(rng, eval_traces):
  model = _tiny()
  params = model.init(rng, jnp.zeros((1, 16, 16, 3)))["params"]
  src = data.InMemorySource(np.zeros((9, 16, 16, 3), np.float32), np.zeros(9, np.int32))
  evaluation.evaluate(model, params, data.BatchLoader(src, 4), progress=False)
  assert len(eval_traces) == 1  # 3 batches, last one padded: one trace


def test_eval_throughput_reuses_the_evaluation_program(rng, eval_traces):
  """`measure_eval_throughput` after `evaluate` at the same batch size traces nothing new."""
  params = _tiny().init(rng, jnp.zeros((1, 16, 16, 3)))["params"]
  model = zt.prune(_tiny(), "random", {"r": 3})
  src = data.InMemorySource(np.zeros((8, 16, 16, 3), np.float32), np.zeros(8, np.int32))
  traces = eval_traces
  evaluation.evaluate(model, params, data.BatchLoader(src, 4), progress=False)
  assert len(traces) == 1
  tp = evaluation.measure_eval_throughput(model, params, batch_size=4, image_shape=(16, 16, 3),
                                          iters=2)  # fmt: skip
  assert tp["img_per_s"] > 0 and tp["batch_size"] == 4
  assert len(traces) == 1  # the evaluation's program, not a new one
  evaluation.measure_eval_throughput(model, params, batch_size=2, image_shape=(16, 16, 3),
                                     iters=1)  # fmt: skip
  assert len(traces) == 2  # another batch shape does compile (the check can fail)
  with pytest.raises(ValueError, match="iters"):
    evaluation.measure_eval_throughput(model, params, batch_size=2, image_shape=(16, 16, 3),
                                       iters=0)  # fmt: skip


def test_evaluate_rejects_empty():
  model = _tiny()
  with pytest.raises(ValueError, match="no examples"):
    evaluation.evaluate(model, {}, [], progress=False)


def test_throughput_and_kept_masks(rng):
  model = _tiny()
  params = model.init(rng, jnp.zeros((1, 16, 16, 3)))["params"]
  tp = evaluation.measure_throughput(
    model, params, batch_size=2, image_shape=(16, 16, 3), warmup=1, iters=2
  )
  assert tp["img_per_s"] > 0 and tp["ms_per_batch"] > 0
  with pytest.raises(ValueError, match="warmup"):
    evaluation.measure_throughput(model, params, batch_size=2, image_shape=(16, 16, 3), warmup=0)
  pruned = zt.prune(model, "topk_cls_attn", {"r": 5}, s_fraction=0.0)
  _, state = pruned.apply({"params": params}, jnp.ones((2, 16, 16, 3)), return_state=True)
  masks = evaluation.kept_masks(pruned, state, 4)
  assert masks.shape == (2, 1, 4, 4)  # one pruning layer (depth 2)
  np.testing.assert_array_equal(masks.sum(axis=(2, 3)), 16 - 5)
  assert evaluation.kept_masks(model, None, 4) is None
