"""How a bundle vector is stored in its Redis field (shared.store.vectors): what the backfill writes
and the ranker's index reads."""

from __future__ import annotations

import numpy as np

from shared.store.vectors import vector_from_field, vector_to_field


def test_a_vector_is_stored_as_base64_of_little_endian_float32() -> None:
    assert vector_to_field(np.array([1.0, -2.0], dtype=np.float64)) == "AACAPwAAAMA="


def test_a_stored_field_reads_back_as_float32() -> None:
    vector = vector_from_field("AACAPwAAAMA=")

    assert vector.dtype == np.float32
    assert vector.tolist() == [1.0, -2.0]


def test_a_vector_survives_its_redis_field() -> None:
    vector = np.array([0.25, -1.5, 3.0], dtype=np.float32)

    assert np.array_equal(vector_from_field(vector_to_field(vector)), vector)
