"""Dynamic batching: callers share forward passes, and each gets back exactly its own vectors."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from services.embedding.batcher import TextBatcher
from services.embedding.text_encoder import MiniLMTextEncoder, TextEncoder, TextRole
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable

WAIT_S = 10.0


class RecordingEncoder:
    """Wraps an encoder and records the texts and role of every forward pass."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.batches: list[tuple[list[str], TextRole]] = []
        self.name, self.version, self.dim = inner.name, inner.version, inner.dim
        self.license, self.device = inner.license, inner.device

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        self.batches.append((list(texts), role))
        return self.inner.encode(texts, role)


class GatedEncoder:
    """Holds every forward pass until ``gate`` is set; ``started`` tells that one is held."""

    name, version, dim, license, device = "gated", "gated@0", 2, "none", "cpu"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        self.started.set()
        assert self.gate.wait(WAIT_S)
        return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(texts), 1))


class FailingEncoder(GatedEncoder):
    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        raise RuntimeError("out of memory")


@pytest.fixture
def gated() -> Iterator[GatedEncoder]:
    encoder = GatedEncoder()
    yield encoder
    encoder.gate.set()


def test_concurrent_callers_each_get_their_own_vectors_in_order(tiny_encoder: MiniLMTextEncoder) -> None:
    recording = RecordingEncoder(tiny_encoder)
    batcher = TextBatcher(recording, max_batch=64, max_wait_s=0.2, max_queue=4096)
    sizes = [1, 3, 100, 7, 2, 30, 5, 64, 1, 12, 9, 4, 65, 2, 18, 6]
    calls = [[f"caller {c} item {i} {'cable ' * (i % 5)}" for i in range(n)] for c, n in enumerate(sizes)]
    results: dict[int, npt.NDArray[np.float32]] = {}
    start = threading.Barrier(len(calls))

    def call(index: int) -> None:
        start.wait()
        results[index] = batcher.submit(calls[index], TextRole.PASSAGE).result(WAIT_S)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()

    for index, texts in enumerate(calls):
        np.testing.assert_allclose(results[index], tiny_encoder.encode(texts, TextRole.PASSAGE), atol=1e-5)
    batch_sizes = [len(texts) for texts, _ in recording.batches]
    assert sum(batch_sizes) == sum(sizes)
    assert max(batch_sizes) == 64
    assert len(recording.batches) < len(calls)


def test_a_call_larger_than_max_batch_is_spread_over_consecutive_passes(
    tiny_encoder: MiniLMTextEncoder,
) -> None:
    recording = RecordingEncoder(tiny_encoder)
    batcher = TextBatcher(recording, max_batch=4, max_wait_s=0.0, max_queue=100)
    texts = [f"text number {i}" for i in range(10)]

    vectors = batcher.submit(texts, TextRole.QUERY).result(WAIT_S)
    batcher.close()

    assert [batch for batch, _ in recording.batches] == [texts[0:4], texts[4:8], texts[8:10]]
    assert {role for _, role in recording.batches} == {TextRole.QUERY}
    np.testing.assert_allclose(vectors, tiny_encoder.encode(texts, TextRole.QUERY), atol=1e-5)


def test_a_batch_never_mixes_roles(tiny_encoder: MiniLMTextEncoder, gated: GatedEncoder) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=8, max_wait_s=0.0, max_queue=100)
    held = batcher.submit(["held"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    query = batcher.submit(["q1", "q2"], TextRole.QUERY)
    passage = batcher.submit(["p1"], TextRole.PASSAGE)
    query_again = batcher.submit(["q3"], TextRole.QUERY)

    gated.gate.set()
    for future in (held, query, passage, query_again):
        future.result(WAIT_S)
    batcher.close()

    assert recording.batches == [
        (["held"], TextRole.PASSAGE),
        (["q1", "q2", "q3"], TextRole.QUERY),
        (["p1"], TextRole.PASSAGE),
    ]


def test_a_full_queue_refuses_new_texts_with_resource_exhausted(gated: GatedEncoder) -> None:
    batcher = TextBatcher(gated, max_batch=2, max_wait_s=0.0, max_queue=10)
    in_flight = batcher.submit(["a", "b"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    queued = batcher.submit([f"t{i}" for i in range(10)], TextRole.PASSAGE)

    with pytest.raises(ResourceExhausted) as refused:
        batcher.submit(["one more"], TextRole.PASSAGE)

    assert str(refused.value) == "embedding queue is full (10 texts pending); retry with backoff"
    gated.gate.set()
    assert in_flight.result(WAIT_S).shape == (2, 2)
    assert queued.result(WAIT_S).shape == (10, 2)
    batcher.close()


def test_a_call_larger_than_the_whole_queue_is_invalid(gated: GatedEncoder) -> None:
    batcher = TextBatcher(gated, max_batch=2, max_wait_s=0.0, max_queue=10)

    with pytest.raises(InvalidArgument, match="11 texts in one call exceed the queue of 10"):
        batcher.submit(["t"] * 11, TextRole.PASSAGE)
    batcher.close()


def test_close_encodes_everything_queued_then_refuses_new_texts(gated: GatedEncoder) -> None:
    batcher = TextBatcher(gated, max_batch=2, max_wait_s=60.0, max_queue=100)
    futures = [batcher.submit([f"t{i}"] * 3, TextRole.PASSAGE) for i in range(4)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    assert gated.started.wait(WAIT_S)

    gated.gate.set()
    closer.join(WAIT_S)

    assert not closer.is_alive()
    assert [future.result(0).shape for future in futures] == [(3, 2)] * 4
    with pytest.raises(Unavailable, match="shutting down"):
        batcher.submit(["late"], TextRole.PASSAGE)


def test_a_failed_forward_pass_fails_every_call_in_it() -> None:
    batcher = TextBatcher(FailingEncoder(), max_batch=8, max_wait_s=0.05, max_queue=100)
    first = batcher.submit(["a"], TextRole.PASSAGE)
    second = batcher.submit(["b", "c"], TextRole.PASSAGE)

    for future in (first, second):
        with pytest.raises(RuntimeError, match="out of memory"):
            future.result(WAIT_S)
    batcher.close()


def test_a_call_cancelled_while_queued_is_never_encoded(gated: GatedEncoder) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=8, max_wait_s=0.0, max_queue=100)
    held = batcher.submit(["held"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    abandoned = batcher.submit(["abandoned"], TextRole.PASSAGE)
    kept = batcher.submit(["kept"], TextRole.PASSAGE)

    assert abandoned.cancel()
    gated.gate.set()
    held.result(WAIT_S)
    kept.result(WAIT_S)
    batcher.close()

    assert [texts for texts, _ in recording.batches] == [["held"], ["kept"]]


def test_no_texts_resolve_at_once_to_an_empty_matrix(gated: GatedEncoder) -> None:
    batcher = TextBatcher(gated, max_batch=8, max_wait_s=0.0, max_queue=100)

    assert batcher.submit([], TextRole.PASSAGE).result(0).shape == (0, 2)
    batcher.close()
