"""Spoken search: a clip of speech -> its transcript (Whisper) -> the query vector of the transcript.

The pooled Whisper vector shares no space with the text vectors, so a spoken query is searched as
the text it says: transcribed, then embedded as a QUERY by the default text encoder
(multilingual-e5-small, Chinese and English in one space), exactly as if it had been typed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from services.embedding import metrics
from services.embedding.audio_encoder import Transcript
from services.embedding.audio_input import Samples
from services.embedding.device import use_torch_threads_here
from services.embedding.embedder import TextEmbedder
from services.embedding.text_encoder import TextEncoder, TextRole
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)


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

    def transcribe_batch(
        self, windows: Sequence[npt.NDArray[np.float32]], languages: Sequence[str | None]
    ) -> list[Transcript]:
        """What is said in each window, in order; a language None is detected. Blocks for the forward passes."""
        ...


@dataclass
class _Job:
    window: npt.NDArray[np.float32]
    language: str | None
    future: Future[Transcript] = field(default_factory=Future)


class Transcriber:
    """Runs transcriptions on its own worker thread, batched, within each call's time budget.

    The worker takes every waiting clip (up to ``max_batch``) into one encoder pass and one decode,
    without waiting for more: one clip alone starts at once, and under load clips share passes. At
    most ``max_queue`` clips wait or run.
    """

    def __init__(self, recognizer: SpeechRecognizer, max_queue: int, max_batch: int = 8) -> None:
        """Starts the worker thread; :meth:`close` stops it. The worker runs with as many torch
        threads as the constructing thread has now, whatever other threads set later."""
        self._recognizer = recognizer
        self._torch_threads = torch.get_num_threads()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._waiting: deque[_Job] = deque()
        self._pending = 0
        self._closing = False
        self._changed = threading.Condition()
        self._queue_depth = metrics.QUEUE_DEPTH.labels("speech")
        self._worker = threading.Thread(target=self._run, name="embedding-transcriber", daemon=True)
        self._worker.start()

    @property
    def recognizer(self) -> SpeechRecognizer:
        """The model behind the worker."""
        return self._recognizer

    @property
    def pending(self) -> int:
        """Transcriptions accepted and not finished (waiting or running)."""
        with self._changed:
            return self._pending

    def transcribe(self, samples: Samples, language: str | None, timeout_s: float | None) -> Transcript:
        """The transcript of 16 kHz mono ``samples``; the model input is computed on this thread.

        Raises:
            InvalidArgument: ``language`` is not one the recognizer accepts.
            ResourceExhausted: ``max_queue`` transcriptions are already waiting or running.
            Unavailable: not done within ``timeout_s`` seconds (None: no limit), or closing.
        """
        if language is not None and language not in self._recognizer.languages:
            accepted = ", ".join(self._recognizer.languages)
            raise InvalidArgument(f"language {language!r} is not one of {accepted} (or empty: detect it)")
        job = _Job(self._recognizer.window_features(samples), language)
        with self._changed:
            if self._closing:
                raise Unavailable("embedding service is shutting down; retry")
            if self._pending >= self._max_queue:
                raise ResourceExhausted(
                    f"transcription queue is full ({self._pending} spoken queries pending); retry with backoff"
                )
            self._pending += 1
            self._queue_depth.set(self._pending)
            self._waiting.append(job)
            self._changed.notify()
        try:
            return job.future.result(timeout=timeout_s)
        except TimeoutError:
            # Frees its place if it has not started; a running decode cannot be interrupted.
            job.future.cancel()
            raise Unavailable("transcription did not finish within the spoken query's time budget") from None

    def close(self) -> None:
        """Refuses new calls, transcribes those queued, then stops the worker; safe to call twice."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._worker.join()

    def _run(self) -> None:
        use_torch_threads_here(self._torch_threads)
        while jobs := self._next_jobs():
            started = time.perf_counter()
            try:
                transcripts = self._recognizer.transcribe_batch(
                    [job.window for job in jobs], [job.language for job in jobs]
                )
            except Exception as exc:
                log.exception("transcribing a batch of %d clips failed", len(jobs))
                for job in jobs:
                    job.future.set_exception(exc)
            else:
                metrics.ENCODE_DURATION.labels("speech").observe(time.perf_counter() - started)
                metrics.BATCH_SIZE.labels("speech").observe(len(jobs))
                metrics.ENCODED.labels("speech").inc(len(jobs))
                for job, transcript in zip(jobs, transcripts, strict=True):
                    job.future.set_result(transcript)
            with self._changed:
                self._pending -= len(jobs)
                self._queue_depth.set(self._pending)

    def _next_jobs(self) -> list[_Job]:
        """Blocks until clips wait; every waiting one up to ``max_batch``; empty once closing and idle."""
        with self._changed:
            while True:
                while not self._waiting:
                    if self._closing:
                        return []
                    self._changed.wait()
                jobs: list[_Job] = []
                while self._waiting and len(jobs) < self._max_batch:
                    job = self._waiting.popleft()
                    if job.future.set_running_or_notify_cancel():
                        jobs.append(job)
                    else:
                        self._pending -= 1
                self._queue_depth.set(self._pending)
                if jobs:
                    return jobs


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
