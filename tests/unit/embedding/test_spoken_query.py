"""The spoken-query core with a scripted recognizer: time budget, queue bound, no-speech refusal, order of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from services.embedding.audio_encoder import Transcript
from services.embedding.audio_input import Samples
from services.embedding.batcher import TextBatcher
from services.embedding.embedder import TextEmbedder
from services.embedding.spoken_query import SpokenQueryEmbedder, Transcriber
from services.embedding.text_encoder import MiniLMTextEncoder, TextRole
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable


class ScriptedRecognizer:
    """Says ``text`` for every clip; blocks each transcription until ``release`` is set."""

    def __init__(self, text: str = "usb-c cable", no_speech: float = 0.1) -> None:
        self.text = text
        self.no_speech = no_speech
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Semaphore(0)
        self.languages_asked: list[str | None] = []
        self.batch_sizes: list[int] = []
        self.torch_threads: list[int] = []

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def version(self) -> str:
        return "scripted@1"

    @property
    def languages(self) -> tuple[str, ...]:
        return ("en", "zh")

    def window_features(self, samples: Samples) -> npt.NDArray[np.float32]:
        return np.zeros((80, 3000), dtype=np.float32)

    def transcribe_batch(
        self, windows: Sequence[npt.NDArray[np.float32]], languages: Sequence[str | None]
    ) -> list[Transcript]:
        self.languages_asked.extend(languages)
        self.batch_sizes.append(len(windows))
        self.torch_threads.append(torch.get_num_threads())
        self.started.release()
        self.release.wait(timeout=30)
        return [Transcript(self.text, language or "en", 0.9, self.no_speech, -0.2) for language in languages]


CLIP = np.zeros(16_000, dtype=np.float32)


@pytest.fixture
def text_embedder(tiny_encoder: MiniLMTextEncoder) -> Iterator[TextEmbedder]:
    batcher = TextBatcher(tiny_encoder, max_batch=8, max_wait_s=0.001, max_queue=1024)
    yield TextEmbedder(batcher, cache=None)
    batcher.close()


@pytest.fixture
def recognizer() -> ScriptedRecognizer:
    return ScriptedRecognizer()


@pytest.fixture
def transcriber(recognizer: ScriptedRecognizer) -> Iterator[Transcriber]:
    running = Transcriber(recognizer, max_queue=2, max_batch=8)
    yield running
    recognizer.release.set()
    running.close()


def test_a_spoken_query_is_the_query_vector_of_its_transcript(
    transcriber: Transcriber, text_embedder: TextEmbedder, tiny_encoder: MiniLMTextEncoder, tiny_model_dir: Path
) -> None:
    spoken = SpokenQueryEmbedder(transcriber, text_embedder, budget_s=10.0)

    query = spoken.embed(CLIP, "zh", timeout_s=30.0)

    assert (query.transcript.text, query.transcript.language) == ("usb-c cable", "zh")
    np.testing.assert_allclose(query.vector, tiny_encoder.encode(["usb-c cable"], TextRole.QUERY)[0], atol=1e-6)
    assert (query.speech_model.version, query.text_model.version) == ("scripted@1", tiny_encoder.version)


def test_a_clip_without_speech_is_invalid_argument(text_embedder: TextEmbedder) -> None:
    quiet = Transcriber(ScriptedRecognizer(text="you", no_speech=0.93), max_queue=2)
    spoken = SpokenQueryEmbedder(quiet, text_embedder, budget_s=10.0)

    with pytest.raises(InvalidArgument) as refused:
        spoken.embed(CLIP, None, timeout_s=None)

    quiet.close()
    assert str(refused.value) == "no speech recognised in the audio (no-speech probability 0.93)"


def test_a_language_the_server_does_not_take_is_invalid_argument(
    transcriber: Transcriber, recognizer: ScriptedRecognizer
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        transcriber.transcribe(CLIP, "fr", timeout_s=None)

    assert str(refused.value) == "language 'fr' is not one of en, zh (or empty: detect it)"
    assert recognizer.languages_asked == []


def test_the_spoken_query_budget_bounds_the_call_below_a_longer_deadline(
    transcriber: Transcriber, recognizer: ScriptedRecognizer, text_embedder: TextEmbedder
) -> None:
    recognizer.release.clear()
    spoken = SpokenQueryEmbedder(transcriber, text_embedder, budget_s=0.05)

    with pytest.raises(Unavailable) as gave_up:
        spoken.embed(CLIP, None, timeout_s=60.0)

    assert str(gave_up.value) == "transcription did not finish within the spoken query's time budget"


def test_more_spoken_queries_than_the_queue_holds_are_resource_exhausted(
    transcriber: Transcriber, recognizer: ScriptedRecognizer
) -> None:
    recognizer.release.clear()
    waiting = [threading.Thread(target=lambda: transcriber.transcribe(CLIP, None, timeout_s=30.0)) for _ in range(2)]
    for thread in waiting:
        thread.start()
    assert recognizer.started.acquire(timeout=10)
    for _ in range(1000):
        if transcriber.pending == 2:
            break
        time.sleep(0.01)
    assert transcriber.pending == 2

    with pytest.raises(ResourceExhausted) as refused:
        transcriber.transcribe(CLIP, None, timeout_s=30.0)

    recognizer.release.set()
    for thread in waiting:
        thread.join(timeout=30)
    assert str(refused.value) == "transcription queue is full (2 spoken queries pending); retry with backoff"
    assert transcriber.transcribe(CLIP, None, timeout_s=30.0).text == "usb-c cable"


def test_a_closed_transcriber_is_unavailable(recognizer: ScriptedRecognizer) -> None:
    closed = Transcriber(recognizer, max_queue=2)
    closed.close()

    with pytest.raises(Unavailable):
        closed.transcribe(CLIP, None, timeout_s=None)


def test_spoken_queries_that_wait_together_are_transcribed_in_one_batch(recognizer: ScriptedRecognizer) -> None:
    transcriber = Transcriber(recognizer, max_queue=8, max_batch=3)
    recognizer.release.clear()
    results: list[str] = []
    languages = [None, "zh", "en", None]
    callers = [
        threading.Thread(
            target=lambda language=language: results.append(
                transcriber.transcribe(CLIP, language, timeout_s=30.0).language
            )
        )
        for language in languages
    ]
    callers[0].start()
    assert recognizer.started.acquire(timeout=10)
    for caller in callers[1:]:
        caller.start()
    for _ in range(1000):
        if transcriber.pending == 4:
            break
        time.sleep(0.01)

    recognizer.release.set()
    for caller in callers:
        caller.join(timeout=30)
    transcriber.close()

    assert recognizer.batch_sizes == [1, 3]
    assert sorted(results) == ["en", "en", "en", "zh"]


def test_the_worker_transcribes_with_the_torch_threads_of_the_thread_that_built_it(
    recognizer: ScriptedRecognizer,
) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        transcriber = Transcriber(recognizer, max_queue=2)
    finally:
        torch.set_num_threads(previous)
    # Another thread sizing torch after the worker started does not resize the worker's.
    other = threading.Thread(target=torch.set_num_threads, args=(2,))
    other.start()
    other.join()

    transcriber.transcribe(CLIP, None, timeout_s=10)
    transcriber.close()

    assert recognizer.torch_threads == [1]
