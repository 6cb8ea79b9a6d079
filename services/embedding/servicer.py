"""The gRPC face of the embedding service: validate, hand to the core, translate back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from PIL import Image

from services.embedding.batcher import ImageBatcher, Vectors
from services.embedding.embedder import TextEmbedder, wait_for_vectors
from services.embedding.image_encoder import ImageEncoder
from services.embedding.image_input import ImageLimits, decode_image, read_image_file
from services.embedding.settings import MAX_IMAGES_PER_CALL, MAX_TEXTS_PER_CALL
from services.embedding.text_encoder import TextEncoder, TextRole
from shared.errors import InvalidArgument, NotFound

SERVICE_FULL_NAME: str = embedding_pb2.DESCRIPTOR.services_by_name["Embedding"].full_name

# UNSPECIFIED means the common case: product text.
_ROLES = {
    embedding_pb2.TEXT_ROLE_UNSPECIFIED: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_PASSAGE: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_QUERY: TextRole.QUERY,
}


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):  # type: ignore[misc]
    """``bundlewise.embedding.v1.Embedding`` over one embedder per text encoder and one batcher per image encoder."""

    def __init__(
        self,
        text_embedders: Sequence[TextEmbedder],
        max_text_chars: int,
        image_batchers: Sequence[ImageBatcher] = (),
        image_limits: ImageLimits | None = None,
        image_root: Path | None = None,
    ) -> None:
        """``text_embedders[0]`` is the default text model, ``image_batchers[0]`` the default image model.

        Texts past ``max_text_chars`` are refused; images past ``image_limits`` too; images may be
        given by path only inside ``image_root`` (None: not at all).
        """
        if not text_embedders:
            raise ValueError("the embedding servicer needs at least one text encoder")
        self._default_text = text_embedders[0]
        self._texts_by_name = {embedder.encoder.name: embedder for embedder in text_embedders}
        self._max_text_chars = max_text_chars
        self._images_by_name = {batcher.encoder.name: batcher for batcher in image_batchers}
        self._default_image = image_batchers[0] if image_batchers else None
        self._image_limits = image_limits or ImageLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
        self._image_root = image_root

    def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedTextsResponse:
        """Embeds ``request.texts``; see the proto for the contract.

        Raises:
            NotFound: ``request.model`` names no loaded text encoder (the message lists those loaded).
            InvalidArgument: no texts, more than 1024, an empty or whitespace-only text, a text
                longer than the character limit, or an unknown role; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        embedder = self._text_embedder_for(request.model)
        texts = list(request.texts)
        _check_texts(texts, self._max_text_chars)
        role = _ROLES.get(request.role)
        if role is None:
            raise InvalidArgument(f"role {request.role} is not a known TextRole")
        vectors = embedder.embed(texts, role, context.time_remaining())
        encoder = embedder.encoder
        return embedding_pb2.EmbedTextsResponse(
            vectors=_to_proto(vectors), model=encoder.name, model_version=encoder.version, dim=encoder.dim
        )

    def EmbedImages(
        self, request: embedding_pb2.EmbedImagesRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedImagesResponse:
        """Decodes, checks and embeds ``request.images``; see the proto for the contract.

        Images are decoded and preprocessed on this call's thread, then batched with other calls'.

        Raises:
            NotFound: unknown image model, or a path that names no file in the image folder.
            InvalidArgument: no images, more than 64, or an image that is empty, too large, not
                decodable, corrupt, or a path outside the image folder; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        batcher = self._image_batcher_for(request.model)
        images = list(request.images)
        if not images:
            raise InvalidArgument("images is empty; send at least one image")
        if len(images) > MAX_IMAGES_PER_CALL:
            raise InvalidArgument(f"{len(images)} images in one call; the limit is {MAX_IMAGES_PER_CALL}, split it")
        encoder = batcher.encoder
        pixels = [encoder.preprocess(self._decode(image, f"images[{index}]")) for index, image in enumerate(images)]
        vectors = wait_for_vectors(batcher.submit(pixels, None), context.time_remaining())
        return embedding_pb2.EmbedImagesResponse(
            vectors=_to_proto(vectors), model=encoder.name, model_version=encoder.version, dim=encoder.dim
        )

    def DescribeModels(
        self, request: embedding_pb2.DescribeModelsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.DescribeModelsResponse:
        """Every loaded encoder: the default text one first, the other text ones, then the image ones."""
        texts = [self._default_text.encoder] + [
            embedder.encoder for embedder in self._texts_by_name.values() if embedder is not self._default_text
        ]
        infos = [_model_info(encoder, "text") for encoder in texts]
        infos += [_model_info(batcher.encoder, "image") for batcher in self._images_by_name.values()]
        return embedding_pb2.DescribeModelsResponse(models=infos)

    def _decode(self, image: embedding_pb2.ImageInput, label: str) -> Image.Image:
        source = image.WhichOneof("source")
        if source == "data":
            data = image.data
        elif source == "path":
            data = read_image_file(image.path, self._image_root, self._image_limits, label)
        else:
            raise InvalidArgument(f"{label} has neither data nor path")
        return decode_image(data, self._image_limits, label)

    def _text_embedder_for(self, model: str) -> TextEmbedder:
        if not model:
            return self._default_text
        embedder = self._texts_by_name.get(model)
        if embedder is None:
            known = ", ".join(sorted(self._texts_by_name))
            raise NotFound(f"no text encoder named {model!r}; loaded: {known}")
        return embedder

    def _image_batcher_for(self, model: str) -> ImageBatcher:
        batcher = self._images_by_name.get(model) if model else self._default_image
        if batcher is None:
            known = ", ".join(sorted(self._images_by_name)) or "none"
            raise NotFound(f"no image encoder named {model!r}; loaded: {known}")
        return batcher


def _model_info(encoder: TextEncoder | ImageEncoder, modality: str) -> embedding_pb2.ModelInfo:
    return embedding_pb2.ModelInfo(
        name=encoder.name,
        version=encoder.version,
        modality=modality,
        dim=encoder.dim,
        device=encoder.device,
        license=encoder.license,
    )


def _to_proto(vectors: Vectors) -> list[embedding_pb2.Vector]:
    return [embedding_pb2.Vector(values=row.tolist()) for row in np.asarray(vectors)]


def _check_texts(texts: list[str], max_chars: int) -> None:
    if not texts:
        raise InvalidArgument("texts is empty; send at least one text")
    if len(texts) > MAX_TEXTS_PER_CALL:
        raise InvalidArgument(f"{len(texts)} texts in one call; the limit is {MAX_TEXTS_PER_CALL}, split it")
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidArgument(f"texts[{index}] is empty or only whitespace")
        if len(text) > max_chars:
            raise InvalidArgument(f"texts[{index}] has {len(text)} characters; the limit is {max_chars}")
