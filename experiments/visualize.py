"""PNG grid of the patches each method keeps after each pruning layer.

`python -m experiments.visualize --config=configs/visualize.py:runlocal --workdir=/tmp/vis`
writes `<workdir>/kept_patches.png`; the last line is `panels=<rows of the grid>`. See
configs/visualize.py.
"""

import os

from absl import flags
from ml_collections import config_flags

import ztprune_jax as zt
from experiments import cli, common
from ztprune_jax.eval import eval_lib, plots

_CONFIG = config_flags.DEFINE_config_file("config", "configs/visualize.py", "Visualize config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the PNG goes.")


def main(argv):
  del argv
  c, workdir = common.start(_CONFIG, _WORKDIR)
  if c.num_images < 1:
    raise ValueError(f"num_images={c.num_images} must be >= 1")
  model = eval_lib.build_model(c)
  methods = [m for m in c.methods if m in zt.PRUNERS]
  for m in methods:  # a bad budget or r fails before any work
    eval_lib.schedule_for(c, model, m, c.budget_gflops, field="config.budget_gflops")
  c.unlock()
  c.data.num_examples = c.num_images
  c.data.batch_size = c.num_images
  c.lock()
  loader, data_desc = eval_lib.build_loader(c, model)
  params, weights = eval_lib.load_params(c, model)
  images = next(iter(loader)).images  # [n, H, W, C]
  print(f"model     {c.model_name} {eval_lib.model_overrides(c)}")
  print(f"weights   {weights}")
  print(f"data      {data_desc}")
  panels = {}
  for method in c.methods:
    if method not in methods:
      print(f"skip      {method}: not registered in ztprune_jax.PRUNERS")
      continue
    panels[method], bs = eval_lib.method_panel(c, model, params, images, method, c.budget_gflops)
    note = panels[method] if isinstance(panels[method], str) else ""
    note = " ".join(filter(None, (note, eval_lib.tome_caps(c, model, method, bs))))
    print(f"method    {method}: {bs.gflops:.4g} GFLOPs (r={bs.r}) {note}")
  transform = eval_lib.build_transform(c, model)
  path = os.path.join(workdir, c.plot_file)
  plots.plot_kept_patches(
    images, panels, path, patch_size=model.patch_size, mean=transform.mean, std=transform.std
  )
  print(f"wrote     {path}")
  print(f"panels={len(panels) * images.shape[0]}")


if __name__ == "__main__":
  cli.run(main)
