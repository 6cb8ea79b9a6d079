"""The HTTP API's JSON shapes (pydantic), as published in the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.gateway.domain import Recommendation
from shared.events import Event


class BundleItemOut(BaseModel):
    item_id: str
    title: str
    price: float | None = Field(description="Unit price in the catalog's currency; null when unknown.")
    image_url: str | None


class BundleOut(BaseModel):
    bundle_id: str
    name: str
    items: list[BundleItemOut]
    score: float = Field(description="Ranking score; higher is better. Comparable within one response only.")
    total_price: float | None = Field(description="Sum of the item prices; null when a price is unknown.")
    discounted_price: float | None = Field(description="Bundle price after its discount; null when none.")
    explanation: str = Field(description='Why it is recommended, e.g. "often bought with X".')
    source: str = Field(description='"catalog" for a curated bundle, "generated" for a composed one.')
    propensity: float = Field(
        description="Probability the policy put this bundle at this position; log it with the impression."
    )
    shadow_propensity: float | None = Field(
        description="Probability the candidate policy running in shadow (`shadow_policy`) would have put this "
        "bundle at this position; it did not change the answer. Send it back with the `shown` feedback. "
        "Null when no candidate runs in shadow.",
    )
    policy_features: list[float] | None = Field(
        description="The contextual bandit's features of this bundle when it chose the list; send them back "
        "with the `shown` feedback, unchanged (the policy learns from them). Null under other policies "
        "and on a fallback.",
    )


class Fallback(BaseModel):
    """Why the answer holds popular bundles instead of the ranker's."""

    reason: Literal["ranker unavailable", "ranker timed out"]


class BundlesResponse(BaseModel):
    """Bundles for one shopper, best first."""

    user_id: str
    catalog_id: str
    bundles: list[BundleOut]
    model_version: str
    policy_version: str
    cold_start: bool = Field(description="True when the shopper had no usable history (popular bundles).")
    request_id: str = Field(description="The caller's request id, or the one minted; also in X-Request-Id.")
    impression_id: str = Field(
        description="Identifies this answer: send it back with POST /v1/feedback when the bundles are shown, "
        "clicked or bought."
    )
    fallback: Fallback | None = Field(
        description="Set when the ranker could not answer in time and these are the catalog's popular bundles "
        "(for the shopper's favourite category first); null for a ranked answer."
    )
    shadow_policy: str | None = Field(
        description="The candidate policy (name:version) that scored this answer in shadow, to send back with "
        "the `shown` feedback beside each bundle's `shadow_propensity`; null when none did (and on a fallback).",
    )

    @classmethod
    def from_recommendation(
        cls,
        recommendation: Recommendation,
        *,
        user_id: str,
        catalog_id: str,
        request_id: str,
        impression_id: str,
    ) -> BundlesResponse:
        fallback = recommendation.fallback_reason
        return cls(
            user_id=user_id,
            catalog_id=catalog_id,
            bundles=[
                BundleOut(
                    bundle_id=bundle.bundle_id,
                    name=bundle.name,
                    items=[
                        BundleItemOut(
                            item_id=item.item_id, title=item.title, price=item.price, image_url=item.image_url
                        )
                        for item in bundle.items
                    ],
                    score=bundle.score,
                    total_price=bundle.total_price,
                    discounted_price=bundle.discounted_price,
                    explanation=bundle.explanation,
                    source=bundle.source,
                    propensity=bundle.propensity,
                    shadow_propensity=bundle.shadow_propensity,
                    policy_features=list(bundle.policy_features) or None,
                )
                for bundle in recommendation.bundles
            ],
            model_version=recommendation.model_version,
            policy_version=recommendation.policy_version,
            cold_start=recommendation.cold_start,
            request_id=request_id,
            impression_id=impression_id,
            fallback=None if fallback is None else Fallback.model_validate({"reason": fallback}),
            shadow_policy=recommendation.shadow_policy,
        )


class EventResult(BaseModel):
    """The outcome of one event of a batch; ``index`` is its position in the request's list."""

    index: int = Field(ge=0)
    event_id: str | None = Field(description="The event's id when it had a usable one.")
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="Why it was rejected, one `field: problem` per issue; null if accepted.")


class EventsResponse(BaseModel):
    """Per-event outcomes, in request order. An accepted event is durably in the event log."""

    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    results: list[EventResult]


class EventsBatch(BaseModel):
    """The body of ``POST /v1/events``.

    Only documents the shape: the route validates each event on its own, so one bad event does not
    reject its neighbours.
    """

    events: list[Event] = Field(
        min_length=1, description="Events (docs/events.md), each discriminated by `type`, in order."
    )


class Problem(BaseModel):
    """An RFC 9457 problem (``application/problem+json``); every error answer has this shape."""

    type: str = Field(default="about:blank", description="about:blank: the status says it all.")
    title: str = Field(description="The HTTP status phrase.")
    status: int
    detail: str = Field(description="What went wrong in this request, and what to change.")


class EventsRejectedProblem(Problem):
    """422 when no event of a batch was acceptable: the per-event reasons are in ``results``."""

    accepted: int = 0
    rejected: int
    results: list[EventResult]
