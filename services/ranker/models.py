"""The trained models the ranker serves: the newest published version of each catalog's model,
loaded in the background and swapped in atomically (see shared.store.model_registry).

A bundle synced to the catalog after the model was trained is scored from its items where the
model says how (:class:`ServedNewBundles`): it reaches the shoppers the model knows at once, not at
the next publish."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
import sqlalchemy.exc
from sqlalchemy import Engine

from services.ranker.item_terms import BundleContents, ItemTermWeights, UnlistedBundles
from shared.store.model_registry import (
    ItemTermsArtifact,
    ModelVersion,
    NewBundleVectors,
    artifact_path,
    latest_versions,
    load_artifact,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedItemTerms:
    """A model's item-level terms (``services.ranker.item_terms``), with its ids mapped to rows."""

    weights: ItemTermWeights
    contents: BundleContents
    item_columns: dict[str, int]
    bundle_rows: dict[str, int]

    def scores(self, item_ids: Sequence[str], bought_bundle_ids: Set[str]) -> npt.NDArray[np.float64]:
        """Both weighted terms for every bundle row, for a shopper with ``item_ids`` and ``bought_bundle_ids``."""
        return self.contents.scores(self.weights, *self._shopper(item_ids, bought_bundle_ids))

    def new_bundle_scores(
        self, item_ids: Sequence[str], bought_bundle_ids: Set[str], unlisted: UnlistedBundles
    ) -> npt.NDArray[np.float64]:
        """Both weighted terms for bundles the model does not list."""
        return self.contents.scores_of_new_bundles(self.weights, *self._shopper(item_ids, bought_bundle_ids), unlisted)

    def _shopper(
        self, item_ids: Sequence[str], bought_bundle_ids: Set[str]
    ) -> tuple[npt.NDArray[np.int64], int, npt.NDArray[np.int64], int]:
        """The shopper's listed item columns and item count, bought bundle rows and bundle count."""
        items = {self.item_columns[i] for i in item_ids if i in self.item_columns}
        bought = {self.bundle_rows[b] for b in bought_bundle_ids if b in self.bundle_rows}
        return (
            np.fromiter(items, np.int64, len(items)),
            len(set(item_ids)),
            np.fromiter(bought, np.int64, len(bought)),
            len(bought_bundle_ids),
        )


@dataclass(frozen=True)
class ServedNewBundles:
    """Vectors for bundles synced after training, made from their items (see :class:`NewBundleVectors`)."""

    recipe: NewBundleVectors

    def vectors(self, unlisted: UnlistedBundles) -> npt.NDArray[np.float32]:
        """float32 [bundles, dim]: each bundle's vector; zeros for one whose items the model never saw."""
        item_vectors = self.recipe.item_vectors
        incidence = unlisted.incidence(item_vectors.shape[0])
        known = np.asarray(incidence.sum(axis=1)).reshape(-1, 1)
        means = (incidence @ item_vectors) / np.maximum(known, 1)
        dim, parts = self.recipe.member_dim, []
        for member, length in enumerate(self.recipe.bundle_view_lengths):
            item_view = means[:, member * dim : (member + 1) * dim]
            # As torch's F.normalize, which the trained model uses for bundles without pairs.
            direction = item_view / np.maximum(np.linalg.norm(item_view, axis=1, keepdims=True), 1e-12)
            parts += [direction * length, item_view]
        if self.recipe.prior is not None:
            parts.append(np.where(known > 0, self.recipe.prior, 0.0))
        return np.concatenate(parts, axis=1).astype(np.float32)


@dataclass(frozen=True)
class NewBundlePool:
    """Bundles a model does not list (synced after it was trained), prepared once for scoring many
    shoppers: their ids, their items over the model's columns, and their vectors (None: the model
    has no new-bundle vectors, or there is no such bundle)."""

    bundle_ids: tuple[str, ...]
    unlisted: UnlistedBundles
    vectors: npt.NDArray[np.float32] | None


def served_item_terms(terms: ItemTermsArtifact, bundle_ids: tuple[str, ...]) -> ServedItemTerms:
    contents = BundleContents(terms.pair_bundle_rows, terms.pair_item_columns, len(bundle_ids), len(terms.item_ids))
    weights = ItemTermWeights(terms.overlap_weight, terms.related_weight)
    if weights.related:
        contents.prepare_related()  # at load, not on the first shopper's request
    return ServedItemTerms(
        weights=weights,
        contents=contents,
        item_columns={item_id: column for column, item_id in enumerate(terms.item_ids)},
        bundle_rows={bundle_id: row for row, bundle_id in enumerate(bundle_ids)},
    )


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version: vectors by id, scoring a shopper against every bundle at once, plus
    the shopper's item-level terms where the model has them."""

    version: ModelVersion
    user_rows: dict[str, int]
    bundle_ids: tuple[str, ...]
    user_vectors: npt.NDArray[np.float32]
    bundle_vectors: npt.NDArray[np.float32]
    item_terms: ServedItemTerms | None = None
    new_bundles: ServedNewBundles | None = None
    _pools: dict[Hashable, NewBundlePool] = field(default_factory=dict, compare=False, repr=False)

    def knows(self, user_id: str) -> bool:
        return user_id in self.user_rows

    def knows_bundle(self, bundle_id: str) -> bool:
        return bundle_id in self._bundle_rows

    @cached_property
    def _bundle_rows(self) -> dict[str, int]:
        return {bundle_id: row for row, bundle_id in enumerate(self.bundle_ids)}

    def new_bundle_pool(self, bundles: Mapping[str, Sequence[str]]) -> NewBundlePool:
        """The ones of ``bundles`` (id -> item ids) that the model does not list, ready to score."""
        ids = tuple(bundle_id for bundle_id in bundles if not self.knows_bundle(bundle_id))
        columns = self.item_terms.item_columns if self.item_terms is not None else {}
        unlisted = UnlistedBundles.of([bundles[bundle_id] for bundle_id in ids], columns)
        vectors = self.new_bundles.vectors(unlisted) if self.new_bundles is not None and ids else None
        return NewBundlePool(ids, unlisted, vectors)

    def new_bundle_pool_of_copy(
        self, copy_key: Hashable, live_bundles: Callable[[], Mapping[str, Sequence[str]]]
    ) -> NewBundlePool:
        """:meth:`new_bundle_pool` of a catalog copy's live bundles, built from ``live_bundles()`` on
        the first request that sees the copy ``copy_key`` and kept until another copy comes."""
        pool = self._pools.get(copy_key)
        if pool is None:
            pool = self.new_bundle_pool(live_bundles())
            # Two requests may build it at once; either result is the same.
            self._pools.clear()
            self._pools[copy_key] = pool
        return pool

    def score_pool(
        self,
        user_id: str,
        pool: NewBundlePool,
        item_ids: Sequence[str] = (),
        bought_bundle_ids: Set[str] = frozenset(),
    ) -> npt.NDArray[np.float64]:
        """Scores of ``pool``'s bundles on the scale of :meth:`top_bundles`: the vector the model's
        new-bundle vectors make from their items (none: 0), plus the item-level terms. Empty for a
        shopper the model never saw."""
        row = self.user_rows.get(user_id)
        if row is None or not pool.bundle_ids:
            return np.zeros(0)
        scores = np.zeros(len(pool.bundle_ids))
        if pool.vectors is not None:
            scores += pool.vectors @ self.user_vectors[row]
        if self.item_terms is not None:
            scores += self.item_terms.new_bundle_scores(item_ids, bought_bundle_ids, pool.unlisted)
        return scores

    def score_new_bundles(
        self,
        user_id: str,
        bundles: Mapping[str, Sequence[str]],
        item_ids: Sequence[str] = (),
        bought_bundle_ids: Set[str] = frozenset(),
    ) -> dict[str, float]:
        """:meth:`score_pool` of the ones of ``bundles`` (id -> item ids) the model does not list, by id;
        empty for a shopper the model never saw."""
        if not self.knows(user_id):
            return {}
        pool = self.new_bundle_pool(bundles)
        scores = self.score_pool(user_id, pool, item_ids, bought_bundle_ids)
        return {bundle_id: float(score) for bundle_id, score in zip(pool.bundle_ids, scores, strict=True)}

    def top_bundles(
        self,
        user_id: str,
        n: int,
        exclude: Set[str] = frozenset(),
        item_ids: Sequence[str] = (),
        bought_bundle_ids: Set[str] = frozenset(),
    ) -> list[tuple[str, float]]:
        """The ``n`` best-scored bundles for ``user_id`` outside ``exclude``, best first (ties by id);
        empty for a shopper the model never saw. ``item_ids`` (the shopper's items) and
        ``bought_bundle_ids`` feed the item-level terms of a model that has them."""
        row = self.user_rows.get(user_id)
        if row is None or n <= 0:
            return []
        scores = self.bundle_vectors @ self.user_vectors[row]
        if self.item_terms is not None:
            scores = scores + self.item_terms.scores(item_ids, bought_bundle_ids)
        wanted = min(n + len(exclude), len(scores))
        top = np.argpartition(-scores, wanted - 1)[:wanted] if wanted < len(scores) else np.arange(len(scores))
        ranked = sorted(((self.bundle_ids[i], float(scores[i])) for i in top), key=lambda pair: (-pair[1], pair[0]))
        return [pair for pair in ranked if pair[0] not in exclude][:n]


def load_served(version: ModelVersion) -> ServedModel:
    artifact = load_artifact(artifact_path(version.artifact_uri))
    if artifact.catalog_id != version.catalog_id:
        raise ValueError(f"{version.artifact_uri} holds a model of {artifact.catalog_id}, not {version.catalog_id}")
    terms = served_item_terms(artifact.item_terms, artifact.bundle_ids) if artifact.item_terms else None
    return ServedModel(
        version=version,
        user_rows={user_id: row for row, user_id in enumerate(artifact.user_ids)},
        bundle_ids=artifact.bundle_ids,
        user_vectors=artifact.user_vectors,
        bundle_vectors=artifact.bundle_vectors,
        item_terms=terms,
        new_bundles=ServedNewBundles(artifact.new_bundles) if artifact.new_bundles is not None else None,
    )


class ModelStore:
    """Polls PostgreSQL for newer versions every ``refresh_s`` and swaps each catalog's model.

    A version that fails to load is logged and skipped (the previous one keeps serving) and tried
    again at the next poll; so is PostgreSQL being down.
    """

    def __init__(self, engine: Engine, refresh_s: float) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._served: dict[str, ServedModel] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, catalog_id: str) -> ServedModel | None:
        return self._served.get(catalog_id)

    def refresh(self) -> None:
        """Loads every catalog's newest version that is not served yet."""
        try:
            newest = latest_versions(self._engine)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("cannot read model versions (%s); serving the loaded ones", type(exc).__name__)
            return
        for catalog_id, version in newest.items():
            current = self._served.get(catalog_id)
            if current is not None and current.version.version >= version.version:
                continue
            try:
                loaded = load_served(version)
            except (OSError, ValueError) as exc:
                log.error("model %s of %s not loaded (%s); keeping the one served", version.label, catalog_id, exc)
                continue
            self._served = {**self._served, catalog_id: loaded}  # one assignment: readers see old or new
            log.info(
                "catalog %s now served by model %s (was %s): %d users, %d bundles",
                catalog_id,
                version.label,
                current.version.label if current else "none",
                len(loaded.user_rows),
                len(loaded.bundle_ids),
            )

    def start(self) -> None:
        """Loads what is published now, then keeps polling in a daemon thread until :meth:`stop`."""
        self.refresh()

        def poll() -> None:
            while not self._stopping.wait(self._refresh_s):
                self.refresh()

        self._thread = threading.Thread(target=poll, name="model-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self._engine.dispose()
