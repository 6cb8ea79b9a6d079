"""QueryEncoder over the embedding service's gRPC API; every call has a deadline."""

from __future__ import annotations

import grpc
import numpy as np
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.ranker.ports import QueryVector
from shared.errors import from_rpc_error


class GrpcQueryEncoder:
    """``Embedding.EmbedTexts`` with the query role, one text per call, within ``timeout_s``."""

    def __init__(self, channel: grpc.Channel, timeout_s: float) -> None:
        self._stub = embedding_pb2_grpc.EmbeddingStub(channel)
        self._timeout_s = timeout_s

    def embed_query(self, text: str, model: str) -> QueryVector:
        """See :class:`services.ranker.ports.QueryEncoder`."""
        request = embedding_pb2.EmbedTextsRequest(texts=[text], role=embedding_pb2.TEXT_ROLE_QUERY, model=model)
        try:
            reply = self._stub.EmbedTexts(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "embedding") from None
        return QueryVector(np.asarray(reply.vectors[0].values, dtype=np.float32), reply.model_version)
