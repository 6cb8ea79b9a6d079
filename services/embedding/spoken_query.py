"""Spoken search: a clip of speech -> its transcript (Whisper) -> the query vector of the transcript.

The pooled Whisper vector shares no space with the text vectors, so a spoken query is searched as
the text it says: transcribed, then embedded as a QUERY by the default text encoder
(multilingual-e5-small, Chinese and English in one space), exactly as if it had been typed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.embedding import metrics
from services.embedding.audio_encoder import Transcript
from services.embedding.audio_input import Samples
from services.embedding.embedder import TextEmbedder
from services.embedding.text_encoder import TextEncoder, TextRole
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable


class SpeechRecognizer(Protocol):
    """Transcribes one clip; :class:`~services.embedding.audio_encoder.WhisperBase` is the adapter."""

    @property
    def name(self) -> str:
        """Stable model name, e.g. ``whisper-base``."""
        ...

    @property
    def version(self) -> str:
        """``<name>@<weights fingerprint>[+int8]``."""
        ...

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages it detects among and accepts."""
        ...

    def window_features(self, samples: Samples) -> npt.NDArray[np.float32]:
        """The model input of 16 kHz mono ``samples`` (computed on the caller's thread)."""
        ...

    def transcribe(self, window: npt.NDArray[np.float32], language: str | None = None) -> Transcript:
        """What is said; ``language`` None: detected. Blocks for the forward passes."""
        ...


class Transcriber:
    """Runs transcriptions one at a time on its own worker thread, within each call's time budget.

    A transcription is one 30 s encoder pass and a token-by-token decode; running two at once on
    the same cores would only slow both, so calls queue, at most ``max_queue`` of them.
    """

    def __init__(self, recognizer: SpeechRecognizer, max_queue: int) -> None:
        """Starts the worker; :meth:`close` stops it."""
        self._recognizer = recognizer
        self._max_queue = max_queue
        self._pending = 0
        self._lock = threading.Lock()
        self._closing = False
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-transcriber")
        self._queue_depth = metrics.QUEUE_DEPTH.labels("speech")

    @property
    def recognizer(self) -> SpeechRecognizer:
        """The model behind the worker."""
        return self._recognizer

    @property
    def pending(self) -> int:
        """Transcriptions accepted and not finished (waiting or running)."""
        with self._lock:
            return self._pending

    def transcribe(self, samples: Samples, language: str | None, timeout_s: float | None) -> Transcript:
        """The transcript of 16 kHz mono ``samples``.

        Raises:
            InvalidArgument: ``language`` is not one the recognizer accepts.
            ResourceExhausted: ``max_queue`` transcriptions are already waiting or running.
            Unavailable: not done within ``timeout_s`` seconds (None: no limit), or closing.
        """
        if language is not None and language not in self._recognizer.languages:
            accepted = ", ".join(self._recognizer.languages)
            raise InvalidArgument(f"language {language!r} is not one of {accepted} (or empty: detect it)")
        window = self._recognizer.window_features(samples)
        with self._lock:
            if self._closing:
                raise Unavailable("embedding service is shutting down; retry")
            if self._pending >= self._max_queue:
                raise ResourceExhausted(
                    f"transcription queue is full ({self._pending} spoken queries pending); retry with backoff"
                )
            self._pending += 1
            self._queue_depth.set(self._pending)
        future: Future[Transcript] = self._worker.submit(self._run, window, language)
        future.add_done_callback(self._finished)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            # Frees its place if it has not started; a running decode cannot be interrupted.
            future.cancel()
            raise Unavailable("transcription did not finish within the spoken query's time budget") from None

    def close(self) -> None:
        """Refuses new calls, finishes those queued, then stops the worker."""
        with self._lock:
            self._closing = True
        self._worker.shutdown(wait=True)

    def _run(self, window: npt.NDArray[np.float32], language: str | None) -> Transcript:
        started = time.perf_counter()
        transcript = self._recognizer.transcribe(window, language)
        metrics.ENCODE_DURATION.labels("speech").observe(time.perf_counter() - started)
        metrics.ENCODED.labels("speech").inc()
        return transcript

    def _finished(self, _future: Future[Transcript]) -> None:
        with self._lock:
            self._pending -= 1
            self._queue_depth.set(self._pending)


@dataclass(frozen=True)
class SpokenQuery:
    """A spoken query's transcript and its query vector, with the models that made them."""

    transcript: Transcript
    vector: npt.NDArray[np.float32]
    speech_model: SpeechRecognizer
    text_model: TextEncoder


class SpokenQueryEmbedder:
    """Transcribes a clip and embeds the transcript as a QUERY, within one time budget."""

    def __init__(self, transcriber: Transcriber, text_embedder: TextEmbedder, budget_s: float) -> None:
        """``budget_s``: the most a spoken query may take, whatever the caller's deadline."""
        self._transcriber = transcriber
        self._text_embedder = text_embedder
        self._budget_s = budget_s

    @property
    def transcriber(self) -> Transcriber:
        """The transcription worker."""
        return self._transcriber

    def embed(self, samples: Samples, language: str | None, timeout_s: float | None) -> SpokenQuery:
        """Transcript and unit query vector of 16 kHz mono ``samples``.

        The time allowed is the smaller of the budget and ``timeout_s`` (the caller's deadline).

        Raises:
            InvalidArgument: no speech in the clip (silence, noise), or an unknown ``language``.
            ResourceExhausted: the transcription or text queue is full.
            Unavailable: the time allowed ran out, or the service is stopping.
        """
        allowed_s = self._budget_s if timeout_s is None else min(self._budget_s, timeout_s)
        deadline = time.monotonic() + allowed_s
        transcript = self._transcriber.transcribe(samples, language, allowed_s)
        if not transcript.is_speech:
            raise InvalidArgument(
                f"no speech recognised in the audio (no-speech probability {transcript.no_speech_probability:.2f})"
            )
        remaining_s = max(0.0, deadline - time.monotonic())
        [vector] = self._text_embedder.embed([transcript.text], TextRole.QUERY, remaining_s)
        return SpokenQuery(transcript, vector, self._transcriber.recognizer, self._text_embedder.encoder)
