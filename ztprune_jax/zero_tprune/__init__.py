"""Zero-TPrune's kernels: the paper's I-stage, S-stage and schedules, as pure functions.

Modules: `wpr` (Weighted PageRank, the I-stage scores), `heads` (EIR and VHF head
reduction), `partition` (S-stage partitions, features, similarities), `keep`
(order-preserving top-k and gathers), `layer` (the I′ → S → I pruning layer) and
`schedule` (where and how much to prune, as Python ints).
"""

from ztprune_jax.zero_tprune import heads, keep, layer, partition, schedule, wpr

__all__ = ["heads", "keep", "layer", "partition", "schedule", "wpr"]
