"""Dynamic batching: callers share forward passes, and each gets back exactly its own vectors.

Texts are tokenised on the callers' threads; the batcher's worker only pads them and runs the
forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pytest
import torch

from services.embedding.batcher import DynamicBatcher, TextBatcher
from services.embedding.text_encoder import BatchableTextEncoder, MiniLMTextEncoder, TextRole, TokenizedText
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable
from tests.unit.embedding.recording_encoder import RecordingEncoder

WAIT_S = 10.0
TINY_MAX_TOKENS = 32
"""The tiny random encoder's word pieces per text (see :func:`tiny_random_bert_encoder`)."""


class GatedEncoder:
    """Holds every forward pass until ``gate`` is set; ``started`` tells that one is held."""

    name, version, dim, license, device = "gated", "gated@0", 2, "none", "cpu"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.gate = threading.Event()

    def tokenize(self, texts: Sequence[str], role: TextRole) -> list[TokenizedText]:
        return [TokenizedText(np.array([len(text)]), np.array([0])) for text in texts]

    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        self.started.set()
        assert self.gate.wait(WAIT_S)
        return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(tokens), 1))

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        return self.encode_tokenized(self.tokenize(texts, role))


class FailingEncoder(GatedEncoder):
    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        raise RuntimeError("out of memory")


@pytest.fixture
def gated() -> Iterator[GatedEncoder]:
    encoder = GatedEncoder()
    yield encoder
    encoder.gate.set()


def call_concurrently(batcher: TextBatcher, calls: list[tuple[list[str], TextRole]]) -> list[npt.NDArray[np.float32]]:
    """Submits every call from a thread of its own (``caller-<index>``), all at once; their vectors in call order."""
    results: dict[int, npt.NDArray[np.float32]] = {}
    start = threading.Barrier(len(calls))

    def call(index: int) -> None:
        texts, role = calls[index]
        start.wait()
        results[index] = batcher.submit(texts, role).result(WAIT_S)

    threads = [threading.Thread(target=call, args=(i,), name=f"caller-{i}") for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[index] for index in range(len(calls))]


def test_concurrent_callers_each_get_their_own_vectors_in_order(tiny_encoder: MiniLMTextEncoder) -> None:
    recording = RecordingEncoder(tiny_encoder)
    batcher = TextBatcher(recording, max_batch=64, max_wait_s=0.2, max_queue=4096)
    sizes = [1, 3, 100, 7, 2, 30, 5, 64, 1, 12, 9, 4, 65, 2, 18, 6]
    roles = [TextRole.PASSAGE, TextRole.QUERY]
    # Lengths vary, and every seventh text is past max_tokens.
    calls = [
        (
            [f"caller {c} item {i} " + "cable " * (TINY_MAX_TOKENS if i % 7 == 3 else i % 5) for i in range(n)],
            roles[c % 2],
        )
        for c, n in enumerate(sizes)
    ]

    results = call_concurrently(batcher, calls)
    batcher.close()

    for (texts, role), vectors in zip(calls, results, strict=True):
        np.testing.assert_allclose(vectors, tiny_encoder.encode(texts, role), atol=1e-5)
    batch_sizes = [len(batch) for batch in recording.batches]
    assert sum(batch_sizes) == sum(sizes)
    assert max(batch_sizes) == 64
    assert len(recording.batches) < len(calls)
    assert all(len({role for _, role in batch}) == 1 for batch in recording.batches)


def test_texts_are_tokenised_on_the_callers_threads_and_only_encoded_on_the_worker(
    tiny_encoder: MiniLMTextEncoder,
) -> None:
    recording = RecordingEncoder(tiny_encoder)
    batcher = TextBatcher(recording, max_batch=8, max_wait_s=0.05, max_queue=1024)
    calls = [([f"caller {c} text {i}" for i in range(5 + c)], TextRole.QUERY) for c in range(6)]

    call_concurrently(batcher, calls)
    batcher.close()

    assert sorted(recording.tokenized) == sorted((f"caller-{c}", texts) for c, (texts, _) in enumerate(calls))
    assert set(recording.encoded_on) == {"embedding-batcher-tiny-random-bert-0"}


@pytest.mark.parametrize("encoder_fixture", ["minilm", "e5"])
def test_vectors_through_the_batcher_equal_the_encoders_own_batch_encoding(
    encoder_fixture: str, request: pytest.FixtureRequest
) -> None:
    encoder: BatchableTextEncoder = request.getfixturevalue(encoder_fixture)
    titles = [
        "usb",
        "AA rechargeable batteries, 8 pack",
        "无线蓝牙降噪耳机",
        "Stainless steel insulated water bottle 750 ml, keeps drinks cold for 24 hours",
        "battery " * 200,
        "女士夏季碎花连衣裙",
    ]
    calls = [(titles[start::2], role) for role in TextRole for start in (0, 1)] + [(titles, TextRole.QUERY)]
    batcher = TextBatcher(encoder, max_batch=8, max_wait_s=0.05, max_queue=256)

    results = call_concurrently(batcher, calls)
    batcher.close()

    for (texts, role), vectors in zip(calls, results, strict=True):
        np.testing.assert_allclose(vectors, encoder.encode(texts, role), atol=1e-5)


def test_a_call_larger_than_max_batch_is_spread_over_consecutive_passes(
    tiny_encoder: MiniLMTextEncoder,
) -> None:
    recording = RecordingEncoder(tiny_encoder)
    batcher = TextBatcher(recording, max_batch=4, max_wait_s=0.0, max_queue=100)
    texts = [f"text number {i}" for i in range(10)]

    vectors = batcher.submit(texts, TextRole.QUERY).result(WAIT_S)
    batcher.close()

    assert recording.texts_of_batches() == [texts[0:4], texts[4:8], texts[8:10]]
    assert {role for batch in recording.batches for _, role in batch} == {TextRole.QUERY}
    np.testing.assert_allclose(vectors, tiny_encoder.encode(texts, TextRole.QUERY), atol=1e-5)


def test_a_text_past_max_tokens_is_truncated_through_the_batcher_as_by_the_encoder(
    tiny_encoder: MiniLMTextEncoder,
) -> None:
    batcher = TextBatcher(tiny_encoder, max_batch=8, max_wait_s=0.0, max_queue=100)
    long_text = "cable " * TINY_MAX_TOKENS

    vectors = batcher.submit([long_text + "floral summer dress", "usb"], TextRole.PASSAGE).result(WAIT_S)
    batcher.close()

    np.testing.assert_allclose(vectors[0], tiny_encoder.encode([long_text], TextRole.PASSAGE)[0], atol=1e-5)


def test_a_batch_never_mixes_roles(gated: GatedEncoder) -> None:
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
        [("held", TextRole.PASSAGE)],
        [("q1", TextRole.QUERY), ("q2", TextRole.QUERY), ("q3", TextRole.QUERY)],
        [("p1", TextRole.PASSAGE)],
    ]


def test_a_full_queue_refuses_new_texts_with_resource_exhausted_before_tokenising_them(
    gated: GatedEncoder,
) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=2, max_wait_s=0.0, max_queue=10)
    in_flight = batcher.submit(["a", "b"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    queued = batcher.submit([f"t{i}" for i in range(10)], TextRole.PASSAGE)

    with pytest.raises(ResourceExhausted) as refused:
        batcher.submit(["one more"], TextRole.PASSAGE)

    assert str(refused.value) == "embedding queue is full (10 texts pending); retry with backoff"
    assert "one more" not in recording.tokenized_texts()
    gated.gate.set()
    assert in_flight.result(WAIT_S).shape == (2, 2)
    assert queued.result(WAIT_S).shape == (10, 2)
    batcher.close()


def test_a_call_larger_than_the_whole_queue_is_invalid_and_not_tokenised(gated: GatedEncoder) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=2, max_wait_s=0.0, max_queue=10)

    with pytest.raises(InvalidArgument) as refused:
        batcher.submit(["t"] * 11, TextRole.PASSAGE)
    batcher.close()

    assert str(refused.value) == "11 texts in one call exceed the queue of 10; split the call"
    assert recording.tokenized == []


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
    with pytest.raises(Unavailable) as refused:
        batcher.submit(["late"], TextRole.PASSAGE)
    assert str(refused.value) == "embedding service is shutting down; retry"


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

    assert recording.texts_of_batches() == [["held"], ["kept"]]


def test_no_texts_resolve_at_once_to_an_empty_matrix(gated: GatedEncoder) -> None:
    batcher = TextBatcher(gated, max_batch=8, max_wait_s=0.0, max_queue=100)

    assert batcher.submit([], TextRole.PASSAGE).result(0).shape == (0, 2)
    batcher.close()


def test_a_small_call_goes_before_bulk_calls_queued_earlier(gated: GatedEncoder) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=4, max_wait_s=0.0, max_queue=100, interactive_max=2)
    held = batcher.submit(["held"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    bulk = batcher.submit([f"b{i}" for i in range(6)], TextRole.PASSAGE)
    query = batcher.submit(["shopper's query"], TextRole.QUERY)
    product = batcher.submit(["new product", "its category"], TextRole.PASSAGE)

    gated.gate.set()
    for future in (held, bulk, query, product):
        future.result(WAIT_S)
    batcher.close()

    assert recording.texts_of_batches() == [
        ["held"],
        ["shopper's query"],  # the oldest small call leads, in its own role
        ["new product", "its category", "b0", "b1"],  # small calls first, bulk fills the rest
        ["b2", "b3", "b4", "b5"],
    ]


def test_without_an_interactive_limit_the_oldest_call_always_leads(gated: GatedEncoder) -> None:
    recording = RecordingEncoder(gated)
    batcher = TextBatcher(recording, max_batch=4, max_wait_s=0.0, max_queue=100)
    held = batcher.submit(["held"], TextRole.PASSAGE)
    assert gated.started.wait(WAIT_S)
    bulk = batcher.submit([f"b{i}" for i in range(6)], TextRole.PASSAGE)
    query = batcher.submit(["shopper's query"], TextRole.QUERY)

    gated.gate.set()
    for future in (held, bulk, query):
        future.result(WAIT_S)
    batcher.close()

    assert recording.texts_of_batches() == [["held"], ["b0", "b1", "b2", "b3"], ["b4", "b5"], ["shopper's query"]]


def test_several_workers_run_passes_side_by_side_each_on_its_own_torch_threads() -> None:
    both_running = threading.Barrier(2, timeout=WAIT_S)
    threads_seen: list[int] = []

    def encode(items: list[int], _group: None) -> npt.NDArray[np.float32]:
        threads_seen.append(torch.get_num_threads())
        both_running.wait()  # breaks (and fails both calls) unless two passes run at once
        return np.array([[float(item)] for item in items], dtype=np.float32)

    previous = torch.get_num_threads()
    batcher: DynamicBatcher[int, None] = DynamicBatcher(
        encode, 1, "side-by-side", "image", max_batch=2, max_wait_s=0.0, max_queue=8, workers=2, torch_threads=1
    )
    # Another thread sizing torch after the workers started does not resize theirs.
    other = threading.Thread(target=torch.set_num_threads, args=(2,))
    other.start()
    other.join()
    first, second = batcher.submit([1, 2], None), batcher.submit([3, 4], None)

    assert first.result(WAIT_S).ravel().tolist() == [1.0, 2.0]
    assert second.result(WAIT_S).ravel().tolist() == [3.0, 4.0]
    assert threads_seen == [1, 1]
    torch.set_num_threads(previous)
    batcher.close()
    with pytest.raises(Unavailable):
        batcher.submit([5], None)


@pytest.mark.parametrize(("workers", "torch_threads"), [(0, None), (1, 0)])
def test_a_batcher_needs_a_worker_and_a_thread(workers: int, torch_threads: int | None) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        DynamicBatcher(
            lambda items, _group: np.zeros((len(items), 1), dtype=np.float32),
            1,
            "none",
            "image",
            max_batch=1,
            max_wait_s=0.0,
            max_queue=1,
            workers=workers,
            torch_threads=torch_threads,
        )
