"""Bundle scoring, composition and selection: pure functions over the shopper's signals.

Scoring ("first honest ranking"): a catalog bundle earns weight from every item in it that the
shopper recently interacted with (recency-weighted), that is in the cart (anchors), or that is often
bought together with those (co-purchase counts, normalised per source item). A small popularity
prior breaks ties. Selection goes through the policy: a softmax over the scores plus the learned
click rate, sampled without replacement (Plackett-Luce) so each position's probability is known; or,
when the policy says ``epsilon_mixture``, the greedy list or with probability epsilon a uniformly
random one, logging each position's exact marginal probability (what off-policy evaluation needs).
A shadow candidate policy scores the same candidates and gets, for the list actually served, the
probability it would have given each bundle there (:func:`shown_propensities`), changing nothing.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.bandit_features import candidate_features

ANCHOR_WEIGHT = 3.0
RECENT_WEIGHT = 1.0
NEIGHBOUR_WEIGHT = 0.5
CATEGORY_WEIGHT = 0.3
POPULARITY_WEIGHT = 0.05
# A shopper's items that weigh in the evidence, newest first.
RECENT_ITEMS = 20


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    price: float | None
    image_url: str
    retired: bool
    category_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleInfo:
    bundle_id: str
    name: str
    item_ids: tuple[str, ...]
    price: float | None
    discounted_price: float | None
    retired: bool
    purchases: int
    source: str = "catalog"

    def with_purchases(self, purchases: int) -> BundleInfo:
        """This bundle, bought ``purchases`` times. Built directly: on the serving path (every
        shortlisted bundle of every request) ``dataclasses.replace`` cost five times as much."""
        return BundleInfo(
            self.bundle_id,
            self.name,
            self.item_ids,
            self.price,
            self.discounted_price,
            self.retired,
            purchases,
            self.source,
        )


@dataclass(frozen=True)
class UserSignals:
    recent_item_ids: tuple[str, ...]
    purchased_bundle_ids: frozenset[str]
    top_categories: tuple[str, ...]
    bundle_looks: Mapping[str, float] = field(default_factory=dict)
    """Bundle id -> the shopper's looks at it: each impression that showed it at position ``p`` adds
    ``shared.bandit_features.examination_prior(p)`` (absent: never shown)."""
    clicked_bundle_ids: frozenset[str] = frozenset()
    """Bundles the shopper clicked in an answer."""
    history_item_ids: tuple[str, ...] = ()
    """Every item of the shopper that the store keeps (the newest ``USER_RECENT_ITEMS_CAP``), newest
    first; ``recent_item_ids`` is its first ``RECENT_ITEMS``. A trained model's item terms read it."""


@dataclass(frozen=True)
class Constraints:
    max_total_price: float | None = None
    min_items: int = 0
    max_items: int = 0

    def allows(self, bundle: BundleInfo, items: Mapping[str, ItemInfo]) -> bool:
        size = len(bundle.item_ids)
        if self.min_items and size < self.min_items:
            return False
        if self.max_items and size > self.max_items:
            return False
        if self.max_total_price is not None:
            price = effective_price(bundle, items)
            if price is None or price > self.max_total_price:
                return False
        return True


@dataclass(frozen=True)
class LinearBandit:
    """A contextual bandit's point estimate: a candidate's attractiveness (its click probability once
    looked at) is ``weights · features + bundle_bias[bundle]`` over ``shared.bandit_features.FEATURES``."""

    weights: tuple[float, ...]
    bundle_bias: Mapping[str, float] = field(default_factory=dict)

    def attractiveness(self, bundle_id: str, features: Sequence[float]) -> float:
        return sum(w * x for w, x in zip(self.weights, features, strict=True)) + self.bundle_bias.get(bundle_id, 0.0)


@dataclass(frozen=True)
class PolicyParams:
    """What the ranker needs of a policy snapshot. With ``bandit``, the list is chosen by the bandit's
    attractiveness through the ε-mixture (``exploration`` is then ``epsilon_mixture``); without, by the
    score plus ``ctr_weight`` times the arm's click rate."""

    version: int
    temperature: float
    ctr_weight: float
    arms: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    exploration: str = "softmax"  # or "epsilon_mixture"
    epsilon: float = 0.0
    bandit: LinearBandit | None = None

    def click_rate(self, bundle_id: str) -> float:
        alpha, beta = self.arms.get(bundle_id, (1.0, 20.0))
        return alpha / (alpha + beta)


DEFAULT_POLICY = PolicyParams(version=0, temperature=0.1, ctr_weight=0.0)


@dataclass
class Evidence:
    """Why a bundle scored: the strongest item-level reason, kept for the explanation."""

    score: float = 0.0
    best_reason: tuple[float, str, str] = (0.0, "", "")  # (contribution, kind, source item id)

    def add(self, amount: float, kind: str, source_item: str) -> None:
        self.score += amount
        if amount > self.best_reason[0]:
            self.best_reason = (amount, kind, source_item)


@dataclass(frozen=True)
class Chosen:
    bundle_id: str
    score: float
    propensity: float
    policy_features: tuple[float, ...] = ()
    """The contextual bandit's features of the bundle when it chose; empty under other policies."""


def item_weights(
    recent_item_ids: Sequence[str],
    anchor_item_ids: Sequence[str],
    neighbours: Mapping[str, Sequence[tuple[str, float]]],
) -> dict[str, tuple[float, str, str]]:
    """Weight of each signal item: ``item -> (weight, kind, source item)``; the strongest kind wins."""
    weights: dict[str, tuple[float, str, str]] = {}

    def offer(item: str, weight: float, kind: str, source: str) -> None:
        if weight > weights.get(item, (0.0, "", ""))[0]:
            weights[item] = (weight, kind, source)

    for rank, item in enumerate(recent_item_ids):
        offer(item, RECENT_WEIGHT / (1.0 + 0.1 * rank), "recent", item)
    for item in anchor_item_ids:
        offer(item, ANCHOR_WEIGHT, "anchor", item)
    for source, scored in neighbours.items():
        top = max((s for _, s in scored), default=0.0)
        base = ANCHOR_WEIGHT if source in anchor_item_ids else RECENT_WEIGHT
        for neighbour, count in scored:
            if top > 0:
                offer(neighbour, NEIGHBOUR_WEIGHT * base * count / top, "neighbour", source)
    return weights


def add_category_evidence(
    evidence: dict[str, Evidence], top_categories: Sequence[str], bundles_by_category: Mapping[str, Sequence[str]]
) -> None:
    """Bundles from a shopper's favourite categories earn a little, the favourite most.

    This is what keeps a shopper with sparse co-purchase data in their own part of the catalog.
    """
    for rank, category in enumerate(top_categories):
        weight = CATEGORY_WEIGHT / (1.0 + 0.5 * rank)
        for bundle_id in bundles_by_category.get(category, ()):
            evidence.setdefault(bundle_id, Evidence()).add(weight, "category", category)


def score_bundles(
    weights: Mapping[str, tuple[float, str, str]], bundles_by_item: Mapping[str, Sequence[str]]
) -> dict[str, Evidence]:
    """Sums item weights into every bundle that holds the item."""
    evidence: dict[str, Evidence] = {}
    for item, (weight, kind, source) in weights.items():
        for bundle_id in bundles_by_item.get(item, ()):
            evidence.setdefault(bundle_id, Evidence()).add(weight, kind, source if kind == "neighbour" else item)
    return evidence


def effective_price(bundle: BundleInfo, items: Mapping[str, ItemInfo]) -> float | None:
    """What the shopper pays: the bundle's discounted price, else its price, else the items' sum."""
    if bundle.discounted_price is not None:
        return bundle.discounted_price
    if bundle.price is not None:
        return bundle.price
    prices = [items[i].price if i in items else None for i in bundle.item_ids]
    known = [p for p in prices if p is not None]
    if not prices or len(known) < len(prices):  # one unpriced item makes the total unknown
        return None
    return float(sum(known))


def is_servable(bundle: BundleInfo, items: Mapping[str, ItemInfo], signals: UserSignals) -> bool:
    """Live, not already bought, and holding no retired item."""
    if bundle.retired or bundle.bundle_id in signals.purchased_bundle_ids or not bundle.item_ids:
        return False
    return not any(items[i].retired for i in bundle.item_ids if i in items)


def base_score(evidence_score: float, bundle: BundleInfo) -> float:
    """A bundle's score before any policy: its evidence plus a small popularity prior."""
    return evidence_score + POPULARITY_WEIGHT * math.log1p(bundle.purchases)


def policy_score(base: float, bundle_id: str, policy: PolicyParams) -> float:
    """``base`` plus ``policy``'s learned click rate of the bundle, times its weight."""
    return base + policy.ctr_weight * policy.click_rate(bundle_id)


def policy_scores(base_scores: Sequence[tuple[str, float]], policy: PolicyParams) -> list[tuple[str, float]]:
    """The same candidates, in the same order, scored under ``policy``: what :func:`choose` takes.

    Kept apart from the policy-free scores so that a shadow policy can score the very candidates the
    served one chose from.
    """
    return [(bundle_id, policy_score(base, bundle_id, policy)) for bundle_id, base in base_scores]


def _pool(scored: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """The candidates a policy chooses ``k`` from: the best ``3k`` by score, ties by bundle id."""
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[: max(3 * k, k)]


def choose_by_bandit(
    scored: Sequence[tuple[str, float]],
    k: int,
    policy: PolicyParams,
    purchases: Mapping[str, int],
    signals: UserSignals,
    seed: str,
) -> list[Chosen]:
    """Picks ``k`` bundles with ``policy``'s contextual bandit: over the pool :func:`choose` would use
    (the best ``3k`` of ``scored``, the ranker's scores), the greedy list is the most attractive first
    (ties in the ranker's order), shown through the ε-mixture with exact marginal propensities. Each
    chosen bundle carries its features (``shared.bandit_features``), to be logged with the impression.
    """
    ordered, features = _bandit_order(scored, k, policy, purchases, signals)
    chosen = choose_epsilon_mixture(ordered, k, policy.epsilon, _seeded(seed))
    return [Chosen(c.bundle_id, c.score, c.propensity, features[c.bundle_id]) for c in chosen]


def bandit_shown_propensities(
    scored: Sequence[tuple[str, float]],
    k: int,
    policy: PolicyParams,
    purchases: Mapping[str, int],
    signals: UserSignals,
    shown: Sequence[str],
) -> list[float]:
    """The probability that ``policy``'s contextual bandit, choosing as :func:`choose_by_bandit` does,
    would have put each bundle of ``shown`` at its position: the exact ε-mixture marginal, 0 outside its
    pool. How a bandit candidate in shadow is evaluated on the list actually served."""
    ordered, _ = _bandit_order(scored, k, policy, purchases, signals)
    return _epsilon_marginals(ordered, k, policy.epsilon, shown)


def _bandit_order(
    scored: Sequence[tuple[str, float]],
    k: int,
    policy: PolicyParams,
    purchases: Mapping[str, int],
    signals: UserSignals,
) -> tuple[list[tuple[str, float]], dict[str, tuple[float, ...]]]:
    """The pool of :func:`choose` in the bandit's greedy order (most attractive first, ties in the
    ranker's order), and each candidate's features."""
    bandit = policy.bandit
    if bandit is None:
        raise ValueError("a bandit's choice needs a policy with a bandit; use choose()")
    pool = _pool(scored, k)
    features = candidate_features(pool, purchases, signals.bundle_looks, signals.clicked_bundle_ids)
    attractiveness = [bandit.attractiveness(b, f) for (b, _), f in zip(pool, features, strict=True)]
    order = sorted(range(len(pool)), key=lambda i: (-attractiveness[i], i))
    return [pool[i] for i in order], {pool[i][0]: features[i] for i in order}


def _seeded(seed: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big"))


def choose(scored: Sequence[tuple[str, float]], k: int, policy: PolicyParams, seed: str) -> list[Chosen]:
    """Picks ``k`` bundles by Plackett-Luce sampling from softmax(score / temperature).

    Each chosen bundle carries the probability it had of being picked at its position given the
    ones above it. Temperature 0 is greedy (probability 1). ``seed`` makes a request reproducible.
    """
    pool = _pool(scored, k)
    rng = _seeded(seed)
    if policy.exploration == "epsilon_mixture":
        return choose_epsilon_mixture(pool, k, policy.epsilon, rng)
    if policy.temperature <= 0:
        return [Chosen(b, s, 1.0) for b, s in pool[:k]]
    remaining = list(pool)
    chosen: list[Chosen] = []
    while remaining and len(chosen) < k:
        weights = _softmax_weights(remaining, policy.temperature)
        total = sum(weights)
        pick = rng.random() * total
        index = 0
        while index < len(weights) - 1 and pick >= weights[index]:
            pick -= weights[index]
            index += 1
        bundle_id, score = remaining.pop(index)
        chosen.append(Chosen(bundle_id, score, weights[index] / total))
    return chosen


def choose_epsilon_mixture(
    pool: Sequence[tuple[str, float]], k: int, epsilon: float, rng: random.Random
) -> list[Chosen]:
    """The first ``k`` of ``pool`` (best first), or with probability ``epsilon`` ``k`` of it drawn uniformly
    in random order. Each chosen bundle carries its marginal probability of being at its position:
    ``(1 - epsilon) * [it is the greedy bundle there] + epsilon / len(pool)``, never below
    ``epsilon / len(pool)`` (so off-policy weights are bounded)."""
    shown = list(pool[:k])
    if rng.random() < epsilon:
        shown = rng.sample(list(pool), min(k, len(pool)))
    marginals = _epsilon_marginals(pool, k, epsilon, [bundle_id for bundle_id, _ in shown])
    return [Chosen(bundle_id, score, q) for (bundle_id, score), q in zip(shown, marginals, strict=True)]


def _softmax_weights(remaining: Sequence[tuple[str, float]], temperature: float) -> list[float]:
    """Unnormalised softmax(score / temperature) over ``remaining``, shifted by the best score."""
    top = max(s for _, s in remaining)
    return [math.exp((s - top) / temperature) for _, s in remaining]


def _epsilon_marginals(pool: Sequence[tuple[str, float]], k: int, epsilon: float, shown: Sequence[str]) -> list[float]:
    """Each shown bundle's marginal probability of being at its position under the ε-mixture over
    ``pool``: ``(1 - epsilon) * [the greedy bundle there] + epsilon / len(pool)``; 0 outside ``pool``."""
    greedy = [bundle_id for bundle_id, _ in pool[:k]]
    in_pool = {bundle_id for bundle_id, _ in pool}
    uniform = epsilon / len(pool) if pool else 0.0
    return [
        (1.0 - epsilon) * (position < len(greedy) and greedy[position] == bundle_id) + uniform
        if bundle_id in in_pool
        else 0.0
        for position, bundle_id in enumerate(shown)
    ]


def shown_propensities(
    scored: Sequence[tuple[str, float]], k: int, policy: PolicyParams, shown: Sequence[str]
) -> list[float]:
    """The probability that ``policy``, choosing ``k`` bundles from ``scored`` (its own scores of the
    candidates), would have put each bundle of ``shown`` at its position (``shown[0]`` at the top).

    ``shown`` may come from another policy: this is how a shadow candidate is evaluated on the list
    actually served, without choosing anything. The semantics are those :func:`choose` logs:

    - ``epsilon_mixture``: the exact marginal, ``(1 - epsilon) * [greedy bundle there] + epsilon / M``;
    - ``softmax``: the Plackett-Luce probability of the pick given the bundles shown above it;
      at temperature 0, 1 for the greedy pick among those left and 0 otherwise.

    A bundle outside the policy's pool (its best ``3k``) gets 0, as do later picks the policy's own
    order rules out. Given the same scores, ``k`` and policy, a list :func:`choose` returned gets back
    exactly the propensities it carried.
    """
    pool = _pool(scored, k)
    if policy.exploration == "epsilon_mixture":
        return _epsilon_marginals(pool, k, policy.epsilon, shown)
    remaining = list(pool)
    probabilities: list[float] = []
    for bundle_id in shown:
        index = next((i for i, (candidate, _) in enumerate(remaining) if candidate == bundle_id), None)
        if index is None:
            probabilities.append(0.0)
            continue
        if policy.temperature <= 0:
            probabilities.append(1.0 if index == 0 else 0.0)
        else:
            # The same weights as choose(), so a policy evaluated on its own list reproduces its log.
            weights = _softmax_weights(remaining, policy.temperature)
            probabilities.append(weights[index] / sum(weights))
        remaining.pop(index)
    return probabilities


def explain(
    evidence: Evidence | None,
    bundle: BundleInfo,
    items: Mapping[str, ItemInfo],
    signals: UserSignals,
) -> str:
    """A short reason from the strongest real signal behind the bundle."""
    if evidence is not None:
        _, kind, source = evidence.best_reason
        title = _short_title(items.get(source), source)
        if kind == "anchor":
            return f"Completes your cart with {title}"
        if kind == "recent":
            return f"Includes {title}, which you looked at recently"
        if kind == "neighbour":
            return f"Often bought with {title}"
        if kind == "category":
            return f"Matches your interest in {source}"
    for item_id in bundle.item_ids:
        item = items.get(item_id)
        if item and len(item.category_path) > 1 and item.category_path[1] in signals.top_categories:
            return f"Matches your interest in {item.category_path[1]}"
    if bundle.purchases:
        return "Popular: bought once" if bundle.purchases == 1 else f"Popular: bought {bundle.purchases} times"
    return "Popular in this store"


def _short_title(item: ItemInfo | None, fallback: str, limit: int = 60) -> str:
    title = item.title if item and item.title else fallback
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"
