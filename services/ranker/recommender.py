"""The ranker's use case: signals in, a chosen list of bundles out (no transport details here)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.ranker import domain
from services.ranker.domain import BundleInfo, Constraints, ItemInfo
from services.ranker.models import ServedModel
from services.ranker.ports import FeatureSource, ItemVectorSource, LiveBundleSource, ModelSource, PolicySource
from services.ranker.shadow_policy import ShadowPolicy
from shared.errors import NotFound

MODEL_VERSION = "cooccurrence-v1"
# Items whose neighbours are fetched: the cart plus the most recent history.
MAX_SOURCE_ITEMS = 20
# Candidates whose details are fetched, per bundle wanted.
CANDIDATES_PER_SLOT = 5
GENERATED_BUNDLE_SIZE = 4
# Names of generated bundles: from co-purchases alone, or completed in the item space.
COMPLETE_THE_SET = "Complete the set"
GOES_WITH_IT = "Goes with it"
NO_CONSTRAINTS = Constraints()


@dataclass(frozen=True)
class Recommended:
    bundle: BundleInfo
    items: tuple[ItemInfo, ...]
    score: float
    propensity: float
    total_price: float | None
    explanation: str
    shadow_propensity: float | None = None
    """The shadow candidate's probability of this bundle here; None when the catalog runs none."""
    policy_features: tuple[float, ...] = ()
    """The contextual bandit's features of this bundle when it chose (empty under other policies)."""


@dataclass(frozen=True)
class RelatedItem:
    item: ItemInfo
    bought_together: float
    explanation: str


@dataclass(frozen=True)
class Recommendation:
    bundles: tuple[Recommended, ...]
    model_version: str
    policy_version: int
    cold_start: bool
    shadow_policy: str | None = None
    """The candidate run in shadow (``name:version``), which did not change the answer; None if none."""


class Recommender:
    """Candidates from the catalog's trained model for shoppers it knows (and no cart or anchor given),
    with the bundles synced since it was trained scored from their items, else from co-purchases, the
    cart, the shopper's categories and popularity; then the policy chooses.
    A catalog's shadow policy, if any, scores the same candidates and only reports its probabilities."""

    def __init__(
        self,
        features: FeatureSource,
        policies: PolicySource,
        models: ModelSource | None = None,
        shadows: Mapping[str, ShadowPolicy] | None = None,
        item_vectors: ItemVectorSource | None = None,
        live_bundles: LiveBundleSource | None = None,
    ) -> None:
        """``item_vectors``: where a bundle composed around an item with few co-purchases finds
        items that go with it (None: co-purchases only). ``live_bundles``: the catalog copy whose
        bundles synced after the served model was trained are all candidates for the shoppers it
        knows (None: only those holding the shopper's items or their co-purchases)."""
        self._features = features
        self._policies = policies
        self._models = models
        self._shadows = dict(shadows or {})
        self._item_vectors = item_vectors
        self._live_bundles = live_bundles

    def recommend(
        self,
        catalog_id: str,
        user_id: str,
        k: int,
        anchor_item_ids: Sequence[str] = (),
        constraints: Constraints = NO_CONSTRAINTS,
        request_id: str = "",
    ) -> Recommendation:
        """Ranked bundles for one shopper; never empty while the catalog has servable bundles.

        Raises:
            shared.errors.NotFound: the catalog has no live bundles.
            shared.errors.Unavailable: the feature store did not answer in time.
        """
        policy = self._policies.current(catalog_id)
        signals = self._features.user_signals(catalog_id, user_id)
        anchors = list(dict.fromkeys(anchor_item_ids))
        sources = list(dict.fromkeys([*anchors, *signals.recent_item_ids]))[:MAX_SOURCE_ITEMS]
        neighbours = self._features.neighbours(catalog_id, sources)
        weights = domain.item_weights(signals.recent_item_ids, anchors, neighbours)
        evidence = domain.score_bundles(weights, self._features.bundles_by_item(catalog_id, list(weights)))
        domain.add_category_evidence(
            evidence,
            signals.top_categories,
            self._features.bundles_by_category(catalog_id, signals.top_categories),
        )

        model = self._models.get(catalog_id) if self._models is not None and not anchors else None
        # The model's scores rank a shopper's whole catalog (as the offline evaluation does); a cart or
        # an anchor asks to complete it, which co-purchases answer.
        personal = (
            dict(
                model.top_bundles(
                    user_id,
                    CANDIDATES_PER_SLOT * k,
                    exclude=signals.purchased_bundle_ids,
                    item_ids=signals.history_item_ids,
                    bought_bundle_ids=signals.purchased_bundle_ids,
                )
            )
            if model
            else {}
        )
        if personal and model is not None:
            personal = self._with_new_bundles(catalog_id, user_id, model, personal, evidence, signals, k)
        by_evidence = sorted(evidence, key=lambda b: (-evidence[b].score, b))
        shortlist = list(personal) if personal else by_evidence[: CANDIDATES_PER_SLOT * k]
        cold_start = not shortlist
        if len(shortlist) < CANDIDATES_PER_SLOT * k:
            popular = self._features.popular_bundles(catalog_id, CANDIDATES_PER_SLOT * k)
            shortlist += [b for b in popular if b not in evidence]
        bundles = self._features.bundles(catalog_id, shortlist)
        if anchors:
            generated = self._compose(catalog_id, anchors[0], neighbours.get(anchors[0], []))
            if generated is not None:
                bundles[generated.bundle_id] = generated
        items = self._features.items(catalog_id, list(dict.fromkeys(i for b in bundles.values() for i in b.item_ids)))
        servable = {
            b.bundle_id: b
            for b in bundles.values()
            if domain.is_servable(b, items, signals) and constraints.allows(b, items)
        }
        if personal:  # model scores, adjusted by the policy alone (the model has learned popularity)
            base = [(b, personal[b]) for b in servable if b in personal]
        else:
            base = [
                (
                    bundle_id,
                    domain.base_score(
                        evidence[bundle_id].score if bundle_id in evidence else _composed_score(bundle, weights),
                        bundle,
                    ),
                )
                for bundle_id, bundle in servable.items()
            ]
        seed = f"{catalog_id}:{user_id}:{request_id}"
        purchases = {b: servable[b].purchases for b, _ in base}
        chosen = (
            domain.choose_by_bandit(base, k, policy, purchases, signals, seed=seed)
            if policy.bandit is not None
            else domain.choose(domain.policy_scores(base, policy), k, policy, seed=seed)
        )
        shown = [c.bundle_id for c in chosen]
        shadow = self._shadows.get(catalog_id)
        shadow_propensities: Sequence[float | None]
        if shadow is None:
            shadow_propensities = [None] * len(chosen)
        elif shadow.params.bandit is not None:
            shadow_propensities = domain.bandit_shown_propensities(base, k, shadow.params, purchases, signals, shown)
        else:
            shadow_propensities = domain.shown_propensities(
                domain.policy_scores(base, shadow.params), k, shadow.params, shown
            )
        return Recommendation(
            bundles=tuple(
                Recommended(
                    bundle=servable[c.bundle_id],
                    items=tuple(items[i] for i in servable[c.bundle_id].item_ids if i in items),
                    score=c.score,
                    propensity=c.propensity,
                    total_price=domain.effective_price(servable[c.bundle_id], items),
                    explanation=self._explain(c.bundle_id, servable, evidence, items, signals, bool(personal)),
                    shadow_propensity=shadow_propensity,
                    policy_features=c.policy_features,
                )
                for c, shadow_propensity in zip(chosen, shadow_propensities, strict=True)
            ),
            model_version=model.version.label if personal and model is not None else MODEL_VERSION,
            policy_version=policy.version,
            cold_start=cold_start,
            shadow_policy=shadow.label if shadow is not None else None,
        )

    def _with_new_bundles(
        self,
        catalog_id: str,
        user_id: str,
        model: ServedModel,
        personal: dict[str, float],
        evidence: Mapping[str, domain.Evidence],
        signals: domain.UserSignals,
        k: int,
    ) -> dict[str, float]:
        """``personal`` with the bundles synced after the model was trained, scored by the model from
        their items, the best kept. With the catalog copy in process, every such live bundle is a
        candidate (prepared once per copy); else those holding the shopper's items or their
        co-purchases."""
        if self._live_bundles is not None:
            live = self._live_bundles.live_bundles(catalog_id)
            pool = model.new_bundle_pool_of_copy(
                live.copy_key, lambda: {b: bundle.item_ids for b, bundle in live.bundles.items()}
            )
        else:
            unlisted = [b for b in evidence if not model.knows_bundle(b)]
            if not unlisted:
                return personal
            fetched = self._features.bundles(catalog_id, unlisted)
            pool = model.new_bundle_pool({b: bundle.item_ids for b, bundle in fetched.items()})
        if not pool.bundle_ids:
            return personal
        wanted = CANDIDATES_PER_SLOT * k
        scores = model.score_pool(user_id, pool, signals.history_item_ids, signals.purchased_bundle_ids)
        best = np.argsort(-scores, kind="stable")
        fresh: dict[str, float] = {}
        for position in best:
            bundle_id = pool.bundle_ids[position]
            if bundle_id not in signals.purchased_bundle_ids:
                fresh[bundle_id] = float(scores[position])
                if len(fresh) == wanted:
                    break
        return dict(sorted((personal | fresh).items(), key=lambda pair: (-pair[1], pair[0]))[:wanted])

    def related_items(self, catalog_id: str, item_id: str, k: int) -> list[RelatedItem]:
        """Companions of ``item_id``: co-purchased items by baskets shared, then the other members of
        curated bundles holding it; live items only, never the item itself.

        Raises:
            shared.errors.NotFound: the catalog does not know ``item_id``.
        """
        self._features.settle_catalog(catalog_id)
        if item_id not in self._features.items(catalog_id, [item_id]):
            raise NotFound(f"catalog {catalog_id!r} has no item {item_id!r}; sync it with the catalog API first")
        together = [
            (n, count) for n, count in self._features.neighbours(catalog_id, [item_id]).get(item_id, []) if n != item_id
        ]
        in_bundles = self._features.bundles(
            catalog_id, self._features.bundles_by_item(catalog_id, [item_id]).get(item_id, [])
        )
        companions = dict(together)
        for bundle in sorted(in_bundles.values(), key=lambda b: (-b.purchases, b.bundle_id)):
            for member in bundle.item_ids:
                if member != item_id:
                    companions.setdefault(member, 0.0)
        candidates = list(companions)[: 3 * k]
        items = self._features.items(catalog_id, candidates)
        related = []
        for candidate in candidates:
            item = items.get(candidate)
            if item is None or item.retired:
                continue
            count = companions[candidate]
            reason = (
                f"Bought together in {count:.0f} basket{'s' if count != 1 else ''}"
                if count
                else "In a curated bundle with it"
            )
            related.append(RelatedItem(item, count, reason))
            if len(related) == k:
                break
        return related

    @staticmethod
    def _explain(
        bundle_id: str,
        servable: dict[str, BundleInfo],
        evidence: dict[str, domain.Evidence],
        items: dict[str, ItemInfo],
        signals: domain.UserSignals,
        by_model: bool,
    ) -> str:
        bundle = servable[bundle_id]
        if bundle.source != "catalog":
            if bundle.name == GOES_WITH_IT:
                return "Composed for you from items that go with it, by what shoppers bundle together"
            return "Composed for you from items often bought together"
        if by_model and bundle_id not in evidence:
            return "Chosen by shoppers whose history is like yours"
        return domain.explain(evidence.get(bundle_id), bundle, items, signals)

    def _compose(self, catalog_id: str, anchor: str, neighbours: Sequence[tuple[str, float]]) -> BundleInfo | None:
        """A generated bundle: the anchor with its most frequent companions, no duplicates; an anchor
        with too few (a new item) is completed by the live items nearest it in the item space."""
        members = list(dict.fromkeys([anchor, *(n for n, _ in neighbours)]))[:GENERATED_BUNDLE_SIZE]
        bought_together = len(members)
        if len(members) < GENERATED_BUNDLE_SIZE and self._item_vectors is not None:
            similar = [i for i, _ in self._item_vectors.similar_items(catalog_id, anchor, 2 * GENERATED_BUNDLE_SIZE)]
            live = self._features.items(catalog_id, [i for i in similar if i not in members])
            members += [i for i in similar if i in live and not live[i].retired][: GENERATED_BUNDLE_SIZE - len(members)]
        if len(members) < 2:
            return None
        digest = hashlib.blake2b("|".join(members).encode(), digest_size=6).hexdigest()
        return BundleInfo(
            bundle_id=f"gen-{digest}",
            name=COMPLETE_THE_SET if len(members) == bought_together else GOES_WITH_IT,
            item_ids=tuple(members),
            price=None,
            discounted_price=None,
            retired=False,
            purchases=0,
            source="generated",
        )


def _composed_score(bundle: BundleInfo, weights: dict[str, tuple[float, str, str]]) -> float:
    return sum(weights.get(i, (0.0, "", ""))[0] for i in bundle.item_ids)
