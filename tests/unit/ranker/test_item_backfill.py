"""Specification of the item part of `bundlewise backfill-vectors` without Redis: what an item is
embedded from, the digest that decides whether it is embedded again, and how the EmbedItems client
asks a real gRPC server (a stand-in embedding service on an ephemeral port) and reads its refusals.
The whole command runs in tests/integration/test_item_vectors_backfill.py."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.featurestore.backfill_item_vectors import (
    MAX_CATEGORY_CHARS,
    MAX_TITLE_CHARS,
    ItemEncoder,
    ItemText,
    NoItemFusion,
    item_digest,
    item_text,
)
from shared.errors import BundlewiseError

PATH = "Electronics > Camera & Photo > Lenses"


def test_an_item_is_its_title_and_its_stored_category_path_with_whitespace_collapsed() -> None:
    text = item_text({"title": "  Canon  EF 50mm\nf/1.8 ", "category": PATH, "retired": "0", "price": "99.0"})

    assert text == ItemText("Canon EF 50mm f/1.8", PATH)


def test_an_item_without_a_category_has_an_empty_path() -> None:
    assert item_text({"title": "Lens cap"}) == ItemText("Lens cap", "")


@pytest.mark.parametrize(
    "fields",
    [
        {"title": "Lens", "category": PATH, "retired": "1"},
        {"title": "", "category": PATH},
        {"title": " \n\t", "category": PATH},
        {"category": PATH},
    ],
    ids=["retired", "empty-title", "blank-title", "no-title"],
)
def test_a_retired_or_untitled_item_has_no_input(fields: dict[str, str]) -> None:
    assert item_text(fields) is None


def test_a_long_title_and_path_are_cut_below_the_services_document_limit() -> None:
    text = item_text({"title": "t" * 2000, "category": "c" * 2000})

    assert text == ItemText("t" * MAX_TITLE_CHARS, "c" * MAX_CATEGORY_CHARS)


def test_the_digest_changes_with_the_fusion_version_the_title_and_the_path() -> None:
    digest = item_digest("fusion@1", ItemText("Tent", "Sports > Tents"))

    assert digest == item_digest("fusion@1", ItemText("Tent", "Sports > Tents"))
    assert digest != item_digest("fusion@2", ItemText("Tent", "Sports > Tents"))
    assert digest != item_digest("fusion@1", ItemText("Tents", "Sports > Tents"))
    assert digest != item_digest("fusion@1", ItemText("Tent", "Sports > Camping"))
    # The separator keeps title and path apart: moving text between them is a change.
    assert digest != item_digest("fusion@1", ItemText("Tent\nSports", "> Tents"))


class StandInEmbedding(embedding_pb2_grpc.EmbeddingServicer):  # type: ignore[misc]
    """An embedding service with a text encoder; DescribeModels lists an item fusion of version
    ``described`` and EmbedItems answers with version ``embedding`` (None: it has no fusion)."""

    def __init__(self, described: str | None, embedding: str | None, no_fusion_reason: str = "") -> None:
        self.described = described
        self.embedding = embedding
        self.no_fusion_reason = no_fusion_reason
        self.requests: list[embedding_pb2.EmbedItemsRequest] = []

    def DescribeModels(
        self, request: embedding_pb2.DescribeModelsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.DescribeModelsResponse:
        models = [embedding_pb2.ModelInfo(name="e5", version="e5@1", modality="text", dim=3)]
        if self.described is not None:
            models.append(embedding_pb2.ModelInfo(name="item-fusion", version=self.described, modality="item", dim=2))
        return embedding_pb2.DescribeModelsResponse(models=models)

    def EmbedItems(
        self, request: embedding_pb2.EmbedItemsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedItemsResponse:
        self.requests.append(request)
        if self.embedding is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details(self.no_fusion_reason)
            return embedding_pb2.EmbedItemsResponse()
        return embedding_pb2.EmbedItemsResponse(
            items=[
                embedding_pb2.ItemVector(
                    item_id=item.item_id, vector=embedding_pb2.Vector(values=[0.6, 0.8]), modalities=["text"]
                )
                for item in request.items
            ],
            model="item-fusion",
            model_version=self.embedding,
            dim=2,
        )

    # The item backfill asks nothing else.
    def EmbedTexts(
        self, request: embedding_pb2.EmbedTextsRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedTextsResponse:
        raise NotImplementedError

    def EmbedImages(
        self, request: embedding_pb2.EmbedImagesRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedImagesResponse:
        raise NotImplementedError

    def EmbedAudio(
        self, request: embedding_pb2.EmbedAudioRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedAudioResponse:
        raise NotImplementedError

    def EmbedSpokenQuery(
        self, request: embedding_pb2.EmbedSpokenQueryRequest, context: grpc.ServicerContext
    ) -> embedding_pb2.EmbedSpokenQueryResponse:
        raise NotImplementedError


def serve(servicer: StandInEmbedding) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    embedding_pb2_grpc.add_EmbeddingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(grace=None)


@pytest.fixture
def with_fusion() -> StandInEmbedding:
    return StandInEmbedding("fusion@1", "fusion@1")


@pytest.fixture
def channel_with_fusion(with_fusion: StandInEmbedding) -> Iterator[grpc.Channel]:
    yield from serve(with_fusion)


def test_items_are_sent_with_their_title_and_one_category_path_and_nothing_else(
    with_fusion: StandInEmbedding, channel_with_fusion: grpc.Channel
) -> None:
    encoder = ItemEncoder(channel_with_fusion, timeout_s=5)

    vectors = encoder.encode([("lens", ItemText("Canon EF 50mm", PATH)), ("cap", ItemText("Lens cap", ""))])

    assert (encoder.model, encoder.model_version, encoder.dim) == ("item-fusion", "fusion@1", 2)
    assert [v.tolist() for v in vectors] == [pytest.approx([0.6, 0.8])] * 2
    (request,) = with_fusion.requests
    assert [(i.item_id, i.title, list(i.category_paths)) for i in request.items] == [
        ("lens", "Canon EF 50mm", [PATH]),
        ("cap", "Lens cap", []),
    ]
    assert all(i.description == "" and not i.HasField("image") for i in request.items)


REASON = "EmbedItems is off: no item fusion at /weights/item-fusion.npz"


def test_a_service_listing_no_item_fusion_is_refused_with_the_reason_embed_items_gives() -> None:
    for channel in serve(StandInEmbedding(None, None, REASON)):
        with pytest.raises(NoItemFusion) as refused:
            ItemEncoder(channel, timeout_s=5)

    assert str(refused.value) == f"embedding: {REASON}"


def test_a_service_that_loses_its_fusion_during_the_run_is_refused_with_its_reason() -> None:
    for channel in serve(StandInEmbedding("fusion@1", None, REASON)):
        encoder = ItemEncoder(channel, timeout_s=5)

        with pytest.raises(NoItemFusion, match=f"^embedding: {REASON}$"):
            encoder.encode([("lens", ItemText("Canon EF 50mm", PATH))])


def test_a_fusion_version_changing_during_the_run_fails_it() -> None:
    for channel in serve(StandInEmbedding("fusion@1", "fusion@2")):
        encoder = ItemEncoder(channel, timeout_s=5)

        with pytest.raises(BundlewiseError, match=r"changed item fusion during the backfill \(fusion@1 -> fusion@2\)"):
            encoder.encode([("lens", ItemText("Canon EF 50mm", PATH))])
