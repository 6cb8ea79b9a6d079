"""Vectors keyed by a content hash, kept in one ``.npz`` file between runs of the offline commands."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class VectorFile:
    """The vectors in ``path`` (read at once), plus those added since; :meth:`save` writes them all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._vectors: dict[str, FloatArray] = self._read()

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __getitem__(self, key: str) -> FloatArray:
        return self._vectors[key]

    def __setitem__(self, key: str, vector: FloatArray) -> None:
        self._vectors[key] = vector

    def _read(self) -> dict[str, FloatArray]:
        if not self.path.is_file():
            return {}
        with np.load(self.path) as stored:
            return {str(key): vector for key, vector in zip(stored["keys"], stored["vectors"], strict=True)}

    def save(self) -> None:
        """Writes every vector atomically, keeping those another run added to the file since it was read."""
        self._vectors = {**self._read(), **self._vectors}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self._vectors))
        vectors = np.stack([self._vectors[str(k)] for k in keys])
        partial = self.path.with_suffix(f".{os.getpid()}.partial.npz")
        np.savez(partial, keys=keys, vectors=vectors)
        partial.replace(self.path)
