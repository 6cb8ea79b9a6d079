"""In-memory fakes of the gateway's two ports, settings and events for its unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, BundleItem, RankedBundle, Recommendation
from services.gateway.settings import GatewaySettings
from shared.events import Event


class RecordingPublisher:
    """Keeps every published batch; raises ``failure`` instead when it is set."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.failure: Exception | None = None

    async def publish(self, events: Sequence[Event]) -> None:
        if self.failure is not None:
            raise self.failure
        self.batches.append(list(events))

    async def close(self) -> None:
        pass


@dataclass
class ScriptedBundleSource:
    """Answers ``recommendation`` (or raises ``failure``) and keeps the arguments of every call."""

    recommendation: Recommendation
    failure: Exception | None = None
    ready_failure: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def recommend(
        self,
        *,
        catalog_id: str,
        user_id: str,
        k: int,
        anchor_item_ids: Sequence[str],
        request_id: str,
        constraints: BundleConstraints = NO_CONSTRAINTS,
    ) -> Recommendation:
        self.calls.append(
            {
                "catalog_id": catalog_id,
                "user_id": user_id,
                "k": k,
                "anchor_item_ids": list(anchor_item_ids),
                "request_id": request_id,
                "constraints": constraints,
            }
        )
        if self.failure is not None:
            raise self.failure
        return self.recommendation

    async def check_ready(self) -> None:
        if self.ready_failure is not None:
            raise self.ready_failure

    async def close(self) -> None:
        pass


TWO_BUNDLES = Recommendation(
    bundles=(
        RankedBundle(
            bundle_id="b-1",
            name="Camping starter",
            items=(
                BundleItem(item_id="tent-2p", title="Two-person tent", price=129.5, image_url="https://img/tent.jpg"),
                BundleItem(item_id="stove", title="Gas stove", price=None, image_url=None),
            ),
            score=0.93,
            total_price=None,
            discounted_price=None,
            explanation="often bought with Two-person tent",
            source="catalog",
            propensity=0.61,
        ),
        RankedBundle(
            bundle_id="b-2",
            name="Coffee corner",
            items=(BundleItem(item_id="grinder", title="Grinder", price=40.0, image_url=None),),
            score=0.5,
            total_price=40.0,
            discounted_price=36.0,
            explanation="popular this week",
            source="generated",
            propensity=0.2,
        ),
    ),
    model_version="m-7",
    policy_version="p-3",
    cold_start=False,
)


def make_settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": "127.0.0.1:9",
        "ranker_addr": "127.0.0.1:9",
        "max_events_per_request": 5,
        "max_request_bytes": 20_000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def view_event(n: int, **fields: Any) -> dict[str, Any]:
    """A valid JSON ``view`` event with id ``evt-0000000<n>``."""
    event: dict[str, Any] = {
        "type": "view",
        "event_id": f"evt-{n:08d}",
        "catalog_id": "amazon",
        "user_id": "shopper-42",
        "event_time": "2024-05-01T12:00:00+00:00",
        "item_id": f"item-{n}",
    }
    event.update(fields)
    return event
