"""A text encoder wrapper that records where tokenising and forward passes run, and on what."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.embedding.text_encoder import BatchableTextEncoder, TextRole, TokenizedText


class RecordingEncoder:
    """Wraps an encoder and records, by thread, every tokenisation and every forward pass.

    ``tokenized`` holds (thread name, texts) per :meth:`tokenize` call; ``batches`` the (text, role)
    pairs of every forward pass, ``encoded_on`` the thread that ran it.
    """

    def __init__(self, inner: BatchableTextEncoder) -> None:
        self.inner = inner
        self.tokenized: list[tuple[str, list[str]]] = []
        self.batches: list[list[tuple[str, TextRole]]] = []
        self.encoded_on: list[str] = []
        self.name, self.version, self.dim = inner.name, inner.version, inner.dim
        self.license, self.device = inner.license, inner.device
        self._lock = threading.Lock()
        # By id of each tokenised text; holding the TokenizedText keeps its id from being reused.
        self._origin: dict[int, tuple[TokenizedText, str, TextRole]] = {}

    def tokenize(self, texts: Sequence[str], role: TextRole) -> list[TokenizedText]:
        tokens = self.inner.tokenize(texts, role)
        with self._lock:
            self.tokenized.append((threading.current_thread().name, list(texts)))
            for text, token in zip(texts, tokens, strict=True):
                self._origin[id(token)] = (token, text, role)
        return tokens

    def encode_tokenized(self, tokens: Sequence[TokenizedText]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.encoded_on.append(threading.current_thread().name)
            self.batches.append([self._origin[id(token)][1:] for token in tokens])
        return self.inner.encode_tokenized(tokens)

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        return self.encode_tokenized(self.tokenize(texts, role))

    def texts_of_batches(self) -> list[list[str]]:
        return [[text for text, _ in batch] for batch in self.batches]

    def tokenized_texts(self) -> list[str]:
        return [text for _, texts in self.tokenized for text in texts]
