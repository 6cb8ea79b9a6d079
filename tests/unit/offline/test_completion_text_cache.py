"""The on-disk text-vector cache: a text is encoded once per encoder version, across runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.embedding.text_encoder import TextRole
from services.ranker.offline.completion_text import CachedTextVectors


class CountingEncoder:
    """Vectors from the text length; remembers every text it was asked to encode."""

    name = "counting"
    version = "counting@1"
    dim = 2
    license = "none"
    device = "cpu"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str], role: TextRole) -> npt.NDArray[np.float32]:
        self.encoded.extend(texts)
        raw = np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
        unit: npt.NDArray[np.float32] = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        return unit


def test_vectors_come_back_in_text_order_and_a_second_run_encodes_only_new_texts(tmp_path: Path) -> None:
    first_encoder = CountingEncoder()
    first = CachedTextVectors(first_encoder, tmp_path).vectors(["ab", "a", "ab"])

    second_encoder = CountingEncoder()
    second = CachedTextVectors(second_encoder, tmp_path).vectors(["a", "abc"])

    assert sorted(first_encoder.encoded) == ["a", "ab"]
    assert second_encoder.encoded == ["abc"]
    assert np.array_equal(first[0], first[2])
    assert np.array_equal(second[0], first[1])


def test_two_caches_of_one_file_keep_each_others_texts(tmp_path: Path) -> None:
    one, other = CachedTextVectors(CountingEncoder(), tmp_path), CachedTextVectors(CountingEncoder(), tmp_path)
    one.vectors(["x"])
    other.vectors(["yy"])

    reader = CountingEncoder()
    CachedTextVectors(reader, tmp_path).vectors(["x", "yy"])

    assert reader.encoded == []
