"""Dynamic batching: texts from concurrent callers share forward passes of one encoder."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from services.embedding import metrics
from services.embedding.text_encoder import TextEncoder, TextRole
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


@dataclass
class _Request:
    texts: list[str]
    role: TextRole
    future: Future[Vectors]
    enqueued_at: float
    vectors: Vectors
    next_index: int = 0
    encoded: int = 0


@dataclass
class _Slice:
    request: _Request
    start: int
    count: int


@dataclass
class _Batch:
    role: TextRole
    slices: list[_Slice] = field(default_factory=list)


class TextBatcher:
    """Queues texts from many threads and encodes them in batches on one worker thread.

    A batch is closed when ``max_batch`` texts wait or when the oldest waiting text has waited
    ``max_wait_s``, whichever comes first, and right away while closing. A batch never mixes
    roles: the oldest waiting call always goes into the next batch, and calls of its role join it
    in arrival order. A call larger than ``max_batch`` is spread over consecutive batches. At most
    ``max_queue`` texts wait at a time.
    """

    def __init__(self, encoder: TextEncoder, max_batch: int, max_wait_s: float, max_queue: int) -> None:
        """Starts the worker thread; :meth:`close` stops it."""
        self._encoder = encoder
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._pending: deque[_Request] = deque()
        self._pending_texts = 0
        self._closing = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._run, name=f"embedding-batcher-{encoder.name}", daemon=True)
        self._worker.start()

    @property
    def encoder(self) -> TextEncoder:
        """The encoder this batcher feeds."""
        return self._encoder

    def submit(self, texts: list[str], role: TextRole) -> Future[Vectors]:
        """Queues ``texts`` for encoding; never blocks.

        Returns:
            A future of the float32 ``(len(texts), dim)`` unit vectors in the order of ``texts``.
            It raises what the encoder raised if the forward pass failed. Cancelling it before its
            first batch starts drops the call.

        Raises:
            ResourceExhausted: ``max_queue`` texts would be exceeded; the caller should back off.
            InvalidArgument: ``texts`` alone is longer than the queue.
            Unavailable: :meth:`close` has been called.
        """
        future: Future[Vectors] = Future()
        if not texts:
            future.set_result(np.empty((0, self._encoder.dim), dtype=np.float32))
            return future
        if len(texts) > self._max_queue:
            raise InvalidArgument(
                f"{len(texts)} texts in one call exceed the queue of {self._max_queue}; split the call"
            )
        with self._changed:
            if self._closing:
                raise Unavailable("embedding service is shutting down; retry")
            if self._pending_texts + len(texts) > self._max_queue:
                raise ResourceExhausted(
                    f"embedding queue is full ({self._pending_texts} texts pending); retry with backoff"
                )
            vectors = np.empty((len(texts), self._encoder.dim), dtype=np.float32)
            self._pending.append(_Request(list(texts), role, future, time.monotonic(), vectors))
            self._pending_texts += len(texts)
            metrics.QUEUE_DEPTH.set(self._pending_texts)
            self._changed.notify()
        return future

    def close(self) -> None:
        """Refuses new texts, encodes every text already queued, then stops the worker.

        Safe to call more than once; returns when the worker has stopped.
        """
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._worker.join()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch.slices:
                self._encode(batch)

    def _next_batch(self) -> _Batch | None:
        """Blocks until a batch is due; None once closing and the queue is empty."""
        with self._changed:
            while True:
                if not self._pending:
                    if self._closing:
                        return None
                    self._changed.wait()
                    continue
                if self._closing or self._pending_texts >= self._max_batch:
                    break
                remaining_s = self._pending[0].enqueued_at + self._max_wait_s - time.monotonic()
                if remaining_s <= 0:
                    break
                self._changed.wait(remaining_s)
            batch = self._take_batch()
            metrics.QUEUE_DEPTH.set(self._pending_texts)
            return batch

    def _take_batch(self) -> _Batch:
        """Moves up to ``max_batch`` texts of the oldest call's role from the queue into a batch."""
        batch = _Batch(self._pending[0].role)
        taken = 0
        kept: deque[_Request] = deque()
        for request in self._pending:
            if request.role is not batch.role or taken == self._max_batch:
                kept.append(request)
                continue
            starting = request.next_index == 0
            if (starting and not request.future.set_running_or_notify_cancel()) or request.future.done():
                # Cancelled by its caller, or failed with an earlier slice: nothing left to deliver.
                self._pending_texts -= len(request.texts) - request.next_index
                continue
            count = min(len(request.texts) - request.next_index, self._max_batch - taken)
            batch.slices.append(_Slice(request, request.next_index, count))
            request.next_index += count
            taken += count
            self._pending_texts -= count
            if request.next_index < len(request.texts):
                kept.append(request)
        self._pending = kept
        return batch

    def _encode(self, batch: _Batch) -> None:
        texts = [text for s in batch.slices for text in s.request.texts[s.start : s.start + s.count]]
        started = time.perf_counter()
        try:
            vectors = self._encoder.encode(texts, batch.role)
        except Exception as exc:
            log.exception("encoding a batch of %d texts failed", len(texts))
            for piece in batch.slices:
                if not piece.request.future.done():
                    piece.request.future.set_exception(exc)
            return
        metrics.ENCODE_DURATION.labels("text").observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(texts))
        metrics.TEXTS.inc(len(texts))
        offset = 0
        for piece in batch.slices:
            request = piece.request
            request.vectors[piece.start : piece.start + piece.count] = vectors[offset : offset + piece.count]
            offset += piece.count
            request.encoded += piece.count
            if request.encoded == len(request.texts):
                request.future.set_result(request.vectors)
