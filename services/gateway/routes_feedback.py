"""``POST /v1/feedback``: what became of a bundles answer, as bundle events on the event log.

``shown`` becomes a ``bundle_impression`` event (with the positions and propensities the answer gave),
``clicked`` a ``bundle_click`` and ``bought`` a ``bundle_purchase``, each referencing the answer's
``impression_id``. They are published like ``POST /v1/events``: acknowledged only once Kafka has them.

When the answer was scored by a candidate policy in shadow, ``shown`` carries its ``shadow_policy`` and
each bundle's ``shadow_propensity``; the impression's ``context`` gets them as ``shadow_policy`` and
``shadow_propensities`` (comma-separated, in position order), which ``python -m services.policy.ope``
reads.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from services.gateway.dependencies import GuardedRoute, Metrics, Publisher, requires
from services.gateway.errors import UnprocessableRequest
from services.gateway.problems import access_responses, problem_doc
from shared.events import (
    MAX_CONTEXT_VALUE_CHARS,
    SHADOW_POLICY_CONTEXT_KEY,
    SHADOW_POLICY_LABEL_PATTERN,
    SHADOW_PROPENSITIES_CONTEXT_KEY,
    BundleImpressionEvent,
    BundleOutcomeEvent,
    CatalogId,
    EntityId,
    Event,
    EventId,
    ShownBundle,
)
from shared.store.api_keys import Scope

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"], route_class=GuardedRoute)

_EVENT_ID: TypeAdapter[str] = TypeAdapter(EventId)


def shadow_propensities_text(propensities: list[float]) -> str:
    """The context's ``shadow_propensities``: 4 significant digits each (far finer than any off-policy
    estimate's error), comma-separated, in the order given."""
    return ",".join(format(p, ".4g") for p in propensities)


class ShownBundleFeedback(ShownBundle):
    """A shown bundle as the answer gave it, with the shadow candidate's probability when it had one."""

    shadow_propensity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The answer's `shadow_propensity` for this bundle. 0 is valid: the candidate would never "
        "have shown it there.",
    )


class _FeedbackBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feedback_id: EventId | None = Field(
        default=None,
        description="Client-minted id of this feedback; it becomes the event id, so a retry is stored once. "
        "Send it here or as the Idempotency-Key header.",
    )
    catalog_id: CatalogId
    user_id: EntityId
    session_id: EntityId | None = None
    impression_id: EntityId = Field(description="The `impression_id` of the bundles answer this is about.")
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened at the storefront; default: when the gateway received it."
    )


class ShownFeedback(_FeedbackBase):
    """The answer's bundles were shown, at these positions."""

    action: Literal["shown"]
    bundles: list[ShownBundleFeedback] = Field(
        min_length=1,
        max_length=100,
        description="Each shown bundle with its position and the answer's propensity (and shadow_propensity).",
    )
    model_version: str = Field(
        default="", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$", description="The answer's model_version."
    )
    policy_version: str = Field(
        default="", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$", description="The answer's policy_version."
    )
    shadow_policy: str | None = Field(
        default=None,
        pattern=SHADOW_POLICY_LABEL_PATTERN,
        description="The answer's `shadow_policy` (name:version); send it with every bundle's `shadow_propensity`.",
    )

    @model_validator(mode="after")
    def _shadow_fields_together(self) -> ShownFeedback:
        given = [b.shadow_propensity is not None for b in self.bundles]
        if self.shadow_policy is None and any(given):
            raise ValueError("shadow_propensity needs the answer's shadow_policy; send it, or drop both")
        if self.shadow_policy is not None and not all(given):
            raise ValueError("with shadow_policy, every bundle needs the answer's shadow_propensity")
        propensities = self.shadow_propensities()
        if propensities is not None and len(propensities) > MAX_CONTEXT_VALUE_CHARS:
            raise ValueError(
                f"the shadow propensities of {len(self.bundles)} bundles take {len(propensities)} characters, "
                f"more than the {MAX_CONTEXT_VALUE_CHARS} an event's context value holds; send the shadow "
                "fields for fewer bundles (about 25 fit), or without them"
            )
        return self

    def shadow_propensities(self) -> str | None:
        """The impression context's ``shadow_propensities`` (position order); None without a shadow."""
        if self.shadow_policy is None:
            return None
        by_position = sorted(self.bundles, key=lambda b: b.position)  # stable, as the OPE join orders them
        return shadow_propensities_text([b.shadow_propensity or 0.0 for b in by_position])

    def impression_context(self) -> dict[str, str]:
        """What the impression event logs for off-policy evaluation of the shadow candidate, if any."""
        propensities = self.shadow_propensities()
        if self.shadow_policy is None or propensities is None:
            return {}
        return {SHADOW_POLICY_CONTEXT_KEY: self.shadow_policy, SHADOW_PROPENSITIES_CONTEXT_KEY: propensities}


class ClickedFeedback(_FeedbackBase):
    """The shopper opened one of the answer's bundles."""

    action: Literal["clicked"]
    bundle_id: EntityId


class BoughtFeedback(_FeedbackBase):
    """The shopper bought one of the answer's bundles."""

    action: Literal["bought"]
    bundle_id: EntityId
    revenue: float | None = Field(default=None, ge=0, le=1e7, description="What was paid, in the catalog's currency.")


Feedback = Annotated[ShownFeedback | ClickedFeedback | BoughtFeedback, Field(discriminator="action")]


class FeedbackAccepted(BaseModel):
    """The feedback is durably on the event log as ``event_type`` with id ``event_id``."""

    event_id: str
    event_type: Literal["bundle_impression", "bundle_click", "bundle_purchase"]
    impression_id: str


def feedback_event(feedback: ShownFeedback | ClickedFeedback | BoughtFeedback, event_id: str, now: datetime) -> Event:
    """The bundle event ``feedback`` stands for, with ``event_id``; ``now`` when it gives no time."""
    common = {
        "event_id": event_id,
        "catalog_id": feedback.catalog_id,
        "user_id": feedback.user_id,
        "session_id": feedback.session_id,
        "event_time": feedback.occurred_at or now,
        "impression_id": feedback.impression_id,
    }
    if isinstance(feedback, ShownFeedback):
        return BundleImpressionEvent(
            type="bundle_impression",
            bundles=[
                ShownBundle(
                    bundle_id=b.bundle_id,
                    position=b.position,
                    propensity=b.propensity,
                    policy_features=b.policy_features,
                )
                for b in feedback.bundles
            ],
            model_version=feedback.model_version,
            policy_version=feedback.policy_version,
            context=feedback.impression_context(),
            **common,  # type: ignore[arg-type]
        )
    event_type: Literal["bundle_click", "bundle_purchase"] = (
        "bundle_click" if isinstance(feedback, ClickedFeedback) else "bundle_purchase"
    )
    revenue = feedback.revenue if isinstance(feedback, BoughtFeedback) else None
    return BundleOutcomeEvent(type=event_type, bundle_id=feedback.bundle_id, revenue=revenue, **common)  # type: ignore[arg-type]


@router.post(
    "/v1/feedback",
    summary="Report what became of a bundles answer",
    response_model=FeedbackAccepted,
    dependencies=[requires(Scope.EVENTS_WRITE)],
    responses={
        **access_responses(),
        422: problem_doc("The body is invalid, or it has no feedback_id and no Idempotency-Key."),
        503: problem_doc("The event log is unavailable; retry the same request after Retry-After seconds."),
    },
)
async def post_feedback(
    publisher: Publisher,
    metrics: Metrics,
    feedback: Annotated[Feedback, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", max_length=128, description="Stands for `feedback_id` when the body has none."),
    ] = None,
) -> FeedbackAccepted:
    """`shown` (with each bundle's position and propensity, and the answer's `shadow_policy` with each
    bundle's `shadow_propensity` when it had them), `clicked` or `bought` (with its bundle), always with
    the answer's `impression_id`. The id is the client's (`feedback_id` or the
    `Idempotency-Key` header), never the gateway's, so retrying after a 503 or a lost answer stores
    the feedback once. Needs the `events:write` scope."""
    event_id = _event_id(feedback.feedback_id, idempotency_key)
    event = feedback_event(feedback, event_id, datetime.now(UTC))
    await publisher.publish([event])
    metrics.events_published.labels(type=str(event.type)).inc()
    log.debug("feedback %s published as %s", event_id, event.type)
    return FeedbackAccepted(event_id=event_id, event_type=event.type, impression_id=feedback.impression_id)  # type: ignore[arg-type]


def _event_id(feedback_id: str | None, idempotency_key: str | None) -> str:
    if feedback_id is not None and idempotency_key is not None and feedback_id != idempotency_key:
        raise UnprocessableRequest("feedback_id differs from the Idempotency-Key header; send one of them")
    event_id = feedback_id or idempotency_key
    if event_id is None:
        raise UnprocessableRequest(
            "send a client-minted feedback_id (or an Idempotency-Key header) so that a retry is stored once"
        )
    try:
        _EVENT_ID.validate_python(event_id)
    except ValidationError:
        raise UnprocessableRequest(
            "Idempotency-Key must be 8 to 128 letters, digits and . _ : - (it becomes the event id)"
        ) from None
    return event_id
