"""Publishes shopper events to Kafka with kafka-python, without blocking the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from shared.errors import Unavailable
from shared.events import Event, encode_event, partition_key
from shared.kafka import make_producer

log = logging.getLogger(__name__)

# kafka-python's send() and future.get() block; these threads do that waiting. Each publish holds
# one for at most about ``ack_timeout_s``, so the pool bounds the publishes in flight.
_PUBLISH_THREADS = 8


class KafkaEventPublisher:
    """:class:`services.gateway.ports.EventPublisher` over one shared kafka-python producer.

    Each event goes to ``topic`` keyed by :func:`shared.events.partition_key` (one shopper, one
    partition, in order) with the canonical :func:`shared.events.encode_event` encoding. The
    producer waits for every in-sync replica (``shared.kafka.make_producer``), so a publish that
    returns means every event is durable.

    The producer is created in the background, never on the caller's path: building one against an
    unreachable Kafka blocks for its bootstrap timeout. Until it exists, publishes fail with
    :class:`shared.errors.Unavailable` after ``ack_timeout_s`` and the next one tries again.
    """

    def __init__(
        self, *, bootstrap: str, topic: str, ack_timeout_s: float, client_id: str = "bundlewise-gateway"
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._ack_timeout_s = ack_timeout_s
        self._client_id = client_id
        self._producer: KafkaProducer | None = None
        self._connecting: asyncio.Future[KafkaProducer] | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=_PUBLISH_THREADS, thread_name_prefix="kafka-publish")

    def start_connecting(self) -> None:
        """Starts creating the producer in the background unless it exists or is being created.

        Returns at once; must be called on the event loop. A failure is logged, and the next
        publish starts another attempt.
        """
        if self._producer is None and not self._closed:
            self._connection_attempt()

    async def publish(self, events: Sequence[Event]) -> None:
        """Sends ``events`` in order and returns once Kafka acknowledged every one.

        Raises:
            Unavailable: Kafka is unreachable or did not acknowledge all within ``ack_timeout_s``;
                some events may have been stored (consumers deduplicate by event id).
        """
        if not events:
            return
        deadline = time.monotonic() + self._ack_timeout_s
        producer = await self._wait_for_producer(deadline)
        records = [(partition_key(event), encode_event(event)) for event in events]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._send_and_wait, producer, records, deadline)

    async def close(self) -> None:
        """Flushes pending events (at most ``ack_timeout_s``) and closes the producer."""
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._close_producer, producer)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _wait_for_producer(self, deadline: float) -> KafkaProducer:
        if self._closed:
            raise Unavailable("the gateway is shutting down; retry later")
        if self._producer is not None:
            return self._producer
        try:
            return await asyncio.wait_for(
                asyncio.shield(self._connection_attempt()), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise Unavailable(
                f"Kafka is not reachable (no connection within {self._ack_timeout_s:g} s); retry later"
            ) from None
        except KafkaError as exc:
            raise Unavailable(f"Kafka is not reachable ({type(exc).__name__}); retry later") from exc

    def _connection_attempt(self) -> asyncio.Future[KafkaProducer]:
        """The attempt in progress, or a new one."""
        if self._connecting is not None:
            return self._connecting
        loop = asyncio.get_running_loop()
        connecting: asyncio.Future[KafkaProducer] = loop.create_future()
        connecting.add_done_callback(self._on_connect_done)
        self._connecting = connecting
        # A daemon thread, not an executor: a bootstrap against a dead broker blocks for tens of
        # seconds and must not hold the process open at exit.
        threading.Thread(
            target=self._connect_in_thread, args=(loop, connecting), name="kafka-connect", daemon=True
        ).start()
        return connecting

    def _connect_in_thread(self, loop: asyncio.AbstractEventLoop, connecting: asyncio.Future[KafkaProducer]) -> None:
        try:
            producer = make_producer(self._bootstrap, self._client_id, max_block_ms=int(self._ack_timeout_s * 1000))
        except Exception as exc:  # handed to the loop, which logs it and lets the next publish retry
            self._complete(loop, connecting, exc)
        else:
            if not self._complete(loop, connecting, producer):
                self._close_producer(producer)

    @staticmethod
    def _complete(
        loop: asyncio.AbstractEventLoop,
        connecting: asyncio.Future[KafkaProducer],
        outcome: KafkaProducer | BaseException,
    ) -> bool:
        """Resolves ``connecting`` on its loop; False when the loop is gone (the process is stopping)."""

        def resolve() -> None:
            if connecting.done():
                return
            if isinstance(outcome, BaseException):
                connecting.set_exception(outcome)
            else:
                connecting.set_result(outcome)

        try:
            loop.call_soon_threadsafe(resolve)
        except RuntimeError:
            return False
        return True

    def _on_connect_done(self, connecting: asyncio.Future[KafkaProducer]) -> None:
        self._connecting = None
        if connecting.cancelled():
            return
        error = connecting.exception()
        if error is not None:
            log.warning("cannot connect to Kafka at %s: %s: %s", self._bootstrap, type(error).__name__, error)
            return
        producer = connecting.result()
        if self._closed:
            threading.Thread(target=self._close_producer, args=(producer,), daemon=True).start()
            return
        self._producer = producer
        log.info("connected to Kafka at %s; publishing to %s", self._bootstrap, self._topic)

    def _send_and_wait(self, producer: KafkaProducer, records: list[tuple[bytes, bytes]], deadline: float) -> None:
        try:
            acks = [producer.send(self._topic, value=value, key=key) for key, value in records]
            for ack in acks:
                ack.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaTimeoutError:
            raise Unavailable(
                f"Kafka did not acknowledge the events within {self._ack_timeout_s:g} s; retry later"
            ) from None
        except KafkaError as exc:
            raise Unavailable(f"Kafka did not acknowledge the events ({type(exc).__name__}); retry later") from exc

    def _close_producer(self, producer: KafkaProducer) -> None:
        try:
            producer.close(timeout=self._ack_timeout_s)
        except KafkaError as exc:
            log.warning("closing the Kafka producer failed: %s: %s", type(exc).__name__, exc)
