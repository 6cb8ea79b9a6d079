"""Trainable bundle recommenders: MF-BPR, LightGCN on the user-bundle graph, and a cross-view model.

Every model scores a (user, bundle) pair as a dot product of vectors, so evaluation ranks with
:class:`~services.ranker.offline.evaluation.EmbeddingScorer`, and trains with the BPR loss on
(user, positive bundle, negative bundle) triples plus, for the cross-view model, a contrastive term.

The cross-view model follows the ideas of CrossCBR (Ma et al., KDD 2022), implemented here from the
paper's description:
- bundle view: LightGCN over the user-bundle training graph gives users and bundles vectors;
- item view: LightGCN over the user-item graph gives users and items vectors; a bundle's item-view
  vector is the mean of its items' vectors (bundle-item graph), so a bundle never seen in training
  is still scored from its items;
- score = bundle-view dot product + item-view dot product, trained with BPR;
- a bundle without a training pair has no trained bundle-view vector; for scoring it borrows the
  direction of its item-view vector (the contrast below aligns the two views) at the mean length of
  the least-known trained bundles' vectors (length grows with a bundle's training pairs: on Youshu
  1.18 for one pair, 2.2 beyond ten), so cold bundles compete with warm ones on their items;
- cross-view contrast: InfoNCE pulls a user's (and a bundle's) two view vectors together and pushes
  them from the other users (bundles) of the batch;
- edge dropout on all three graphs at every training step; evaluation uses the full graphs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from services.ranker.offline.data import BundleRecData
from services.ranker.offline.evaluation import EmbeddingScorer
from services.ranker.offline.graphs import BipartiteLaplacian, MeanAggregation, propagate

LayerCombination = Literal["mean", "normalized_sum"]


@dataclass(frozen=True)
class LossTerms:
    """Scalar losses of one batch: ``total = bpr + weight * contrastive``."""

    total: torch.Tensor
    bpr: torch.Tensor
    contrastive: torch.Tensor


class BundleModel(nn.Module, ABC):
    """A model trained on (user, positive bundle, negative bundle) triples."""

    @abstractmethod
    def training_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, generator: torch.Generator
    ) -> LossTerms:
        """Loss of a batch of int64 [n] id triples; ``generator`` drives any dropout."""

    @abstractmethod
    def scorer(self) -> EmbeddingScorer:
        """User and bundle vectors for evaluation and serving (no dropout, no gradient)."""

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The model's name and hyperparameters (JSON values); a checkpoint only resumes into a model
        that describes itself the same way."""


def bpr_loss(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(positive - negative) (Rendle et al., 2009)."""
    return F.softplus(negative_scores - positive_scores).mean()


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned [n, D] views: row i of each view is the other's positive,
    every other row a negative; cosine similarities divided by ``temperature``."""
    logits = F.normalize(anchors, dim=1) @ F.normalize(positives, dim=1).T / temperature
    targets = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _embedding(rows: int, dim: int) -> nn.Parameter:
    weight = torch.empty(rows, dim)
    nn.init.xavier_normal_(weight)
    return nn.Parameter(weight)


@dataclass(frozen=True)
class MatrixFactorizationConfig:
    dim: int = 64


class MatrixFactorization(BundleModel):
    """MF-BPR: one free vector per user and per bundle."""

    def __init__(self, data: BundleRecData, config: MatrixFactorizationConfig) -> None:
        super().__init__()
        self.config = config
        self.users = _embedding(data.n_users, config.dim)
        self.bundles = _embedding(data.n_bundles, config.dim)

    def training_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, generator: torch.Generator
    ) -> LossTerms:
        user_vectors = self.users[users]
        positive = (user_vectors * self.bundles[positives]).sum(dim=1)
        negative = (user_vectors * self.bundles[negatives]).sum(dim=1)
        bpr = bpr_loss(positive, negative)
        return LossTerms(bpr, bpr, torch.zeros(()))

    def scorer(self) -> EmbeddingScorer:
        return EmbeddingScorer(self.users.detach().clone(), self.bundles.detach().clone())

    def describe(self) -> dict[str, object]:
        return {"model": "mf_bpr", **asdict(self.config)}


@dataclass(frozen=True)
class LightGCNConfig:
    dim: int = 64
    layers: int = 2
    edge_dropout: float = 0.0
    combination: LayerCombination = "mean"


class LightGCN(BundleModel):
    """LightGCN (He et al., SIGIR 2020) on the user-bundle training graph alone."""

    def __init__(self, data: BundleRecData, config: LightGCNConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users = data.n_users
        self.users = _embedding(data.n_users, config.dim)
        self.bundles = _embedding(data.n_bundles, config.dim)
        self._graph = BipartiteLaplacian(data.train_pairs, data.n_users, data.n_bundles)
        self._full_graph = self._graph.matrix()

    def _vectors(self, graph: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nodes = propagate(graph, torch.cat([self.users, self.bundles]), self.config.layers, self.config.combination)
        return nodes[: self.n_users], nodes[self.n_users :]

    def training_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, generator: torch.Generator
    ) -> LossTerms:
        graph = (
            self._graph.dropped(self.config.edge_dropout, generator) if self.config.edge_dropout else self._full_graph
        )
        user_vectors, bundle_vectors = self._vectors(graph)
        chosen = user_vectors[users]
        positive = (chosen * bundle_vectors[positives]).sum(dim=1)
        negative = (chosen * bundle_vectors[negatives]).sum(dim=1)
        bpr = bpr_loss(positive, negative)
        return LossTerms(bpr, bpr, torch.zeros(()))

    def scorer(self) -> EmbeddingScorer:
        with torch.no_grad():
            return EmbeddingScorer(*self._vectors(self._full_graph))

    def describe(self) -> dict[str, object]:
        return {"model": "lightgcn", **asdict(self.config)}


@dataclass(frozen=True)
class CrossViewConfig:
    """CrossCBR's published defaults for Youshu, except where noted."""

    dim: int = 64
    layers: int = 1
    contrastive_weight: float = 0.04
    temperature: float = 0.25
    edge_dropout: float = 0.2
    """Applied to the user-bundle, user-item and bundle-item graphs alike."""
    combination: LayerCombination = "normalized_sum"


@dataclass(frozen=True)
class ViewVectors:
    """Both views' vectors: users [n_users, D] and bundles [n_bundles, D] per view, and the items [n_items, D]
    of the item view (a bundle's item-view vector is the mean of its items')."""

    users_bundle_view: torch.Tensor
    bundles_bundle_view: torch.Tensor
    users_item_view: torch.Tensor
    bundles_item_view: torch.Tensor
    items_item_view: torch.Tensor


class CrossViewModel(BundleModel):
    """The CrossCBR-style two-view graph model (see the module docstring).

    User vectors are shared as the input of both views; bundles have their own input vectors in the
    bundle view and are the mean of their items' propagated vectors in the item view.
    """

    def __init__(self, data: BundleRecData, config: CrossViewConfig) -> None:
        super().__init__()
        self.config = config
        self.n_users = data.n_users
        self.users = _embedding(data.n_users, config.dim)
        self.bundles = _embedding(data.n_bundles, config.dim)
        self.items = _embedding(data.n_items, config.dim)
        self._user_bundle = BipartiteLaplacian(data.train_pairs, data.n_users, data.n_bundles)
        self._user_item = BipartiteLaplacian(data.user_item_pairs, data.n_users, data.n_items)
        self._bundle_item = MeanAggregation(data.bundle_item_pairs, data.n_bundles, data.n_items)
        self._full = (self._user_bundle.matrix(), self._user_item.matrix(), self._bundle_item.matrix())
        pairs_per_bundle = data.training_pairs_per_bundle()
        self._cold_bundles = pairs_per_bundle == 0
        fewest = pairs_per_bundle[~self._cold_bundles].min() if bool((~self._cold_bundles).any()) else 0
        self._least_known_bundles = pairs_per_bundle == fewest

    def views(self, graphs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> ViewVectors:
        """Both views through ``graphs`` = (user-bundle Laplacian, user-item Laplacian, bundle-item mean)."""
        user_bundle, user_item, bundle_item = graphs
        layers, combination = self.config.layers, self.config.combination
        bundle_view = propagate(user_bundle, torch.cat([self.users, self.bundles]), layers, combination)
        item_view = propagate(user_item, torch.cat([self.users, self.items]), layers, combination)
        items = item_view[self.n_users :]
        return ViewVectors(
            users_bundle_view=bundle_view[: self.n_users],
            bundles_bundle_view=bundle_view[self.n_users :],
            users_item_view=item_view[: self.n_users],
            bundles_item_view=torch.sparse.mm(bundle_item, items),
            items_item_view=items,
        )

    def training_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, generator: torch.Generator
    ) -> LossTerms:
        rate = self.config.edge_dropout
        graphs = (
            (
                self._user_bundle.dropped(rate, generator),
                self._user_item.dropped(rate, generator),
                self._bundle_item.dropped(rate, generator),
            )
            if rate > 0
            else self._full
        )
        views = self.views(graphs)

        def score(bundles: torch.Tensor) -> torch.Tensor:
            bundle_view = (views.users_bundle_view[users] * views.bundles_bundle_view[bundles]).sum(dim=1)
            item_view = (views.users_item_view[users] * views.bundles_item_view[bundles]).sum(dim=1)
            return bundle_view + item_view

        bpr = bpr_loss(score(positives), score(negatives))
        # Duplicates in a batch would be contrasted against themselves as negatives.
        batch_users = torch.unique(users)
        batch_bundles = torch.unique(torch.cat([positives, negatives]))
        temperature = self.config.temperature
        contrastive = (
            info_nce(views.users_bundle_view[batch_users], views.users_item_view[batch_users], temperature)
            + info_nce(views.bundles_bundle_view[batch_bundles], views.bundles_item_view[batch_bundles], temperature)
        ) / 2
        return LossTerms(bpr + self.config.contrastive_weight * contrastive, bpr, contrastive)

    def scorer(self) -> EmbeddingScorer:
        with torch.no_grad():
            views = self.views(self._full)
            return EmbeddingScorer(
                torch.cat([views.users_bundle_view, views.users_item_view], dim=1),
                torch.cat([self._bundle_view_with_cold(views), views.bundles_item_view], dim=1),
            )

    def new_bundle_basis(self) -> tuple[torch.Tensor, float]:
        """What a bundle without training pairs is scored from, for one synced after training: the
        items' item-view vectors ([n_items, dim]; its item-view vector is the mean of its items'), and
        the length its bundle-view vector takes in that direction (see :meth:`scorer`)."""
        with torch.no_grad():
            views = self.views(self._full)
            return views.items_item_view.clone(), float(self._cold_bundle_length(views))

    def _cold_bundle_length(self, views: ViewVectors) -> torch.Tensor:
        length: torch.Tensor = views.bundles_bundle_view[self._least_known_bundles].norm(dim=1).mean()
        return length

    def _bundle_view_with_cold(self, views: ViewVectors) -> torch.Tensor:
        """Bundle-view vectors where cold bundles (no training pair) take their item-view direction
        at the length of the least-known warm bundles."""
        cold = self._cold_bundles
        if not bool(cold.any()) or bool(cold.all()):
            return views.bundles_bundle_view
        bundle_view = views.bundles_bundle_view.clone()
        bundle_view[cold] = F.normalize(views.bundles_item_view[cold], dim=1) * self._cold_bundle_length(views)
        return bundle_view

    def describe(self) -> dict[str, object]:
        return {"model": "crossview", **asdict(self.config)}
