"""The item part of ``bundlewise backfill-vectors``: one vector per live item of a catalog, in the
item space of the embedding service's item fusion (``EmbedItems``), for the ranker.

An item's input is its title and its category path as stored in the mirror (one " > "-joined path,
as the fusion was trained on); the mirror holds no description and no usable image, so none is sent.
Vectors land under ``CatalogKeys.item_vectors`` with a digest each (fusion version, title, path) and
``item_vectors_meta`` (fusion name, version, dimension), in one transaction; the catalog version
token is renewed when anything changed. Safe to rerun: only items whose digest changed are embedded,
and the vectors of items retired, untitled or gone are removed.

A server without an item fusion is not an error here: :class:`NoItemFusion` carries its reason, and
the command skips item vectors and still succeeds for the bundles.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import redis
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc

from services.featurestore.vector_sync import VectorHashes, document_digest, progress_printer, sync_vectors
from shared.errors import BundlewiseError, NotFound, from_rpc_error
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

ITEM_BATCH = 256
MAX_ITEM_BATCH = 256
"""EmbedItems takes up to 256 items per call."""
# Title and path together stay below the embedding service's default 2,000-character document limit
# (a longer one would fail the whole batch); e5 reads 128 word pieces anyway.
MAX_TITLE_CHARS = 500
MAX_CATEGORY_CHARS = 1000
SCAN_CHUNK = 1000


class NoItemFusion(Exception):
    """The embedding service has no item fusion; the message is its reason."""


@dataclass(frozen=True)
class ItemText:
    """What an item is embedded from: its title and its category path (" > "-joined, may be empty)."""

    title: str
    category_path: str


def item_text(fields: Mapping[str, str]) -> ItemText | None:
    """The input of an item hash (``CatalogKeys.item``), or None when it is retired or untitled.

    Whitespace runs become one space; title and path are cut to :data:`MAX_TITLE_CHARS` and
    :data:`MAX_CATEGORY_CHARS`.
    """
    if fields.get("retired") == "1":
        return None
    title = " ".join(fields.get("title", "").split())[:MAX_TITLE_CHARS].strip()
    if not title:
        return None
    category_path = " ".join(fields.get("category", "").split())[:MAX_CATEGORY_CHARS].strip()
    return ItemText(title, category_path)


def item_digest(fusion_version: str, item: ItemText) -> str:
    """What a stored item vector was made from: the fusion version, the title and the category path."""
    return document_digest(fusion_version, f"{item.title}\n{item.category_path}")


@dataclass(frozen=True)
class ItemBackfillReport:
    catalog_id: str
    live: int
    embedded: int
    unchanged: int
    removed: int
    model_version: str
    seconds: float


def read_items(client: redis.Redis, keys: CatalogKeys) -> dict[str, ItemText]:
    """Every live, titled item of the catalog mirror by id (``client`` decodes responses).

    The ids come from ``CatalogKeys.catalog_items``; a mirror written before that set existed (it
    fills at the next item sync or ``bundlewise rebuild``) is listed by a SCAN of the database."""
    item_ids: list[str] = sorted(client.smembers(keys.catalog_items()))  # type: ignore[arg-type]
    if not item_ids:
        item_prefix = keys.item("")
        item_ids = sorted(
            str(key)[len(item_prefix) :] for key in client.scan_iter(match=keys.items_pattern(), count=SCAN_CHUNK)
        )
    items: dict[str, ItemText] = {}
    for start in range(0, len(item_ids), SCAN_CHUNK):
        chunk = item_ids[start : start + SCAN_CHUNK]
        pipe = client.pipeline(transaction=False)
        for item_id in chunk:
            pipe.hmget(keys.item(item_id), ["title", "category", "retired"])
        for item_id, (title, category, retired) in zip(chunk, pipe.execute(), strict=True):
            text = item_text({"title": title or "", "category": category or "", "retired": retired or ""})
            if text is not None:
                items[item_id] = text
    return items


class ItemEncoder:
    """The embedding service's item fusion, asked within a deadline per batch.

    Raises:
        NoItemFusion: on construction or :meth:`encode`, when the service has no item fusion.
        BundlewiseError: the service failed, or changed fusion version during the run.
    """

    def __init__(self, channel: grpc.Channel, timeout_s: float) -> None:
        self._stub = embedding_pb2_grpc.EmbeddingStub(channel)
        self._timeout_s = timeout_s
        try:
            described = self._stub.DescribeModels(embedding_pb2.DescribeModelsRequest(), timeout=10.0)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "embedding") from None
        fusion = next((m for m in described.models if m.modality == "item"), None)
        if fusion is None:
            raise NoItemFusion(self._missing_reason())
        self.model, self.model_version, self.dim = fusion.name, fusion.version, fusion.dim

    def encode(self, items: Sequence[tuple[str, ItemText]]) -> list[np.ndarray]:
        """One unit vector per (item id, text), in order."""
        reply = self._embed(items)
        if reply.model_version != self.model_version:
            raise BundlewiseError(
                f"the embedding service changed item fusion during the backfill ({self.model_version} -> "
                f"{reply.model_version}); run it again"
            )
        if [v.item_id for v in reply.items] != [item_id for item_id, _ in items]:
            raise BundlewiseError("the embedding service answered EmbedItems out of order; check its version")
        return [np.asarray(v.vector.values, dtype=np.float32) for v in reply.items]

    def _embed(self, items: Sequence[tuple[str, ItemText]]) -> embedding_pb2.EmbedItemsResponse:
        request = embedding_pb2.EmbedItemsRequest(
            items=[
                embedding_pb2.ItemInput(
                    item_id=item_id,
                    title=text.title,
                    category_paths=[text.category_path] if text.category_path else [],
                )
                for item_id, text in items
            ]
        )
        try:
            reply: embedding_pb2.EmbedItemsResponse = self._stub.EmbedItems(request, timeout=self._timeout_s)
            return reply
        except grpc.RpcError as exc:
            error = from_rpc_error(exc, "embedding")
        if isinstance(error, NotFound):
            raise NoItemFusion(str(error))
        raise error

    def _missing_reason(self) -> str:
        # DescribeModels carries no reason; EmbedItems answers NOT_FOUND with it, before any encoding
        # (UNIMPLEMENTED from a service older than EmbedItems).
        try:
            self._embed([("", ItemText("probe", ""))])
        except (NoItemFusion, BundlewiseError) as reason:
            return str(reason)
        return "embedding: DescribeModels lists no model of modality 'item'"


def backfill_items(
    client: redis.Redis, namespace: NamespaceKeys, catalog_id: str, encoder: ItemEncoder, batch: int = ITEM_BATCH
) -> ItemBackfillReport:
    """Embeds the live items of one catalog whose title, path or fusion changed; see the module doc.

    Raises:
        NoItemFusion: the service lost its item fusion; nothing was written.
    """
    started = time.perf_counter()
    keys = namespace.catalog(catalog_id)
    items = read_items(client, keys)
    counts = sync_vectors(
        client,
        namespace,
        catalog_id,
        VectorHashes(keys.item_vectors(), keys.item_vector_digests(), keys.item_vectors_meta()),
        {i: item_digest(encoder.model_version, text) for i, text in items.items()},
        lambda ids: encoder.encode([(i, items[i]) for i in ids]),
        batch,
        (encoder.model, encoder.model_version, encoder.dim),
        progress_printer(catalog_id, "items"),
    )
    return ItemBackfillReport(
        catalog_id=catalog_id,
        live=len(items),
        embedded=counts.embedded,
        unchanged=counts.unchanged,
        removed=counts.removed,
        model_version=encoder.model_version,
        seconds=time.perf_counter() - started,
    )


def report_line(report: ItemBackfillReport) -> str:
    """The command's summary of one catalog's items."""
    return (
        f"{report.catalog_id}: {report.live} live items: {report.embedded} embedded, {report.unchanged} unchanged, "
        f"{report.removed} removed (retired, untitled or gone); {report.model_version}; {report.seconds:.1f}s"
    )
