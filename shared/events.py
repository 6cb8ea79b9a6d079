"""The event schema (version 1): what a storefront tells Bundlewise about its shoppers.

One pydantic model per event type, discriminated by ``type``. The gateway validates with it before
producing to Kafka, and the ingestion consumer validates again (events may be produced to Kafka by
other tools), dead-lettering what fails. ``docs/events.md`` shows an example of each type.

Event ids are minted by the client, so a retried request is recognised as the same event.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.bandit_features import MAX_ABS_FEATURE_VALUE, MAX_LOGGED_FEATURES

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("holds the character U+0000, which cannot be stored; remove it")
    return text


# PostgreSQL cannot store U+0000 in text or JSON: an event holding it could never be ingested, so
# free text refuses it where the event is first validated (the gateway, or ingestion's parse).
FreeText = Annotated[str, AfterValidator(_storable)]

CatalogId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="e.g. amazon")]
EntityId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$", description="A user, item or bundle id.")
]
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$", description="Client-minted.")]


class EventType(StrEnum):
    """Every event type; the models below spell the same values as literals (plain tags in errors)."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    REVIEW = "review"
    SEARCH = "search"
    BUNDLE_IMPRESSION = "bundle_impression"
    BUNDLE_CLICK = "bundle_click"
    BUNDLE_PURCHASE = "bundle_purchase"


# No commas (the log joins values with them) and no spaces: a label an operator can type to the OPE command.
SHADOW_POLICY_LABEL_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,32}$"
"""``name:version`` of a candidate policy run in shadow, as an impression's context logs it."""
# The impression context keys under which a shadow candidate is logged for off-policy evaluation.
SHADOW_POLICY_CONTEXT_KEY = "shadow_policy"
SHADOW_PROPENSITIES_CONTEXT_KEY = "shadow_propensities"
MAX_CONTEXT_VALUE_CHARS = 256

ContextKey = Annotated[FreeText, Field(max_length=64)]
ContextValue = Annotated[FreeText, Field(max_length=MAX_CONTEXT_VALUE_CHARS)]


class _EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: EventId
    catalog_id: CatalogId
    user_id: EntityId
    session_id: EntityId | None = None
    event_time: AwareDatetime = Field(description="When it happened at the storefront (not ingest time).")
    context: dict[ContextKey, ContextValue] = Field(
        default_factory=dict, max_length=32, description="Free-form context: device, page, locale."
    )


class ItemEvent(_EventBase):
    """A shopper viewed, clicked, carted or bought one item."""

    type: Literal["view", "click", "add_to_cart", "purchase"]
    item_id: EntityId
    quantity: int = Field(default=1, ge=1, le=1000)
    price: float | None = Field(default=None, ge=0, le=1e7)


class ReviewEvent(_EventBase):
    type: Literal["review"]
    item_id: EntityId
    rating: int | None = Field(default=None, ge=1, le=5)
    text: FreeText = Field(default="", max_length=5000)


class SearchEvent(_EventBase):
    type: Literal["search"]
    query: FreeText = Field(min_length=1, max_length=512)


# One contextual-bandit feature value as an impression logs it (see shared.bandit_features).
PolicyFeature = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_FEATURE_VALUE, le=MAX_ABS_FEATURE_VALUE)]


class ShownBundle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle_id: EntityId
    position: int = Field(ge=0, le=1000)
    propensity: float = Field(gt=0, le=1, description="Probability the policy put it at this position.")
    policy_features: list[PolicyFeature] | None = Field(
        default=None,
        max_length=MAX_LOGGED_FEATURES,
        description="The contextual bandit's features of this bundle when the list was chosen "
        "(shared.bandit_features.FEATURES), as the answer gave them; the policy learns from them.",
    )


class BundleImpressionEvent(_EventBase):
    """A list of bundles was shown; logged with propensities for off-policy evaluation."""

    type: Literal["bundle_impression"]
    impression_id: EntityId
    bundles: list[ShownBundle] = Field(min_length=1, max_length=100)
    policy_version: FreeText = Field(default="", max_length=64)
    model_version: FreeText = Field(default="", max_length=64)


class BundleOutcomeEvent(_EventBase):
    """A shown (or browsed) bundle was clicked or bought."""

    type: Literal["bundle_click", "bundle_purchase"]
    bundle_id: EntityId
    impression_id: EntityId | None = None
    revenue: float | None = Field(default=None, ge=0, le=1e7)


Event = Annotated[
    ItemEvent | ReviewEvent | SearchEvent | BundleImpressionEvent | BundleOutcomeEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class InvalidEvent(ValueError):
    """An event that can never be applied; ``reason`` says what is wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, e.g. ``item_id: Field required``."""
    parts = []
    for problem in error.errors():
        location = ".".join(str(p) for p in problem["loc"]) or "event"
        parts.append(f"{location}: {problem['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes) -> Event:
    """Parses one JSON-encoded event.

    Raises:
        InvalidEvent: oversized, not JSON, unknown type, or a field missing or of the wrong type.
    """
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from None


def encode_event(event: Event) -> bytes:
    """The canonical JSON encoding used on Kafka."""
    return event.model_dump_json(exclude_none=True).encode()


def partition_key(event: Event) -> bytes:
    """Kafka key: events of one shopper stay in order on one partition."""
    return f"{event.catalog_id}:{event.user_id}".encode()


def event_timestamp(event: Event) -> datetime:
    return event.event_time
