"""``POST /v1/events``: a storefront reports what its shoppers did."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import ValidationError

from services.gateway.dependencies import GuardedRoute, Metrics, Publisher, Settings, requires
from services.gateway.errors import MalformedJson, PayloadTooLarge, UnprocessableRequest
from services.gateway.problems import PROBLEM_MEDIA_TYPE, access_responses, problem_response
from services.gateway.schemas import EventResult, EventsRejectedProblem, EventsResponse, Problem
from shared.events import EVENT_ADAPTER, MAX_EVENT_BYTES, Event, describe_validation_error, encode_event
from shared.store.api_keys import Scope

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"], route_class=GuardedRoute)

EVENTS_BATCH_SCHEMA_REF = "#/components/schemas/EventsBatch"

_DESCRIPTION = """\
Validates each event on its own and publishes the valid ones, in order, to the event log.

* **200**: every event is accepted. An accepted event is durably stored.
* **207**: some events are accepted and published; `results` says why each other one was not.
  Fix those and send only them again.
* **422**: no event is acceptable (`results` holds each reason), or the body is not
  `{"events": [...]}` with 1 to the configured maximum number of events.
* **400**: the body is not JSON. **413**: the body is larger than the configured limit.
* **503** (with `Retry-After`): the event log did not acknowledge the events in time. No event is
  reported accepted; send the same request again (event ids make the retry safe).

Event ids are minted by the client and identify an event across retries; the gateway never makes one
up. For a request with exactly one event, the `Idempotency-Key` header may stand in for a missing
`event_id` (the key becomes the event id); with more than one event the header is refused.

Needs an API key with the `events:write` scope.
"""


def _problem(description: str, model: type[Problem] = Problem) -> dict[str, Any]:
    return {"description": description, "model": model, "content": {PROBLEM_MEDIA_TYPE: {}}}


@router.post(
    "/v1/events",
    summary="Report shopper events",
    description=_DESCRIPTION,
    response_model=EventsResponse,
    dependencies=[requires(Scope.EVENTS_WRITE)],
    responses={
        **access_responses(),
        207: {"description": "Some events accepted, some rejected.", "model": EventsResponse},
        400: _problem("The body is not JSON."),
        413: _problem("The body is too large."),
        422: _problem("No event acceptable, or the body is not a batch of events.", EventsRejectedProblem),
        503: _problem("The event log is unavailable; retry after Retry-After seconds."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": EVENTS_BATCH_SCHEMA_REF}}},
        }
    },
)
async def post_events(
    request: Request,
    response: Response,
    settings: Settings,
    publisher: Publisher,
    metrics: Metrics,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="The event id of a single-event request.")
    ] = None,
) -> EventsResponse | Response:
    raw_events = _events_of(await _read_body(request, settings.max_request_bytes), settings.max_events_per_request)
    if idempotency_key is not None:
        raw_events = _apply_idempotency_key(raw_events, idempotency_key)

    results: list[EventResult] = []
    accepted: list[Event] = []
    for index, raw in enumerate(raw_events):
        event_or_reason = _validate(raw)
        if isinstance(event_or_reason, str):
            results.append(
                EventResult(index=index, event_id=_claimed_event_id(raw), status="rejected", reason=event_or_reason)
            )
        else:
            accepted.append(event_or_reason)
            results.append(EventResult(index=index, event_id=event_or_reason.event_id, status="accepted", reason=None))
    rejected = len(results) - len(accepted)
    if rejected:
        metrics.events_rejected.inc(rejected)

    if not accepted:
        return problem_response(
            422,
            f"none of the {rejected} events is valid; `results` gives the reason for each",
            extensions={
                "accepted": 0,
                "rejected": rejected,
                "results": [result.model_dump(mode="json") for result in results],
            },
        )

    await publisher.publish(accepted)
    for event_type, count in Counter(str(event.type) for event in accepted).items():
        metrics.events_published.labels(type=event_type).inc(count)
    log.debug("published %d events, rejected %d", len(accepted), rejected)
    response.status_code = 207 if rejected else 200
    return EventsResponse(accepted=len(accepted), rejected=rejected, results=results)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes."""
    too_large = PayloadTooLarge(f"the body is larger than {limit} bytes; send fewer events per request")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _events_of(body: bytes, max_events: int) -> list[Any]:
    """The ``events`` list of a ``{"events": [...]}`` body."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedJson(f'the body is not JSON ({exc}); send {{"events": [...]}}') from None
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise UnprocessableRequest('the body must be a JSON object {"events": [...]} holding a list of events')
    unknown = sorted(set(document) - {"events"})
    if unknown:
        raise UnprocessableRequest(f'unknown member(s) {", ".join(unknown)}; the body is {{"events": [...]}}')
    events: list[Any] = document["events"]
    if not events:
        raise UnprocessableRequest("events is empty; send at least one event")
    if len(events) > max_events:
        raise UnprocessableRequest(f"{len(events)} events in one request; the limit is {max_events}: split the batch")
    return events


def _apply_idempotency_key(raw_events: list[Any], key: str) -> list[Any]:
    """Uses ``key`` as the event id of the one event that has none."""
    if len(raw_events) != 1:
        raise UnprocessableRequest(
            "Idempotency-Key is accepted only with a single event; give each event its own event_id"
        )
    [raw] = raw_events
    if isinstance(raw, dict) and raw.get("event_id") is None:
        return [{**raw, "event_id": key}]
    if isinstance(raw, dict) and raw.get("event_id") != key:
        raise UnprocessableRequest("the event's event_id differs from the Idempotency-Key header; send one of them")
    return raw_events


def _validate(raw: Any) -> Event | str:
    """The event, or the reason it cannot be accepted."""
    try:
        event = EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        return describe_validation_error(exc)
    size = len(encode_event(event))
    if size > MAX_EVENT_BYTES:
        return f"event is {size} bytes encoded; the limit is {MAX_EVENT_BYTES}"
    return event


def _claimed_event_id(raw: Any) -> str | None:
    """The event id a rejected event claims, to help the client match results; None if unusable."""
    claimed = raw.get("event_id") if isinstance(raw, dict) else None
    return claimed if isinstance(claimed, str) and len(claimed) <= 128 else None
