"""What the gateway knows about recommendations, independent of gRPC and HTTP.

Adapters translate to these at the edge (protobuf -> domain in the ranker client, domain -> JSON in
the routes), so a later bundle source (a fallback, a cache) produces the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BundleConstraints:
    """What a shopper allows: a price cap on a bundle's total and bounds on its size (0: no bound)."""

    max_total_price: float | None = None
    min_items: int = 0
    max_items: int = 0


NO_CONSTRAINTS = BundleConstraints()


@dataclass(frozen=True, slots=True)
class BundleItem:
    item_id: str
    title: str
    price: float | None
    image_url: str | None


@dataclass(frozen=True, slots=True)
class RankedBundle:
    """One recommended bundle; ``propensity`` is the probability the policy put it at its position, and
    ``shadow_propensity`` the probability the catalog's shadow candidate would have (None: no shadow)."""

    bundle_id: str
    name: str
    items: tuple[BundleItem, ...]
    score: float
    total_price: float | None
    discounted_price: float | None
    explanation: str
    source: str
    propensity: float
    shadow_propensity: float | None = None
    policy_features: tuple[float, ...] = ()
    """The contextual bandit's features of the bundle when it chose; empty under other policies."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Bundles for one shopper, best first, with the versions that produced them.

    ``fallback_reason`` is set when the ranker could not answer and these are popular bundles instead.
    ``shadow_policy`` names the candidate (``name:version``) that scored the answer in shadow, if any.
    """

    bundles: tuple[RankedBundle, ...]
    model_version: str
    policy_version: str
    cold_start: bool
    fallback_reason: str | None = None
    shadow_policy: str | None = None


@dataclass(frozen=True, slots=True)
class RelatedItem:
    """An item that completes another, with how often they were bought together (0: a curated
    bundle holds both) and why, in words."""

    item: BundleItem
    bought_together: float
    explanation: str


@dataclass(frozen=True, slots=True)
class BundleSearchResult:
    """Bundles matching a shopper's query, best first; ``model_version`` is the text encoder's."""

    bundles: tuple[RankedBundle, ...]
    model_version: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a spoken query said, in which language (ISO 639-1), and the speech model's version."""

    text: str
    language: str
    model_version: str
