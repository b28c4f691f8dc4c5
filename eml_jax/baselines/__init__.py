"""Online metric-learning baselines for the EML evaluation (spec §3), in one stream interface.

All are our own implementations of the published update rules, as `Method`s of the shared
one-pass interface of `eml_jax.baselines.online` (inputs standardised and scaled by
``1/√d``). Pairs and triplets come from OPML's one-pass construction as its authors' code
builds it (`online.opml_triplet`; `opml_latest` keeps the earlier variant). Where a paper
leaves a constant to the user (targets, thresholds) the choice is ours and says so.

One module per paper: `euclidean` (no learning), `opml` (OPML, OPML_WARM, OPML_LATEST), `oasis`,
`rdml`, `lego`, `opid`; `common` holds the init and embeddings they share.
"""

from eml_jax.baselines.euclidean import EUCLIDEAN
from eml_jax.baselines.lego import LEGO, lego_update
from eml_jax.baselines.oasis import OASIS, oasis_update
from eml_jax.baselines.online import (
  Method,
  OnlineState,
  init_online,
  knn_error,
  knn_predict_embedded,
  latest_pair,
  make_runner,
  online_step,
  opml_triplet,
  run_stream,
)
from eml_jax.baselines.opid import OPID, opid_update
from eml_jax.baselines.opml import OPML, OPML_LATEST, OPML_WARM, opml_update
from eml_jax.baselines.rdml import RDML, rdml_update

BASELINES = {m.name: m for m in (EUCLIDEAN, OPML, OPML_WARM, OPML_LATEST, OASIS, RDML, LEGO, OPID)}


def get_baseline(name: str) -> Method:
  """The baseline called ``name``; the error lists the valid names."""
  if name not in BASELINES:
    raise ValueError(f"unknown baseline {name!r}; valid: {sorted(BASELINES)}")
  return BASELINES[name]


__all__ = [
  "BASELINES",
  "EUCLIDEAN",
  "LEGO",
  "OASIS",
  "OPID",
  "OPML",
  "OPML_LATEST",
  "OPML_WARM",
  "RDML",
  "Method",
  "OnlineState",
  "get_baseline",
  "init_online",
  "knn_error",
  "knn_predict_embedded",
  "latest_pair",
  "lego_update",
  "make_runner",
  "oasis_update",
  "online_step",
  "opid_update",
  "opml_triplet",
  "opml_update",
  "rdml_update",
  "run_stream",
]
