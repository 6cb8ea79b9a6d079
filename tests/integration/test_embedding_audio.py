"""Audio and spoken search on the running embedding service (its own process, the prepared model cache)."""

from __future__ import annotations

import shutil

import grpc
import numpy as np
import pytest
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from scripts.local_stack import LocalStack
from shared.grpc_client import open_channel
from tests.unit.embedding.speech import encode, speak, tone

DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def stub(stack: LocalStack) -> embedding_pb2_grpc.EmbeddingStub:
    stub = embedding_pb2_grpc.EmbeddingStub(open_channel(stack.address("embedding")))
    described = stub.DescribeModels(embedding_pb2.DescribeModelsRequest(), timeout=DEADLINE_S)
    if "audio" not in {model.modality for model in described.models}:
        pytest.skip("the embedding service has no whisper-base: run `make models` first")
    return stub


@pytest.fixture(scope="module")
def espeak_ng() -> str:
    program = shutil.which("espeak-ng")
    if program is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng): speech cannot be synthesised")
    return program


def test_a_spoken_search_returns_what_was_said_and_the_typed_querys_vector(
    stub: embedding_pb2_grpc.EmbeddingStub, espeak_ng: str
) -> None:
    request = embedding_pb2.EmbedSpokenQueryRequest(audio=speak(espeak_ng, "usb c charging cable"))

    spoken = stub.EmbedSpokenQuery(request, timeout=DEADLINE_S)

    typed = stub.EmbedTexts(
        embedding_pb2.EmbedTextsRequest(texts=[spoken.transcript], role=embedding_pb2.TEXT_ROLE_QUERY),
        timeout=DEADLINE_S,
    )
    assert "charging cable" in spoken.transcript.lower()
    assert spoken.language == "en"
    assert spoken.text_model_version == typed.model_version
    np.testing.assert_allclose(spoken.vector.values, typed.vectors[0].values, atol=1e-5)


def test_embed_audio_gives_one_whisper_vector_per_clip_and_refuses_a_non_audio_file(
    stub: embedding_pb2_grpc.EmbeddingStub,
) -> None:
    clips = [encode(tone(1.0), 16_000, "WAV"), encode(tone(2.0, rate=48_000, channels=2), 48_000, "OGG", "VORBIS")]

    reply = stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(clips=clips), timeout=DEADLINE_S)

    assert (reply.model, reply.dim) == ("whisper-base", 512)
    assert [len(vector.values) for vector in reply.vectors] == [512, 512]
    with pytest.raises(grpc.RpcError) as refused:
        stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(clips=[b"%PDF-1.7 not audio"]), timeout=DEADLINE_S)
    assert isinstance(refused.value, grpc.Call)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
