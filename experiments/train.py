"""Supervised training of a ViT on Fashion-MNIST, resumable, exporting safetensors.

`python -m experiments.train --config=configs/train_fashion_mnist.py:runlocal
--workdir=/tmp/train` trains, evaluates on the test split every epoch, saves an orbax
checkpoint every epoch (rerunning with the same workdir resumes from the latest one),
writes TensorBoard scalars and `<workdir>/final.safetensors`; the last line is
`test_top1=<x>`. See configs/train_fashion_mnist.py (and configs/train_textured_fmnist.py,
``data.name="textured_fmnist"``: garments composited on photographs on the fly).
"""

import functools
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import flags, logging
from ml_collections import config_flags
from tqdm import tqdm

import parallel_jax as parallel
import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax.data import textured_fmnist
from ztprune_jax.data.fashion_mnist import load_fashion_mnist
from ztprune_jax.train import training

_CONFIG = config_flags.DEFINE_config_file(
  "config", "configs/train_fashion_mnist.py", "Training config."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and the export go here.")


def _init_params(c, model, key):
  """Seeded init; with ``c.init`` every weight but the classifier head comes from it."""
  size = model.image_size
  dummy = jnp.zeros((1, size, size, model.in_channels), jnp.float32)
  params = flax.core.unfreeze(jax.jit(model.init)(key, dummy)["params"])
  if not c.init:
    return params, f"random init (seed {c.seed})"
  body = zt.load_checkpoint(c.init, model.clone(num_classes=0), strict=False)
  params.update(flax.core.unfreeze(body))
  return params, f"{c.init} (head re-initialised)"


def _evaluate(eval_fn, params, images, labels, batch_size, mesh):
  """Top-1 and mean loss over all ``images [N, ...]`` in fixed-size (padded) batches."""
  n = len(images)
  tot = {"correct": 0.0, "loss": 0.0, "count": 0.0}
  for s in range(0, n, batch_size):
    x, y = images[s : s + batch_size], labels[s : s + batch_size]
    m = len(x)
    valid = np.arange(batch_size) < m
    if m < batch_size:  # pad to the static batch shape
      x = np.concatenate([x, np.zeros((batch_size - m, *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros(batch_size - m, y.dtype)])
    (x, y, valid), _ = parallel.pad_batch((x, y, valid), parallel.local_multiple(mesh))
    out = jax.device_get(eval_fn(params, *parallel.shard_batch(mesh, (x, y, valid))))
    for k in tot:
      tot[k] += float(out[k])
  return tot["correct"] / tot["count"], tot["loss"] / tot["count"]


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)

  train_x, train_y = load_fashion_mnist("train", c.data.data_dir, verify=c.data.verify)
  test_x, test_y = load_fashion_mnist("test", c.data.data_dir, verify=c.data.verify)
  if c.data.num_train:
    train_x, train_y = train_x[: c.data.num_train], train_y[: c.data.num_train]
  if c.data.num_test:
    test_x, test_y = test_x[: c.data.num_test], test_y[: c.data.num_test]
  textured = None  # textured Fashion-MNIST: train composites made per batch, test ones once
  if c.data.get("name", "fashion_mnist") == "textured_fmnist":
    t = c.data.textured
    kw = dict(seed=t.seed, image_size=t.image_size, scale=tuple(t.scale), zoom=tuple(t.zoom))
    textured = textured_fmnist.TexturedFashionMNIST(train_x, train_y, "train", **kw)
    test_x, test_y = textured_fmnist.generate(test_x, test_y, "test", progress=c.progress, **kw)
    print(f"textured     train photos {textured.photos}, test composites {test_x.shape}")
  n = len(train_x)
  if c.batch_size > n:
    raise ValueError(f"batch_size {c.batch_size} exceeds the {n} training images")
  steps_per_epoch = n // c.batch_size  # the last partial batch is dropped (static shapes)
  total_steps = steps_per_epoch * c.num_epochs

  overrides = {k: v for k, v in c.model.to_dict().items() if v is not None}
  model = zt.create_model(c.model_name, num_classes=c.num_classes, **overrides)
  key = jax.random.key(c.seed)
  init_key, aug_key = jax.random.split(key)
  params, weights = _init_params(c, model, init_key)
  tx, lr_schedule = training.make_optimizer(
    learning_rate=c.learning_rate,
    total_steps=total_steps,
    warmup_steps=c.warmup_epochs * steps_per_epoch,
    weight_decay=c.weight_decay,
    end_learning_rate=c.end_learning_rate,
    grad_clip_norm=c.grad_clip_norm,
  )
  state = training.create_train_state(params, tx)
  prep = functools.partial(
    training.preprocess,
    mean=tuple(c.data.mean),
    std=tuple(c.data.std),
    image_size=model.image_size,
    in_channels=model.in_channels,
  )
  # Data parallel over every device (and host): state replicated, batches split on "data".
  mesh = parallel.make_mesh()
  train_step = parallel.data_parallel(
    mesh,
    functools.partial(
      training.train_step,
      model=model,
      tx=tx,
      prep=prep,
      pad=c.augment.pad,
      flip=c.augment.flip,
      label_smoothing=c.label_smoothing,
    ),
    batch_argnums=(1, 2),
    donate_argnums=(0,),
  )
  eval_fn = parallel.data_parallel(
    mesh, functools.partial(training.eval_step, model=model, prep=prep), (1, 2, 3)
  )

  mngr = ocp.CheckpointManager(
    os.path.join(workdir, "checkpoints"),
    options=ocp.CheckpointManagerOptions(max_to_keep=c.keep_checkpoints, create=True),
  )
  latest = mngr.latest_step()
  if latest is not None:
    state = mngr.restore(latest, args=ocp.args.StandardRestore(state))
    logging.info("Resumed from step %d", latest)
  state = parallel.replicate(mesh, state)
  start_epoch = int(state.step) // steps_per_epoch
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  print(f"model        {c.model_name} {overrides} ({num_params / 1e6:.3f} M params)")
  print(f"weights      {weights}")
  print(f"data         {n} train / {len(test_x)} test images, {steps_per_epoch} steps/epoch")
  if start_epoch:
    print(f"resumed      from epoch {start_epoch} (step {int(state.step)})")

  from clu import metric_writers  # noqa: PLC0415 (imports TensorFlow: slow, so only here)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start_epoch == 0:
    writer.write_hparams({k: str(v) for k, v in c.to_dict().items()})
  stop = c.num_epochs if c.stop_after_epochs is None else min(c.num_epochs, c.stop_after_epochs)
  t_start = time.time()
  test_top1 = test_loss = None
  for epoch in range(start_epoch, stop):
    order = np.random.default_rng([c.seed, epoch]).permutation(n)
    t_epoch = time.time()
    acc, window = None, 0  # summed train metrics and the number of steps they cover
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{c.num_epochs}",
               disable=not c.progress, leave=False)  # fmt: skip
    for i in bar:
      idx = order[i * c.batch_size : (i + 1) * c.batch_size]
      idx = idx[parallel.host_batch_slice(len(idx))]  # this host's rows of the global batch
      step = int(state.step)
      if textured is None:
        xb, yb = train_x[idx], train_y[idx]
      else:  # fresh composites every epoch unless `fresh_every_epoch` is off
        xb, yb = textured.get(idx, epoch=epoch if c.data.textured.fresh_every_epoch else 0)
      x, y = parallel.shard_batch(mesh, (xb, yb))
      state, m = train_step(state, x, y, jax.random.fold_in(aug_key, step))
      acc = m if acc is None else jax.tree.map(jnp.add, acc, m)
      window += 1
      if (step + 1) % c.log_every_steps == 0 or i == steps_per_epoch - 1:
        means = {f"train_{k}": float(v) / window for k, v in jax.device_get(acc).items()}
        means["learning_rate"] = float(lr_schedule(step))
        writer.write_scalars(step + 1, means)
        bar.set_postfix(loss=f"{means['train_loss']:.3f}", acc=f"{means['train_accuracy']:.3f}")
        acc, window = None, 0
    train_seconds = time.time() - t_epoch
    ips = steps_per_epoch * c.batch_size / train_seconds
    scalars = {"train_img_per_s": ips, "epoch": epoch + 1}
    if (epoch + 1) % c.eval_every_epochs == 0 or epoch + 1 == c.num_epochs:
      test_top1, test_loss = _evaluate(
        eval_fn, state.params, test_x, test_y, c.eval_batch_size, mesh
      )
      scalars.update(test_top1=test_top1, test_loss=test_loss)
    writer.write_scalars(int(state.step), scalars)
    writer.flush()
    mngr.save(int(state.step), args=ocp.args.StandardSave(state))
    mngr.wait_until_finished()
    top1 = "" if test_top1 is None else f" test_top1 {test_top1:.4f}"
    print(f"epoch {epoch + 1:3d}  {train_seconds:7.1f} s  {ips:7.1f} img/s{top1}", flush=True)
  mngr.close()
  if stop < c.num_epochs:
    print(f"stopped after epoch {stop} of {c.num_epochs} (stop_after_epochs); rerun to resume")
    return
  if test_top1 is None:  # resumed after the last epoch: evaluate the restored state
    test_top1, test_loss = _evaluate(eval_fn, state.params, test_x, test_y, c.eval_batch_size, mesh)
  export = os.path.join(workdir, c.export_file)
  zt.save_checkpoint(jax.device_get(state.params), export)
  summary = {
    "model_name": c.model_name,
    "model": overrides,
    "num_classes": c.num_classes,
    "test_top1": test_top1,
    "test_loss": test_loss,
    "num_test": len(test_x),
    "steps": int(state.step),
    "epochs": c.num_epochs,
    "wall_seconds_this_run": time.time() - t_start,
    "export": export,
  }
  with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  writer.close()
  print(f"exported     {export}")
  print(f"test_top1={test_top1:.6g}")


if __name__ == "__main__":
  cli.run(main)
