"""A tiny bundle dataset with planted taste clusters, for tests that models learn something.

``CLUSTERS`` tastes; item, bundle and user ``x`` belong to cluster ``x % CLUSTERS``. A bundle holds
6 items of its cluster; a user has 6 items of their cluster and 7 bundles of it: 5 for training,
1 for tune and 1 for test. A model that finds the clusters ranks a held-out bundle among the
``BUNDLES_PER_CLUSTER - 5`` unmasked bundles of its cluster; a random one among all but 5.
"""

from __future__ import annotations

import random

from services.ranker.offline.data import BundleRecData, bundle_rec_data

CLUSTERS = 4
N_USERS = 96
N_ITEMS = 96
N_BUNDLES = 80
BUNDLES_PER_CLUSTER = N_BUNDLES // CLUSTERS
TRAIN_BUNDLES_PER_USER = 5
CHANCE_RECALL_AT_10 = 10 / (N_BUNDLES - TRAIN_BUNDLES_PER_USER)
"""Expected Recall@10 of random scores: one test positive among the unmasked bundles."""


def of_cluster(count: int, cluster: int) -> list[int]:
    return [x for x in range(count) if x % CLUSTERS == cluster]


def synthetic_pairs(seed: int = 7) -> dict[str, list[tuple[int, int]]]:
    """The dataset's pairs by name: ``train``, ``tune``, ``test``, ``user_item``, ``bundle_item``."""
    rng = random.Random(seed)
    pairs: dict[str, list[tuple[int, int]]] = {
        name: [] for name in ("train", "tune", "test", "user_item", "bundle_item")
    }
    for bundle in range(N_BUNDLES):
        for item in rng.sample(of_cluster(N_ITEMS, bundle % CLUSTERS), 6):
            pairs["bundle_item"].append((bundle, item))
    for user in range(N_USERS):
        cluster = user % CLUSTERS
        for item in rng.sample(of_cluster(N_ITEMS, cluster), 6):
            pairs["user_item"].append((user, item))
        bundles = rng.sample(of_cluster(N_BUNDLES, cluster), TRAIN_BUNDLES_PER_USER + 2)
        pairs["train"] += [(user, bundle) for bundle in bundles[:TRAIN_BUNDLES_PER_USER]]
        pairs["tune"].append((user, bundles[-2]))
        pairs["test"].append((user, bundles[-1]))
    return pairs


def synthetic_data(seed: int = 7) -> BundleRecData:
    pairs = synthetic_pairs(seed)
    return bundle_rec_data(
        N_USERS,
        N_BUNDLES,
        N_ITEMS,
        train=pairs["train"],
        tune=pairs["tune"],
        test=pairs["test"],
        user_item=pairs["user_item"],
        bundle_item=pairs["bundle_item"],
    )
