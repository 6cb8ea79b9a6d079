"""What a shopper said, from the embedding service's speech model (``EmbedSpokenQuery``)."""

from __future__ import annotations

import grpc
import grpc.aio
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.gateway.domain import Transcript
from shared.errors import from_rpc_error
from shared.grpc_client import open_aio_channel


class SpeechTranscriber:
    """A :class:`~services.gateway.ports.Transcriber` over the embedding service at ``address``.

    Spoken queries have their own deadline (``timeout_s``): transcribing takes about a second on a
    CPU, far more than a bundles answer may.
    """

    def __init__(self, *, address: str, timeout_s: float) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def transcribe(self, *, audio: bytes, language: str) -> Transcript:
        if self._channel is None:
            self._channel = open_aio_channel(self._address)
        stub = embedding_pb2_grpc.EmbeddingStub(self._channel)
        request = embedding_pb2.EmbedSpokenQueryRequest(audio=audio, language=language)
        try:
            reply = await stub.EmbedSpokenQuery(request, timeout=self._timeout_s)
        except grpc.RpcError as err:
            raise from_rpc_error(err, "embedding") from err
        return Transcript(text=reply.transcript, language=reply.language, model_version=reply.speech_model_version)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
