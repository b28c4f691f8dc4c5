"""Zero-TPrune's open points one at a time, at one FLOPs budget (issue 19's verdict).

Commands (docs/zero_tprune_findings.md reports their output):
  python -m experiments.zero_tprune_findings --config=configs/zero_tprune_findings.py:fmnist \\
    --workdir=results/findings/fmnist
  python -m experiments.zero_tprune_findings --config=configs/zero_tprune_findings.py:textured \\
    --workdir=results/findings/textured
The DINOv2 backbone's feature fidelity under the same variants comes from
`experiments/dinov2_photos.py` (`configs/dinov2_photos.py:variants`).

Each variant changes one open point of the spec (../shared/specs/zero_tprune.md) away from
our reading (`paper_reading`: the library defaults, which `make demo` runs), everything
else equal; all share one constant-r schedule at `budget_fraction` of the unpruned
blocks-only GFLOPs (only `after_attention` moves it: pruning before the MLP saves that
MLP's FLOPs too, so the same budget removes fewer tokens). Reference methods run in the
same harness at the same budget. Every variant is evaluated on two disjoint splits of
the test set:
  calibration: test images [0, calib_size) -- the split `make demo` searches schedules on;
    the only split a new default may be chosen on;
  evaluation: [calib_size, calib_size + eval_size) -- what the findings report.
Paired differences to `paper_reading` (McNemar's exact test) on both.

Arg keys (`--config=configs/zero_tprune_findings.py:textured,eval_size=1000`):
  model: `fmnist` (the shipped 49-patch model) or `textured` (the 144-patch textured
    Fashion-MNIST model, models/vit_textured).
  eval_size: images in the evaluation split (default 5000 for fmnist, 3000 textured).
  runlocal: a 2-block random ViT on 48 + 64 images, three variants and one reference
    (seconds; plumbing only).
"""

from configs import eval as eval_config
from configs.common import parse_arg

# variant -> (the spec's open point it answers, overrides of the zero_tprune options).
VARIANTS = {
  "paper_reading": ("(our reading of every open point; library defaults)", {}),
  "cls_init_sqrt_n": ("CLS initial weight", {"cls_init": "sqrt_n"}),
  "vhf_raw_scale": ("VHF variance scale", {"variance_scale": "raw"}),
  "vhf_include_cls": ("VHF variance over CLS too", {"include_cls": True}),
  "prime_one_vote": ("I' iterations", {"prime_iters": 1}),
  "reuse_prime_scores": ("I-stage re-runs WPR", {"rerun_wpr": False}),
  "wpr_iters_high": ("WPR iterations, high end (50/10/1)", {"wpr_iters": (50, 10, 1)}),
  "s_share_25": ("S/I split", {"s_fraction": 0.25}),
  "s_share_75": ("S/I split", {"s_fraction": 0.75}),
  "feature_key_concat": ("S-stage feature", {"feature": "key_concat"}),
  "feature_x_in": ("S-stage feature", {"feature": "x_in"}),
  "feature_x_out": ("S-stage feature", {"feature": "x_out"}),
  "partition_seq_i": ("S-stage partition", {"partition": "seq_i"}),
  "partition_alternate": ("S-stage partition", {"partition": "alternate"}),
  "partition_random": ("S-stage partition", {"partition": "random"}),
  "partition_full": ("S-stage partition", {"partition": "full"}),
  "after_attention": ("placement (between attention and MLP)", {"placement": "after_attention"}),
}
# reference -> (method, option overrides): the same budget and harness, for scale.
REFERENCES = {
  "random": ("random", {}),
  "random_after_attention": ("random", {"placement": "after_attention"}),
  "tome": ("tome", {}),
  "wpr_eir_vhf": ("wpr_eir_vhf", {}),
}


def get_config(arg=None):
  arg = parse_arg(arg, positional="model", model="fmnist", eval_size=0, runlocal=False)
  if arg.model not in ("fmnist", "textured"):
    raise ValueError(f"Unknown model {arg.model!r}; valid: ['fmnist', 'textured']")
  c = eval_config.base_config("fmnist_default", arg.runlocal)
  c.model_key = arg.model
  c.checkpoint = "models/vit_fmnist/vit_fmnist_patch4_28.safetensors"
  c.budget_fraction = 0.65  # of the unpruned blocks-only GFLOPs (the demo's ladder budget)
  c.calib_size = 500  # test images 0..499
  c.eval_size = arg.eval_size or 5000  # the next eval_size images
  c.data.batch_size = 250
  c.variants = tuple(VARIANTS)
  c.references = tuple(REFERENCES)
  c.throughput.enabled = False
  c.progress = True
  if arg.model == "textured":
    c.model_name = "vit_textured_patch8_96"
    c.checkpoint = "models/vit_textured/vit_textured_patch8_96.safetensors"
    c.data.name = "textured_fmnist"
    c.eval_size = arg.eval_size or 3000
  if arg.runlocal:
    c.checkpoint = None
    c.calib_size = 48
    c.eval_size = 64
    c.data.batch_size = 32
    c.variants = ("paper_reading", "after_attention", "partition_full")
    c.references = ("random",)
    c.progress = False
  c.lock()
  return c
