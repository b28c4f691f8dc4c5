"""Train-step cost of two models, measured side by side (issue 19's training estimate).

Command: `python -m experiments.bench_train_step --config=configs/bench_train_step.py`
Times jitted AdamW train steps (batch 128, augmentation and preprocessing included) of
the default 49-patch `vit_fmnist_patch4_28` and the 144-patch `vit_textured_patch8_96`,
interleaved so machine load hits both alike, and prints the medians and the last line
`ratio=<second over first>`. Our run (shared 2-core machine, other sessions running, load
average 7-9): medians 1.540 s and 4.742 s per step, `ratio=3.079`; the ratio moves with the
load (configs/train_textured_fmnist.py turns it into the training-time estimate).
`:runlocal`: 1-block models, batch 4, 2 runs (seconds).
"""

import ml_collections

from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  c = ml_collections.ConfigDict()
  c.model_names = ("vit_fmnist_patch4_28", "vit_textured_patch8_96")
  c.depth = ml_collections.config_dict.placeholder(int)  # None: each model's own depth
  c.batch_size = 128
  c.num_runs = 4
  c.seed = 0
  if arg.runlocal:
    c.depth = 1
    c.batch_size = 4
    c.num_runs = 2
  c.lock()
  return c
