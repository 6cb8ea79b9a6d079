"""A bundle-recommendation dataset as torch tensors: interaction pairs, sparse graphs, held-out splits.

Ids are 0-based row numbers, the same as in the dataset files. Every sparse matrix is a binary
coalesced sparse COO tensor of float32 (duplicate pairs count once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from services.ranker.offline.graphs import sparse_matrix
from shared.datasets.youshu import YoushuSplit

Pairs = list[tuple[int, int]]


@dataclass(frozen=True)
class HeldOutSplit:
    """The ground truth of one held-out user-bundle split, laid out for full ranking.

    ``users`` holds, ascending, every user with at least one pair in the split (the papers average
    over exactly these). Row ``r`` of a score matrix for ``users`` belongs to ``users[r]``.
    ``positive_rows``/``positive_bundles`` list the split's pairs as (row, bundle id), sorted by row;
    ``excluded_rows``/``excluded_bundles`` list those users' training pairs the same way, which
    evaluation masks before ranking.
    """

    name: str
    users: torch.Tensor
    positive_rows: torch.Tensor
    positive_bundles: torch.Tensor
    excluded_rows: torch.Tensor
    excluded_bundles: torch.Tensor

    @property
    def n_users(self) -> int:
        return int(self.users.numel())


@dataclass(frozen=True)
class BundleRecData:
    """Training graphs and held-out splits of one bundle-recommendation dataset.

    ``train_pairs`` [N, 2] (user, bundle), ``user_item_pairs`` [M, 2] and ``bundle_item_pairs``
    [K, 2] are deduplicated int64 pairs sorted by their first column, then second. ``user_bundle``
    [n_users, n_bundles], ``user_item`` [n_users, n_items] and ``bundle_item`` [n_bundles, n_items]
    are the same pairs as binary sparse matrices.
    """

    n_users: int
    n_bundles: int
    n_items: int
    train_pairs: torch.Tensor
    user_item_pairs: torch.Tensor
    bundle_item_pairs: torch.Tensor
    user_bundle: torch.Tensor
    user_item: torch.Tensor
    bundle_item: torch.Tensor
    tune: HeldOutSplit
    test: HeldOutSplit

    def training_pairs_per_bundle(self) -> torch.Tensor:
        """``[n_bundles]`` int64: how many shoppers each bundle has in training."""
        return torch.bincount(self.train_pairs[:, 1], minlength=self.n_bundles)

    def popularity_prior(self) -> torch.Tensor:
        """``[n_bundles]`` float32: log(1 + training pairs of the bundle), the prior the trained models
        are served with (BPR with uniform negatives leaves it out)."""
        return torch.log1p(self.training_pairs_per_bundle().to(torch.float32))

    def held_out(self, name: str) -> HeldOutSplit:
        """``tune`` or ``test``. Raises ValueError for any other name."""
        if name == "tune":
            return self.tune
        if name == "test":
            return self.test
        raise ValueError(f"unknown held-out split {name!r}: expected 'tune' or 'test'")


def bundle_rec_data(
    n_users: int,
    n_bundles: int,
    n_items: int,
    *,
    train: Pairs,
    tune: Pairs,
    test: Pairs,
    user_item: Pairs,
    bundle_item: Pairs,
) -> BundleRecData:
    """Builds the tensors from (first id, second id) pairs.

    Raises:
        ValueError: an id is negative or not below its ``n_*``.
    """
    train_pairs = unique_pairs(train, n_users, n_bundles, "user-bundle train")
    return BundleRecData(
        n_users=n_users,
        n_bundles=n_bundles,
        n_items=n_items,
        train_pairs=train_pairs,
        user_item_pairs=(ui := unique_pairs(user_item, n_users, n_items, "user-item")),
        bundle_item_pairs=(bi := unique_pairs(bundle_item, n_bundles, n_items, "bundle-item")),
        user_bundle=binary_matrix(train_pairs, n_users, n_bundles),
        user_item=binary_matrix(ui, n_users, n_items),
        bundle_item=binary_matrix(bi, n_bundles, n_items),
        tune=held_out_split("tune", unique_pairs(tune, n_users, n_bundles, "user-bundle tune"), train_pairs),
        test=held_out_split("test", unique_pairs(test, n_users, n_bundles, "user-bundle test"), train_pairs),
    )


def youshu_data(split: YoushuSplit) -> BundleRecData:
    """Youshu as the papers use it: U-B train, all of U-I and B-I; tune and test held out."""
    return bundle_rec_data(
        split.n_users,
        split.n_bundles,
        split.n_items,
        train=split.user_bundle_train,
        tune=split.user_bundle_tune,
        test=split.user_bundle_test,
        user_item=split.user_item,
        bundle_item=split.bundle_item,
    )


def unique_pairs(pairs: Pairs, n_first: int, n_second: int, what: str) -> torch.Tensor:
    """``pairs`` as a deduplicated int64 [N, 2] tensor sorted by first, then second id.

    Raises:
        ValueError: an id is outside ``[0, n_first)`` or ``[0, n_second)``.
    """
    tensor = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    for column, bound, name in ((0, n_first, "first"), (1, n_second, "second")):
        ids = tensor[:, column]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
            raise ValueError(f"{what}: a {name} id is outside [0, {bound})")
    keys = torch.unique(tensor[:, 0] * n_second + tensor[:, 1])
    return torch.stack([keys // n_second, keys % n_second], dim=1)


def binary_matrix(pairs: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    """A float32 sparse matrix with 1 at every (row, col) of ``pairs`` (sorted, unique, as from
    :func:`unique_pairs`)."""
    values = torch.ones(pairs.shape[0], dtype=torch.float32)
    return sparse_matrix(pairs[:, 0], pairs[:, 1], values, n_rows, n_cols)


def held_out_split(name: str, pairs: torch.Tensor, train_pairs: torch.Tensor) -> HeldOutSplit:
    """Lays out ``pairs`` (sorted, unique) for ranking, with the users' ``train_pairs`` to mask."""
    users = torch.unique(pairs[:, 0])
    positive_rows = torch.searchsorted(users, pairs[:, 0].contiguous())
    excluded = train_pairs[:0]
    if users.numel():
        train_users = train_pairs[:, 0]
        position = torch.searchsorted(users, train_users.contiguous()).clamp(max=users.numel() - 1)
        excluded = train_pairs[users[position] == train_users]
    return HeldOutSplit(
        name=name,
        users=users,
        positive_rows=positive_rows,
        positive_bundles=pairs[:, 1].clone(),
        excluded_rows=torch.searchsorted(users, excluded[:, 0].contiguous()),
        excluded_bundles=excluded[:, 1].clone(),
    )
