"""KafkaEventPublisher when Kafka is out of reach (its contract against a real Kafka is in the
integration suite)."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.gateway.kafka_publisher import KafkaEventPublisher
from shared.errors import Unavailable
from shared.events import EVENT_ADAPTER
from tests.unit.gateway.gateway_fakes import view_event

# Nothing listens on the discard port of the loopback interface.
UNREACHABLE = "127.0.0.1:9"


def test_publishing_without_a_reachable_kafka_is_unavailable_after_the_ack_timeout() -> None:
    event = EVENT_ADAPTER.validate_python(view_event(1))

    async def scenario() -> float:
        publisher = KafkaEventPublisher(bootstrap=UNREACHABLE, topic="bundlewise.events.v1", ack_timeout_s=0.3)
        started = time.monotonic()
        try:
            with pytest.raises(Unavailable) as raised:
                await publisher.publish([event])
            assert str(raised.value) == "Kafka is not reachable (no connection within 0.3 s); retry later"
            return time.monotonic() - started
        finally:
            await publisher.close()

    waited_s = asyncio.run(scenario())

    assert waited_s < 5.0  # well under the 30 s a producer bootstrap blocks for


def test_a_closed_publisher_refuses_events() -> None:
    event = EVENT_ADAPTER.validate_python(view_event(1))

    async def scenario() -> None:
        publisher = KafkaEventPublisher(bootstrap=UNREACHABLE, topic="bundlewise.events.v1", ack_timeout_s=0.3)
        await publisher.close()
        await publisher.publish([event])

    with pytest.raises(Unavailable, match=r"^the gateway is shutting down; retry later$"):
        asyncio.run(scenario())
