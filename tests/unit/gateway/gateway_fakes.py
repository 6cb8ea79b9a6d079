"""In-memory fakes of the gateway's ports, settings, keys and events for its unit tests."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.gateway.access import AccessControl, ApiKeyVerifier, RateLimit
from services.gateway.app import create_app
from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, BundleItem, RankedBundle, Recommendation
from services.gateway.metrics import GatewayMetrics
from services.gateway.ports import BundleSource, CatalogEditor, EventPublisher, RateDecision
from services.gateway.settings import GatewaySettings
from shared.events import Event
from shared.store.api_keys import SCOPES, StoredKey, key_digest

PEPPER = "unit-test-pepper-not-a-secret"


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
            policy_features=(1.0, 0.8, 0.1, 1.0, 0.0, 0.0),
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
        "api_key_pepper": PEPPER,
    }
    values.update(overrides)
    return GatewaySettings(**values)


class InMemoryKeyStore:
    """API keys in a dict, by digest; counts lookups; raises ``failure`` instead when it is set."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.lookups = 0
        self.failure: Exception | None = None
        self._ids = itertools.count(1)

    def add(self, scopes: Sequence[str] = SCOPES, *, rate_per_s: float | None = None, burst: int | None = None) -> str:
        """Issues a key with ``scopes``; returns its plaintext."""
        key_id = f"k{next(self._ids):04d}"
        plaintext = f"bwk_{key_id}_secret-of-{key_id}"
        self.keys[key_digest(PEPPER, plaintext)] = StoredKey(
            key_id=key_id,
            name=f"holder of {key_id}",
            scopes=frozenset(scopes),
            rate_per_s=rate_per_s,
            burst=burst,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            revoked_at=None,
        )
        return plaintext

    def revoke(self, plaintext: str) -> None:
        digest = key_digest(PEPPER, plaintext)
        self.keys[digest] = dataclasses.replace(self.keys[digest], revoked_at=datetime.now(UTC))

    async def find(self, digest: str) -> StoredKey | None:
        self.lookups += 1
        if self.failure is not None:
            raise self.failure
        return self.keys.get(digest)

    async def close(self) -> None:
        pass


@dataclass
class ScriptedLimiter:
    """Allows every request until ``deny_after`` requests of one key; keeps each call's arguments."""

    deny_after: int | None = None
    retry_after_s: float = 2.5
    calls: list[tuple[str, float, int]] = field(default_factory=list)

    async def take(self, key_id: str, rate_per_s: float, burst: int) -> RateDecision:
        self.calls.append((key_id, rate_per_s, burst))
        taken = sum(1 for call in self.calls if call[0] == key_id)
        if self.deny_after is not None and taken > self.deny_after:
            return RateDecision(allowed=False, retry_after_s=self.retry_after_s)
        return RateDecision(allowed=True)

    async def close(self) -> None:
        pass


@dataclass
class GatewayUnderTest:
    """An app over fakes, with the fakes to script and inspect."""

    app: FastAPI
    keys: InMemoryKeyStore
    limiter: ScriptedLimiter
    metrics: GatewayMetrics


def make_gateway(
    publisher: EventPublisher,
    bundles: BundleSource,
    *,
    settings: GatewaySettings | None = None,
    catalog: CatalogEditor | None = None,
    keys: InMemoryKeyStore | None = None,
    limiter: ScriptedLimiter | None = None,
    clock: Any = None,
) -> GatewayUnderTest:
    """``create_app`` over the fakes, with key checks and rate limits on (as in production)."""
    settings = settings or make_settings()
    keys = keys or InMemoryKeyStore()
    limiter = limiter or ScriptedLimiter()
    metrics = GatewayMetrics(CollectorRegistry())
    verifier = ApiKeyVerifier(keys, PEPPER, cache_s=settings.api_key_cache_s, **({"clock": clock} if clock else {}))
    access = AccessControl(
        verifier if settings.auth_enabled else None,
        limiter,
        RateLimit(settings.rate_limit_per_s, settings.rate_limit_burst),
        metrics,
    )
    app = create_app(settings, publisher, bundles, access=access, metrics=metrics, catalog=catalog)
    return GatewayUnderTest(app, keys, limiter, metrics)


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
