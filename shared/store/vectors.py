"""How a bundle or item vector is stored: one field of ``CatalogKeys.bundle_vectors`` or ``item_vectors``.

The backfill (:mod:`services.featurestore.backfill_vectors`) writes vectors with
:func:`vector_to_field`; the ranker's search index (:mod:`services.ranker.vector_index`) reads them
with :func:`vector_from_field`.
"""

from __future__ import annotations

import base64

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
"""An embedding, shape ``(dim,)``, or a matrix of them, shape ``(n, dim)``."""


def vector_from_field(value: str | bytes) -> Vector:
    """A vector as ``CatalogKeys.bundle_vectors`` stores it: base64 of little-endian float32."""
    return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)


def vector_to_field(vector: npt.NDArray[np.floating]) -> str:
    """The inverse of :func:`vector_from_field`: ``vector`` as float32, little-endian, base64."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
