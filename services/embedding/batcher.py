"""Dynamic batching: inputs from concurrent callers share forward passes of one encoder."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from services.embedding import metrics
from services.embedding.audio_encoder import AudioEncoder, AudioFeatures
from services.embedding.device import use_torch_threads_here
from services.embedding.image_encoder import ImageEncoder
from services.embedding.text_encoder import BatchableTextEncoder, TextRole, TokenizedText
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
ItemT = TypeVar("ItemT")
GroupT = TypeVar("GroupT", bound=Hashable)


@dataclass
class _Request(Generic[ItemT, GroupT]):
    items: list[ItemT]
    group: GroupT
    future: Future[Vectors]
    enqueued_at: float
    vectors: Vectors
    next_index: int = 0
    encoded: int = 0


@dataclass
class _Slice(Generic[ItemT, GroupT]):
    request: _Request[ItemT, GroupT]
    start: int
    count: int


@dataclass
class _Batch(Generic[ItemT, GroupT]):
    group: GroupT
    slices: list[_Slice[ItemT, GroupT]] = field(default_factory=list)


class DynamicBatcher(Generic[ItemT, GroupT]):
    """Queues inputs from many threads and encodes them in batches on worker threads (one, unless told).

    A batch is closed when ``max_batch`` inputs wait or when the oldest waiting input has waited
    ``max_wait_s``, whichever comes first, and right away while closing. A batch never mixes
    groups (a text batcher's groups are roles). Calls of at most ``interactive_max`` inputs (a
    shopper's search query, one product) go first: the oldest of them goes into the next batch with
    the other interactive calls of its group, and bulk calls of that group (a backfill, a catalog
    sync) fill the rest of the batch in arrival order; without interactive calls waiting, the oldest
    call leads. So a query waits for at most the forward pass in progress, not for the bulk queued
    before it; bulk calls wait only while interactive ones fill whole batches. A call larger than
    ``max_batch`` is spread over consecutive batches. At most ``max_queue`` inputs wait at a time.

    Several workers run forward passes side by side, each on its own batch; ``encode`` must then be
    safe to call from several threads at once. Each worker sets its own number of torch (OpenMP)
    threads when it starts: torch keeps that number per thread, and a thread that never set it takes
    whatever another thread set last.
    """

    def __init__(
        self,
        encode: Callable[[list[ItemT], GroupT], Vectors],
        dim: int,
        name: str,
        modality: str,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        interactive_max: int = 0,
        *,
        workers: int = 1,
        torch_threads: int | None = None,
    ) -> None:
        """Starts the worker threads; :meth:`close` stops them.

        ``encode(items, group)`` must return float32 ``(len(items), dim)``; ``modality`` (``text``,
        ``image``, ``audio``) labels the metrics and names the inputs in error messages
        (``<modality>s``). ``interactive_max``: calls of at most this many inputs go first (0: none,
        strictly oldest first). ``torch_threads``: each worker's torch threads (unset: as many as
        the constructing thread has).

        Raises:
            ValueError: ``workers`` or ``torch_threads`` is below 1.
        """
        if workers < 1 or (torch_threads is not None and torch_threads < 1):
            raise ValueError(f"workers ({workers}) and torch threads ({torch_threads}) must be at least 1")
        self._encode_fn = encode
        self._dim = dim
        self._modality = modality
        self._noun = f"{modality}s"
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._interactive_max = interactive_max
        self._pending: deque[_Request[ItemT, GroupT]] = deque()
        self._pending_items = 0
        self._closing = False
        self._changed = threading.Condition()
        self._queue_depth = metrics.QUEUE_DEPTH.labels(modality)
        self._torch_threads = torch_threads or torch.get_num_threads()
        self._workers = [
            threading.Thread(target=self._run, name=f"embedding-batcher-{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, items: Sequence[ItemT], group: GroupT) -> Future[Vectors]:
        """Queues ``items`` for encoding; never blocks.

        Returns:
            A future of the float32 ``(len(items), dim)`` vectors in the order of ``items``. It
            raises what the encoder raised if the forward pass failed. Cancelling it before its
            first batch starts drops the call.

        Raises:
            ResourceExhausted: ``max_queue`` inputs would be exceeded; the caller should back off.
            InvalidArgument: ``items`` alone is longer than the queue.
            Unavailable: :meth:`close` has been called.
        """
        future: Future[Vectors] = Future()
        if not items:
            future.set_result(np.empty((0, self._dim), dtype=np.float32))
            return future
        with self._changed:
            self._refuse_unless_room(len(items))
            vectors = np.empty((len(items), self._dim), dtype=np.float32)
            self._pending.append(_Request(list(items), group, future, time.monotonic(), vectors))
            self._pending_items += len(items)
            self._queue_depth.set(self._pending_items)
            self._changed.notify()
        return future

    def check_room(self, count: int) -> None:
        """Raises what :meth:`submit` of ``count`` inputs would raise now, without queueing anything.

        Lets a caller skip preparing inputs that would be refused; :meth:`submit` checks again, as
        other calls may fill the queue meanwhile.

        Raises:
            InvalidArgument, Unavailable, ResourceExhausted: as :meth:`submit`.
        """
        if count:
            with self._changed:
                self._refuse_unless_room(count)

    def _refuse_unless_room(self, count: int) -> None:
        """Called holding the lock, for at least one input."""
        if count > self._max_queue:
            raise InvalidArgument(
                f"{count} {self._noun} in one call exceed the queue of {self._max_queue}; split the call"
            )
        if self._closing:
            raise Unavailable("embedding service is shutting down; retry")
        if self._pending_items + count > self._max_queue:
            raise ResourceExhausted(
                f"embedding queue is full ({self._pending_items} {self._noun} pending); retry with backoff"
            )

    def close(self) -> None:
        """Refuses new inputs, encodes every input already queued, then stops the workers.

        Safe to call more than once; returns when every worker has stopped.
        """
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()

    def _run(self) -> None:
        use_torch_threads_here(self._torch_threads)
        while (batch := self._next_batch()) is not None:
            if batch.slices:
                self._encode(batch)

    def _next_batch(self) -> _Batch[ItemT, GroupT] | None:
        """Blocks until a batch is due; None once closing and the queue is empty."""
        with self._changed:
            while True:
                if not self._pending:
                    if self._closing:
                        return None
                    self._changed.wait()
                    continue
                if self._closing or self._pending_items >= self._max_batch:
                    break
                remaining_s = self._pending[0].enqueued_at + self._max_wait_s - time.monotonic()
                if remaining_s <= 0:
                    break
                self._changed.wait(remaining_s)
            batch = self._take_batch()
            self._queue_depth.set(self._pending_items)
            return batch

    def _take_batch(self) -> _Batch[ItemT, GroupT]:
        """Moves up to ``max_batch`` inputs into a batch: the group of the oldest interactive call
        (else of the oldest call), its interactive calls first, then its others, each in arrival order."""
        lead = next((r for r in self._pending if self._interactive(r)), self._pending[0])
        batch: _Batch[ItemT, GroupT] = _Batch(lead.group)
        # A stable sort: interactive calls first, arrival order within each kind.
        order = sorted((r for r in self._pending if r.group == batch.group), key=lambda r: not self._interactive(r))
        taken = 0
        finished: set[int] = set()
        for request in order:
            if taken == self._max_batch:
                break
            starting = request.next_index == 0
            if (starting and not request.future.set_running_or_notify_cancel()) or request.future.done():
                # Cancelled by its caller, or failed with an earlier slice: nothing left to deliver.
                self._pending_items -= len(request.items) - request.next_index
                finished.add(id(request))
                continue
            count = min(len(request.items) - request.next_index, self._max_batch - taken)
            batch.slices.append(_Slice(request, request.next_index, count))
            request.next_index += count
            taken += count
            self._pending_items -= count
            if request.next_index == len(request.items):
                finished.add(id(request))
        self._pending = deque(r for r in self._pending if id(r) not in finished)
        return batch

    def _interactive(self, request: _Request[ItemT, GroupT]) -> bool:
        return request.next_index == 0 and len(request.items) <= self._interactive_max

    def _encode(self, batch: _Batch[ItemT, GroupT]) -> None:
        items = [item for s in batch.slices for item in s.request.items[s.start : s.start + s.count]]
        started = time.perf_counter()
        try:
            vectors = self._encode_fn(items, batch.group)
        except Exception as exc:
            log.exception("encoding a batch of %d %s failed", len(items), self._noun)
            for piece in batch.slices:
                if not piece.request.future.done():
                    piece.request.future.set_exception(exc)
            return
        metrics.ENCODE_DURATION.labels(self._modality).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self._modality).observe(len(items))
        metrics.ENCODED.labels(self._modality).inc(len(items))
        offset = 0
        for piece in batch.slices:
            request = piece.request
            request.vectors[piece.start : piece.start + piece.count] = vectors[offset : offset + piece.count]
            offset += piece.count
            request.encoded += piece.count
            if request.encoded == len(request.items):
                request.future.set_result(request.vectors)


class TextBatcher:
    """Texts of one role per forward pass of a :class:`BatchableTextEncoder`; each caller tokenises its own texts.

    :meth:`submit` tokenises on the calling thread (in the service, the call's gRPC handler thread:
    calls tokenise in parallel, and the Rust tokenizer releases the GIL), and the worker only pads
    the tokenised texts of a batch and runs the forward pass. On a GPU one forward pass of a batch
    is far faster than tokenising it, so a worker that also tokenised would leave the GPU idle.
    Batching is a :class:`DynamicBatcher`'s: texts of one role per batch, padded to the longest.
    """

    def __init__(
        self,
        encoder: BatchableTextEncoder,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        interactive_max: int = 0,
    ) -> None:
        """Starts the worker thread; :meth:`close` stops it. Calls of at most ``interactive_max``
        texts go first (see :class:`DynamicBatcher`)."""
        self._encoder = encoder
        self._batcher: DynamicBatcher[TokenizedText, TextRole] = DynamicBatcher(
            lambda tokens, _role: encoder.encode_tokenized(tokens),
            encoder.dim,
            encoder.name,
            "text",
            max_batch,
            max_wait_s,
            max_queue,
            interactive_max,
        )

    @property
    def encoder(self) -> BatchableTextEncoder:
        """The encoder this batcher feeds."""
        return self._encoder

    def submit(self, texts: Sequence[str], role: TextRole) -> Future[Vectors]:
        """Tokenises ``texts`` (with ``role``'s prefix) on this thread, then queues them; never waits
        for the worker.

        A call the queue would refuse is refused before it is tokenised.

        Returns:
            A future of the float32 ``(len(texts), dim)`` vectors in the order of ``texts``; see
            :meth:`DynamicBatcher.submit`.

        Raises:
            ResourceExhausted: ``max_queue`` texts would be exceeded; the caller should back off.
            InvalidArgument: ``texts`` alone is longer than the queue.
            Unavailable: :meth:`close` has been called.
        """
        self._batcher.check_room(len(texts))
        started = time.perf_counter()
        tokens = self._encoder.tokenize(texts, role)
        if tokens:
            metrics.TOKENIZE_DURATION.observe(time.perf_counter() - started)
        return self._batcher.submit(tokens, role)

    def close(self) -> None:
        """Refuses new texts, encodes every text already queued, then stops the worker."""
        self._batcher.close()


class ImageBatcher(DynamicBatcher[torch.Tensor, None]):
    """Preprocessed images (``(3, H, W)`` tensors from :meth:`ImageEncoder.preprocess`) per forward pass."""

    def __init__(
        self,
        encoder: ImageEncoder,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        interactive_max: int = 0,
        *,
        workers: int = 1,
        torch_threads: int | None = None,
    ) -> None:
        """Starts the worker threads; :meth:`close` stops them. Calls of at most ``interactive_max``
        images go first; ``workers`` forward passes run side by side, each on ``torch_threads``
        (see :class:`DynamicBatcher`)."""
        super().__init__(
            lambda pixels, _group: encoder.encode(pixels),
            encoder.dim,
            encoder.name,
            "image",
            max_batch,
            max_wait_s,
            max_queue,
            interactive_max,
            workers=workers,
            torch_threads=torch_threads,
        )
        self._encoder = encoder

    @property
    def encoder(self) -> ImageEncoder:
        """The encoder this batcher feeds."""
        return self._encoder


class AudioBatcher(DynamicBatcher[AudioFeatures, int]):
    """Clips (log-mels from :meth:`AudioEncoder.features`) per forward pass, grouped by padded length.

    Clips are padded to whole seconds, and only clips of one padded length share a batch: the
    encoder then runs on the clips' own length (not Whisper's 30 s window), and a clip's vector
    never depends on what else was in its batch.
    """

    def __init__(self, encoder: AudioEncoder, max_batch: int, max_wait_s: float, max_queue: int) -> None:
        """Starts the worker thread; :meth:`close` stops it."""
        super().__init__(
            lambda features, _frames: encoder.encode(features),
            encoder.dim,
            encoder.name,
            "audio",
            max_batch,
            max_wait_s,
            max_queue,
        )
        self._encoder = encoder

    @property
    def encoder(self) -> AudioEncoder:
        """The encoder this batcher feeds."""
        return self._encoder
