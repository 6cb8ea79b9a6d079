"""The item fusion: one vector per item, in one item space, from its text and (when it has one) image.

The encoders stay frozen; the fusion maps their vectors into the item space the ranker uses::

    text  t = x + U_t D_t x            (a low-rank residual adapter on the text passage vector)
    image i = U_i D_i y                (zero for an item without an image)
    item    normalize(t + i)

``U_t`` starts at zero, so an untrained fusion gives the frozen text vector exactly, and an item
with only text has a vector at once (cold start). The weights are trained offline on bundle
co-occurrence, training bundles only (:mod:`services.ranker.offline.train_item_fusion`).

The artifact is one ``.npz`` of float32 arrays plus a JSON metadata string (no pickles); its version
is the SHA-256 of the weights and metadata, so a vector names exactly the weights that made it, and
retraining with the same data and seed gives the same version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

FUSION_NAME = "item-fusion"
INT8_SUFFIX = "+int8"
MAX_CATEGORY_PATHS = 2
"""Category paths in an item's text: the training data's items have one or two."""


def item_document(title: str, category_paths: Sequence[str] = (), description: str = "") -> str:
    """The text the fusion's text encoder embeds for an item: ``title | path ; path | description``.

    Training (titles and category paths of the Amazon bundle data) and serving build it here, so
    an item is embedded the same way in both.
    """
    document = title.strip()
    paths = [path.strip() for path in category_paths if path.strip()][:MAX_CATEGORY_PATHS]
    if paths:
        document += " | " + " ; ".join(paths)
    if description.strip():
        document += " | " + description.strip()
    return document


@dataclass(frozen=True)
class FusionMetadata:
    """What the weights need and were made from.

    ``text_model_version`` and ``image_model_version`` are the encoder versions the fusion was
    trained on: vectors of other versions mean something else, so a server whose encoders differ
    refuses to load it. ``training`` says on what it was trained (data, split, seed, epochs) and
    ``metrics`` what it scored on held-out bundles.
    """

    text_model_version: str
    image_model_version: str
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class FusionMismatch(ValueError):
    """The fusion was trained on other encoders than those loaded."""


class ItemFusion:
    """The fusion's weights; :meth:`fuse` is plain numpy (a few small matrix products per call)."""

    def __init__(
        self,
        text_down: FloatArray,
        text_up: FloatArray,
        image_down: FloatArray,
        image_up: FloatArray,
        metadata: FusionMetadata,
    ) -> None:
        """``text_down`` [rank, text_dim], ``text_up`` [text_dim, rank], ``image_down`` [image_rank,
        image_dim], ``image_up`` [text_dim, image_rank]: the item space has the text encoder's dimension.
        The version is derived from the weights and metadata, saved or not."""
        dim = text_down.shape[1]
        if text_up.shape != (dim, text_down.shape[0]) or image_up.shape != (dim, image_down.shape[0]):
            raise ValueError(
                f"inconsistent fusion shapes: text_down {text_down.shape}, text_up {text_up.shape}, "
                f"image_down {image_down.shape}, image_up {image_up.shape}"
            )
        self.text_down = np.ascontiguousarray(text_down, dtype=np.float32)
        self.text_up = np.ascontiguousarray(text_up, dtype=np.float32)
        self.image_down = np.ascontiguousarray(image_down, dtype=np.float32)
        self.image_up = np.ascontiguousarray(image_up, dtype=np.float32)
        self.metadata = metadata
        self.version = self._content_version()

    @property
    def name(self) -> str:
        return FUSION_NAME

    @property
    def dim(self) -> int:
        """The item space's dimension (the text encoder's)."""
        return int(self.text_down.shape[1])

    @property
    def image_dim(self) -> int:
        return int(self.image_down.shape[1])

    @classmethod
    def untrained(cls, text_dim: int, image_dim: int, metadata: FusionMetadata, rank: int = 64) -> ItemFusion:
        """The identity on text and nothing from images: what training starts from."""
        return cls(
            np.zeros((rank, text_dim), np.float32),
            np.zeros((text_dim, rank), np.float32),
            np.zeros((rank, image_dim), np.float32),
            np.zeros((text_dim, rank), np.float32),
            metadata,
        )

    def fuse(
        self, text: FloatArray, image: FloatArray | None = None, has_image: npt.NDArray[np.bool_] | None = None
    ) -> FloatArray:
        """float32 ``(n, dim)`` unit item vectors.

        Args:
            text: ``(n, text_dim)`` passage vectors of the items' documents (:func:`item_document`).
            image: ``(n, image_dim)`` image vectors; rows of items without an image are ignored.
            has_image: ``(n,)`` which items have an image; None with ``image`` given: all of them.
        """
        fused = text + (text @ self.text_down.T) @ self.text_up.T
        if image is not None:
            mask = np.ones(len(text), dtype=bool) if has_image is None else np.asarray(has_image, dtype=bool)
            if mask.any():
                fused[mask] += (image[mask] @ self.image_down.T) @ self.image_up.T
        norms = np.linalg.norm(fused, axis=1, keepdims=True)
        unit: FloatArray = (fused / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def check_encoders(self, text_model_version: str, image_model_version: str | None) -> None:
        """Raises :class:`FusionMismatch`, saying how to mend it, when the encoders differ from the training's."""
        expected = self.metadata
        # int8 text vectors stay within cosine 0.99 of the float ones the fusion was trained on.
        if text_model_version.removesuffix(INT8_SUFFIX) != expected.text_model_version:
            raise FusionMismatch(
                f"the item fusion {self.version} was trained on text vectors of {expected.text_model_version}, "
                f"but the default text encoder is {text_model_version}: retrain it "
                "(python -m services.ranker.offline.train_item_fusion) or point BUNDLEWISE_EMBEDDING_FUSION_PATH "
                "at a fusion of these encoders"
            )
        if image_model_version is not None and image_model_version != expected.image_model_version:
            raise FusionMismatch(
                f"the item fusion {self.version} was trained on image vectors of {expected.image_model_version}, "
                f"but the default image encoder is {image_model_version}: retrain it "
                "(python -m services.ranker.offline.train_item_fusion)"
            )

    def save(self, path: Path) -> str:
        """Writes the artifact atomically; returns its version."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez(
                out,
                text_down=self.text_down,
                text_up=self.text_up,
                image_down=self.image_down,
                image_up=self.image_up,
                metadata=np.array(json.dumps(asdict(self.metadata), sort_keys=True)),
            )
        partial.replace(path)
        return self.version

    @classmethod
    def load(cls, path: Path) -> ItemFusion:
        """Reads an artifact written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file (the message says how to make one).
            ValueError: the file is not a fusion artifact.
        """
        if not path.is_file():
            raise FileNotFoundError(
                f"no item fusion at {path}: train one with `python -m services.ranker.offline.train_item_fusion "
                "--out <path>` or set BUNDLEWISE_EMBEDDING_FUSION_PATH to an existing one"
            )
        try:
            with np.load(path, allow_pickle=False) as stored:
                metadata = FusionMetadata(**json.loads(str(stored["metadata"])))
                text_down, text_up = stored["text_down"], stored["text_up"]
                image_down, image_up = stored["image_down"], stored["image_up"]
        except (KeyError, TypeError, ValueError, OSError) as error:
            raise ValueError(f"{path} is not an item fusion artifact: {error}") from error
        return cls(text_down, text_up, image_down, image_up, metadata)

    def _content_version(self) -> str:
        # The weights and metadata, not the file: a zip records when it was written.
        digest = hashlib.sha256()
        for array in (self.text_down, self.text_up, self.image_down, self.image_up):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
        digest.update(json.dumps(asdict(self.metadata), sort_keys=True).encode())
        return f"{FUSION_NAME}@{digest.hexdigest()[:12]}"
