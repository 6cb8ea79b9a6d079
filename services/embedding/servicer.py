"""The gRPC face of the embedding service: validate, hand to the batcher, translate back."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import grpc
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.embedding.batcher import TextBatcher, Vectors
from services.embedding.settings import MAX_TEXTS_PER_CALL
from services.embedding.text_encoder import TextRole
from shared.errors import InvalidArgument, NotFound, Unavailable

SERVICE_FULL_NAME: str = embedding_pb2.DESCRIPTOR.services_by_name["Embedding"].full_name

# UNSPECIFIED means the common case: product text (every current model is symmetric anyway).
_ROLES = {
    embedding_pb2.TEXT_ROLE_UNSPECIFIED: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_PASSAGE: TextRole.PASSAGE,
    embedding_pb2.TEXT_ROLE_QUERY: TextRole.QUERY,
}


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):  # type: ignore[misc]
    """``bundlewise.embedding.v1.Embedding`` over one batcher per loaded text encoder."""

    def __init__(self, batchers: Sequence[TextBatcher], max_text_chars: int) -> None:
        """``batchers[0]``'s encoder is the default model; texts past ``max_text_chars`` are refused."""
        if not batchers:
            raise ValueError("the embedding servicer needs at least one encoder")
        self._default = batchers[0]
        self._by_name = {batcher.encoder.name: batcher for batcher in batchers}
        self._max_text_chars = max_text_chars

    def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedTextsResponse:
        """Embeds ``request.texts``; see the proto for the contract.

        Raises:
            NotFound: ``request.model`` names no loaded encoder (the message lists those loaded).
            InvalidArgument: no texts, more than 1024, an empty or whitespace-only text, a text
                longer than the character limit, or an unknown role; the message names the index.
            ResourceExhausted: the batching queue is full.
            Unavailable: the call's deadline passed while it waited, or the server is stopping.
        """
        batcher = self._batcher_for(request.model)
        texts = list(request.texts)
        _check_texts(texts, self._max_text_chars)
        role = _ROLES.get(request.role)
        if role is None:
            raise InvalidArgument(f"role {request.role} is not a known TextRole")
        vectors = _wait(batcher.submit(texts, role), context)
        encoder = batcher.encoder
        return embedding_pb2.EmbedTextsResponse(
            vectors=[embedding_pb2.Vector(values=row.tolist()) for row in vectors],
            model=encoder.name,
            model_version=encoder.version,
            dim=encoder.dim,
        )

    def DescribeModels(
        self, request: embedding_pb2.DescribeModelsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.DescribeModelsResponse:
        """Every loaded encoder, the default first, with version, dimension, device and license."""
        encoders = [self._default.encoder] + [
            batcher.encoder for batcher in self._by_name.values() if batcher is not self._default
        ]
        return embedding_pb2.DescribeModelsResponse(
            models=[
                embedding_pb2.ModelInfo(
                    name=encoder.name,
                    version=encoder.version,
                    modality="text",
                    dim=encoder.dim,
                    device=encoder.device,
                    license=encoder.license,
                )
                for encoder in encoders
            ]
        )

    def _batcher_for(self, model: str) -> TextBatcher:
        if not model:
            return self._default
        batcher = self._by_name.get(model)
        if batcher is None:
            known = ", ".join(sorted(self._by_name))
            raise NotFound(f"no text encoder named {model!r}; loaded: {known}")
        return batcher


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


def _wait(future: Future[Vectors], context: grpc.ServicerContext) -> Vectors:
    # gRPC does not stop a handler whose deadline passed: give up then, and free the queue slot.
    try:
        vectors: Vectors = future.result(timeout=context.time_remaining())
    except TimeoutError:
        future.cancel()
        raise Unavailable("embedding did not finish before the call's deadline") from None
    return vectors
