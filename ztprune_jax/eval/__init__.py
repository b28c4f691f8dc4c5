"""The evaluation harness and the boundary between configs and the library.

Modules: `evaluation` (budget -> schedule, accuracy, throughput, kept-patch maps),
`fidelity` (label-free feature fidelity), `intervals` (95 % Wilson intervals and the
orderings of methods they allow), `plots` (matplotlib figures) and `eval_lib` (the only
module that reads ConfigDicts; experiments build models and pruned models through it).
`intervals` (scipy), `plots` (matplotlib) and `eval_lib` (absl) load on their own import,
not with the package.
"""

from ztprune_jax.eval import evaluation, fidelity

__all__ = ["eval_lib", "evaluation", "fidelity", "intervals", "kept_tokens", "plots"]
