"""`make demo`: build the default ViT, run it, round-trip a checkpoint, prune it.

Command: `python -m experiments.demo --config=configs/demo.py` (≈1 min on 2 CPU cores).
`:runlocal` shrinks it to seconds. Expected output: a report whose last line is
`demo_ok=1`; logits are finite, the safetensors round trip reproduces them exactly,
and Zero-TPrune at the deit_s_a schedule is reported with the token
counts per pruning layer, the measured speed-up and top-1 agreement (meaningless
on random weights; the trained default model arrives with its own issue).
Until the project ships trained weights (issue: embedded default model), the weights
are random with a fixed seed.
"""

import ml_collections

from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, model="deit_tiny_patch16_224")
  c = ml_collections.ConfigDict()
  c.model_name = arg.model
  c.model = ml_collections.ConfigDict()  # overrides of VisionTransformer fields
  c.checkpoint = ml_collections.config_dict.placeholder(str)
  c.batch_size = 8
  c.num_timed_runs = 3
  c.seed = 0
  # Zero-TPrune schedule: the deit_s_a preset's (configs/zero_tprune.py).
  c.prune_schedule = ml_collections.ConfigDict(dict(r=12, layers=tuple(range(11))))
  if arg.runlocal:
    c.model = ml_collections.ConfigDict(dict(depth=2, image_size=64))
    c.batch_size = 2
    c.num_timed_runs = 1
    c.prune_schedule = ml_collections.ConfigDict(dict(r=4, layers=(0,)))
  c.lock()
  return c
