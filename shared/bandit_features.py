"""The contextual bandit's features of a (shopper, candidate bundle) pair, defined once.

The ranker computes them for its candidates when it chooses a list and returns them with each shown
bundle; the storefront sends them back with the impression, so the policy updater learns from the
very values the choice was made with (no skew between serving and learning, whatever changed in
between). Names and order are :data:`FEATURES`; a policy snapshot names the features its weights are
for, and the ranker serves a snapshot only when the names are these.

- ``intercept``: 1.
- ``ranker_score``: the ranker's score, standardised within the candidates (scores have no common
  scale across shoppers or models).
- ``log_popularity``: ``log(1 + purchases)`` of the bundle, over :data:`POPULARITY_SCALE` (about
  [0, 1] for catalogs like ours).
- ``ranker_reciprocal_rank``: ``1 / (1 + rank)`` in the ranker's order.
- ``shopper_looks``: ``log(1 + looks)``, where every earlier impression showing this shopper the
  bundle at position ``p`` added :func:`examination_prior` of ``p`` (the online store's
  ``user_bundle_looks``): a shopper who keeps seeing a bundle without clicking it is a signal the
  non-adaptive ranker ignores.
- ``shopper_clicked_before``: 1 when the shopper clicked the bundle before, else 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set

FEATURES = (
    "intercept",
    "ranker_score",
    "log_popularity",
    "ranker_reciprocal_rank",
    "shopper_looks",
    "shopper_clicked_before",
)
POPULARITY_SCALE = 8.0
# Bounds on what an impression may log: room for more features, and values far beyond any defined here.
MAX_LOGGED_FEATURES = 16
MAX_ABS_FEATURE_VALUE = 1e6


def examination_prior(position: int) -> float:
    """How likely a shopper is to look at ``position`` (0 at the top), a priori: ``1 / (1 + position)``."""
    return 1.0 / (1.0 + position)


def candidate_features(
    ranked: Sequence[tuple[str, float]],
    purchases: Mapping[str, int],
    looks: Mapping[str, float],
    clicked: Set[str],
) -> list[tuple[float, ...]]:
    """:data:`FEATURES` of each candidate of ``ranked`` (``(bundle id, ranker score)``, the ranker's
    best first), in that order. ``purchases``, ``looks`` and ``clicked`` are the bundles' purchase
    counts and the shopper's looks and clicks; a bundle missing from them has none."""
    if not ranked:
        return []
    scores = [score for _, score in ranked]
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return [
        (
            1.0,
            (score - mean) / spread if spread > 0 else 0.0,
            math.log1p(purchases.get(bundle_id, 0)) / POPULARITY_SCALE,
            1.0 / (1.0 + rank),
            math.log1p(looks.get(bundle_id, 0.0)),
            1.0 if bundle_id in clicked else 0.0,
        )
        for rank, (bundle_id, score) in enumerate(ranked)
    ]
