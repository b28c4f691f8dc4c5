"""Token-pruning methods, their registry, FLOPs counts and schedule search.

Modules: `transforms` (methods as `TokenTransform`s: Zero-TPrune and the pruning
baselines, with kept-position tracking), `tome` (ToMe: bipartite soft matching and
proportional attention), `pruners` (the registry `PRUNERS`, `prune`, `count_flops`),
`flops` (the paper's MAC count from plain numbers) and `search` (Monte-Carlo schedule
search under a FLOPs budget).
"""

from ztprune_jax.pruning import flops, pruners, search, tome, transforms

__all__ = ["flops", "pruners", "search", "tome", "transforms"]
