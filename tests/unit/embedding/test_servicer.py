"""The Embedding gRPC API through a real server on an ephemeral port, built by the real wiring."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.embedding.servicer import SERVICE_FULL_NAME
from services.embedding.settings import EmbeddingSettings
from services.embedding.wiring import build_service
from shared.grpc_server import GrpcServer, ServiceRegistration, start_grpc_server

DEADLINE_S = 30.0


# Module scope: the server's gRPC metrics register once per process in Prometheus' global registry.
@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    settings = EmbeddingSettings(grpc_port=0, metrics_port=0, embedding_device="cpu")
    servicer, closeables = build_service(settings)
    running = start_grpc_server(
        "embedding",
        [
            ServiceRegistration(
                SERVICE_FULL_NAME,
                lambda grpc_server: embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, grpc_server),
            )
        ],
        settings.grpc_port,
        settings.metrics_port,
        grace_s=1.0,
    )
    running.on_stop.extend(closeable.close for closeable in closeables)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server: GrpcServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.Channel) -> embedding_pb2_grpc.EmbeddingStub:
    return embedding_pb2_grpc.EmbeddingStub(channel)


def embed(stub: embedding_pb2_grpc.EmbeddingStub, texts: list[str], model: str = "") -> np.ndarray:
    response = stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=texts, model=model), timeout=DEADLINE_S)
    return np.array([vector.values for vector in response.vectors], dtype=np.float32)


def rpc_error(stub: embedding_pb2_grpc.EmbeddingStub, request: embedding_pb2.EmbedTextsRequest) -> grpc.Call:
    with pytest.raises(grpc.RpcError) as failed:
        stub.EmbedTexts(request, timeout=DEADLINE_S)
    assert isinstance(failed.value, grpc.Call)
    return failed.value


def test_embed_texts_returns_one_unit_vector_per_text_in_request_order(
    stub: embedding_pb2_grpc.EmbeddingStub,
) -> None:
    texts = ["NiMH AA battery charger", "women's summer floral dress", "AA rechargeable batteries 8 pack"]

    response = stub.EmbedTexts(
        embedding_pb2.EmbedTextsRequest(texts=texts, role=embedding_pb2.TEXT_ROLE_PASSAGE), timeout=DEADLINE_S
    )

    vectors = np.array([vector.values for vector in response.vectors], dtype=np.float32)
    assert response.model == "all-MiniLM-L6-v2"
    assert response.model_version.startswith("all-MiniLM-L6-v2@")
    assert response.dim == 384
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.ones(3), atol=1e-5)
    for index, text in enumerate(texts):
        np.testing.assert_allclose(vectors[index], embed(stub, [text])[0], atol=1e-5)


def test_the_default_model_is_minilm_by_name_too(stub: embedding_pb2_grpc.EmbeddingStub) -> None:
    np.testing.assert_array_equal(embed(stub, ["usb-c cable"], model="all-MiniLM-L6-v2"), embed(stub, ["usb-c cable"]))


@pytest.mark.parametrize(
    ("texts", "details"),
    [
        ([], "texts is empty; send at least one text"),
        (["fine", "   \t"], "texts[1] is empty or only whitespace"),
        (["fine", "", "fine"], "texts[1] is empty or only whitespace"),
        (["fine", "x" * 2001], "texts[1] has 2001 characters; the limit is 2000"),
        (["t"] * 1025, "1025 texts in one call; the limit is 1024, split it"),
    ],
    ids=["no-texts", "blank-text", "empty-text", "too-long-text", "too-many-texts"],
)
def test_bad_texts_are_invalid_argument_naming_the_problem(
    stub: embedding_pb2_grpc.EmbeddingStub, texts: list[str], details: str
) -> None:
    error = rpc_error(stub, embedding_pb2.EmbedTextsRequest(texts=texts))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == details


def test_an_unknown_role_is_invalid_argument(stub: embedding_pb2_grpc.EmbeddingStub) -> None:
    error = rpc_error(stub, embedding_pb2.EmbedTextsRequest(texts=["cable"], role=embedding_pb2.TextRole.ValueType(7)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "role 7 is not a known TextRole"


def test_a_text_of_exactly_the_limit_is_accepted(stub: embedding_pb2_grpc.EmbeddingStub) -> None:
    assert embed(stub, ["x" * 2000]).shape == (1, 384)


def test_an_unknown_model_is_not_found_listing_the_loaded_ones(stub: embedding_pb2_grpc.EmbeddingStub) -> None:
    error = rpc_error(stub, embedding_pb2.EmbedTextsRequest(texts=["cable"], model="clip-vit-b32"))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no text encoder named 'clip-vit-b32'; loaded: all-MiniLM-L6-v2"


def test_describe_models_lists_minilm_with_its_license_and_device(
    stub: embedding_pb2_grpc.EmbeddingStub,
) -> None:
    response = stub.DescribeModels(embedding_pb2.DescribeModelsRequest(), timeout=DEADLINE_S)

    [model] = response.models
    assert (model.name, model.modality, model.dim, model.device, model.license) == (
        "all-MiniLM-L6-v2",
        "text",
        384,
        "cpu",
        "Apache-2.0",
    )
    assert model.version.startswith("all-MiniLM-L6-v2@")


def test_health_check_reports_the_embedding_service_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_FULL_NAME), timeout=DEADLINE_S)

    assert SERVICE_FULL_NAME == "bundlewise.embedding.v1.Embedding"
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_endpoint_exposes_the_embedding_metrics(
    server: GrpcServer, stub: embedding_pb2_grpc.EmbeddingStub
) -> None:
    embed(stub, ["usb-c cable"])

    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=DEADLINE_S) as page:
        exposition = page.read().decode()

    for line in (
        "# HELP bundlewise_embedding_batch_size Texts per encoder forward pass.",
        "# TYPE bundlewise_embedding_texts_total counter",
        "# TYPE bundlewise_embedding_queue_depth gauge",
        "# TYPE bundlewise_embedding_encode_duration_seconds histogram",
        'bundlewise_embedding_device_info{device="cpu"} 1.0',
        "# TYPE bundlewise_embedding_grpc_requests_total counter",
    ):
        assert line in exposition
