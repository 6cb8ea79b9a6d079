"""What the ranker needs from the outside, as Protocols; adapters live beside them."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.ranker.domain import BundleInfo, ItemInfo, PolicyParams, UserSignals
from services.ranker.models import ServedModel
from services.ranker.vector_index import BundleVectors
from shared.store.vectors import Vector


class FeatureSource(Protocol):
    """Batch reads of online features. Raises shared.errors.Unavailable / NotFound.

    A request starts with :meth:`user_signals` or :meth:`settle_catalog`: the catalog reads after it
    see the catalog as of then.
    """

    def settle_catalog(self, catalog_id: str) -> None:
        """Starts a request that reads no user: catalog reads after it see the catalog as of now."""
        ...

    def user_signals(self, catalog_id: str, user_id: str) -> UserSignals: ...

    def neighbours(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]: ...

    def bundles_by_item(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, list[str]]: ...

    def bundles_by_category(self, catalog_id: str, categories: Sequence[str]) -> dict[str, list[str]]:
        """Live bundles per affinity category, most bought first."""
        ...

    def bundles(self, catalog_id: str, bundle_ids: Sequence[str]) -> dict[str, BundleInfo]:
        """Only bundles that exist are returned."""
        ...

    def items(self, catalog_id: str, item_ids: Sequence[str]) -> dict[str, ItemInfo]:
        """Only items that exist are returned."""
        ...

    def popular_bundles(self, catalog_id: str, k: int) -> list[str]:
        """Raises NotFound for a catalog with no live bundles."""
        ...


class PolicySource(Protocol):
    def current(self, catalog_id: str) -> PolicyParams:
        """The newest known policy of the catalog (the default one before any is published)."""
        ...


class ModelSource(Protocol):
    def get(self, catalog_id: str) -> ServedModel | None:
        """The trained model serving ``catalog_id`` now, if one was published."""
        ...


@dataclass(frozen=True)
class LiveBundles:
    """A catalog copy's live bundles by id; ``copy_key`` is equal for two reads of the same copy."""

    copy_key: Hashable
    bundles: Mapping[str, BundleInfo]


class LiveBundleSource(Protocol):
    def live_bundles(self, catalog_id: str) -> LiveBundles:
        """Every live bundle of the catalog copy this request settled on (after ``user_signals``);
        a copy being reloaded may still hold a bundle retired since (read answers through
        :meth:`FeatureSource.bundles`)."""
        ...


class BundleVectorSource(Protocol):
    def bundle_vectors(self, catalog_id: str) -> BundleVectors | None:
        """The catalog's bundle vectors as of the request's settled copy (after ``settle_catalog``);
        None when the catalog has none."""
        ...


class ItemVectorSource(Protocol):
    def similar_items(self, catalog_id: str, item_id: str, n: int) -> list[tuple[str, float]]:
        """At most ``n`` other items nearest ``item_id`` in the item space (the embedding service's
        item fusion, where items bought together are close), as (item id, cosine), nearest first;
        empty when the catalog or the item has no vector yet. Retired items may be among them."""
        ...


@dataclass(frozen=True)
class QueryVector:
    values: Vector
    """L2-normalised, float32, shape ``(dim,)``."""
    model_version: str


class QueryEncoder(Protocol):
    def embed_query(self, text: str, model: str) -> QueryVector:
        """Embeds a shopper's query with the text encoder ``model`` (empty: the default one).

        Raises:
            shared.errors.InvalidArgument: the encoder refused the text.
            shared.errors.NotFound: no such encoder.
            shared.errors.Unavailable: the encoder did not answer within its deadline.
        """
        ...
