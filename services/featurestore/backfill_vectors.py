"""``bundlewise backfill-vectors``: embeds each live bundle of a catalog for typed search, then each
live item of it into the item space of the embedding service's item fusion.

A bundle's document is its items' titles and category paths (:func:`bundle_document`), never its
name: the search evaluation (``python -m services.ranker.search_eval``) uses the Amazon bundles'
names as the queries, and a document holding the answer would make it meaningless. Documents are
embedded by the embedding service over gRPC as passages ("passage: <text>" for multilingual-e5),
in batches, and stored under ``CatalogKeys.bundle_vectors`` with the encoder's version; the catalog
version token is then renewed, so every ranker reloads its copy and rebuilds its index.

Items (title and category path each) are then embedded with ``EmbedItems`` into
``CatalogKeys.item_vectors`` (:mod:`services.featurestore.backfill_item_vectors`). A service without
an item fusion skips them with one line saying why, and the run still succeeds; ``--no-items``
skips them on purpose.

Safe to rerun: a bundle or item whose text and encoder (or fusion) version are unchanged is not
embedded again; the vectors of bundles and items no longer live are removed. The writes of each
part land in one transaction, so a ranker never sees vectors of two versions side by side. Run it
after syncing a catalog (a bundle synced since the last run is not found by search, an item has no
item vector) and after ``bundlewise rebuild``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import redis
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from pydantic import Field

from services.featurestore.backfill_item_vectors import (
    ITEM_BATCH,
    MAX_ITEM_BATCH,
    ItemEncoder,
    NoItemFusion,
    backfill_items,
    report_line,
)
from services.featurestore.vector_sync import VectorHashes, document_digest, progress_printer, sync_vectors
from shared.errors import BundlewiseError, from_rpc_error
from shared.grpc_client import open_channel
from shared.log import configure_logging
from shared.settings import RedisSettings, SettingsError, load_settings
from shared.store.redis_keys import CatalogKeys, NamespaceKeys

# The embedding service takes up to 1024 texts per call and encodes 64 per forward pass.
BATCH = 256
# Below the embedding service's default 2,000-character limit; e5 reads 128 word pieces anyway.
MAX_DOCUMENT_CHARS = 1500
CHUNK = 1000


class BackfillSettings(RedisSettings):
    namespace: str = Field(default="live", pattern="^[a-z][a-z0-9_]{0,30}$")
    embedding_addr: str = Field(min_length=1, description="host:port of the embedding service.")
    embedding_timeout_s: float = Field(default=120.0, gt=0, description="Deadline of each batch of documents.")


def bundle_document(items: Sequence[tuple[str, Sequence[str]]]) -> str:
    """The text a bundle is found by: each item's title with its category path (without the root,
    which says little: "Electronics"), in bundle order, joined by "; ". Empty titles are skipped.

    ``items`` holds (title, category path) per item. Cut to :data:`MAX_DOCUMENT_CHARS`.
    """
    parts = []
    for raw_title, path in items:
        title = " ".join(raw_title.split())
        if not title:
            continue
        specific = [level for level in (path[1:] if len(path) > 1 else path) if level.strip()]
        parts.append(f"{title} ({' > '.join(specific)})" if specific else title)
    return "; ".join(parts)[:MAX_DOCUMENT_CHARS]


@dataclass(frozen=True)
class BackfillReport:
    catalog_id: str
    live: int
    embedded: int
    unchanged: int
    without_document: int
    removed: int
    model_version: str
    seconds: float


def read_documents(client: redis.Redis, keys: CatalogKeys) -> dict[str, str]:
    """Each live bundle's document, from the catalog mirror (``client`` decodes responses)."""
    live: list[str] = sorted(client.smembers(keys.live_bundles()))  # type: ignore[arg-type]
    members: dict[str, list[str]] = {}
    for start in range(0, len(live), CHUNK):
        chunk = live[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
        for bundle_id in chunk:
            pipe.hmget(keys.bundle(bundle_id), ["items", "retired"])
        for bundle_id, (raw_items, retired) in zip(chunk, pipe.execute(), strict=True):
            if raw_items and retired != "1":
                members[bundle_id] = json.loads(raw_items)
    item_ids = sorted({i for ids in members.values() for i in ids})
    items: dict[str, tuple[str, tuple[str, ...]]] = {}
    for start in range(0, len(item_ids), CHUNK):
        item_chunk = item_ids[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
        for item_id in item_chunk:
            pipe.hmget(keys.item(item_id), ["title", "category"])
        for item_id, (title, category) in zip(item_chunk, pipe.execute(), strict=True):
            items[item_id] = (title or "", tuple(category.split(" > ")) if category else ())
    return {bundle_id: bundle_document([items[i] for i in ids if i in items]) for bundle_id, ids in members.items()}


class PassageEncoder:
    """The embedding service's default text encoder, asked for passages within a deadline per batch."""

    def __init__(self, channel: grpc.Channel, timeout_s: float) -> None:
        self._stub = embedding_pb2_grpc.EmbeddingStub(channel)
        self._timeout_s = timeout_s
        try:
            described = self._stub.DescribeModels(embedding_pb2.DescribeModelsRequest(), timeout=10.0)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "embedding") from None
        default = next((m for m in described.models if m.modality == "text"), None)
        if default is None:
            raise BundlewiseError("the embedding service has no text encoder")
        self.model, self.model_version, self.dim = default.name, default.version, default.dim

    def encode(self, documents: Sequence[str]) -> list[np.ndarray]:
        request = embedding_pb2.EmbedTextsRequest(
            texts=list(documents), role=embedding_pb2.TEXT_ROLE_PASSAGE, model=self.model
        )
        try:
            reply = self._stub.EmbedTexts(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "embedding") from None
        if reply.model_version != self.model_version:
            raise BundlewiseError(
                f"the embedding service changed encoder during the backfill ({self.model_version} -> "
                f"{reply.model_version}); run it again"
            )
        return [np.asarray(v.values, dtype=np.float32) for v in reply.vectors]


def backfill_catalog(
    client: redis.Redis, namespace: NamespaceKeys, catalog_id: str, encoder: PassageEncoder, batch: int = BATCH
) -> BackfillReport:
    """Embeds the live bundles of one catalog whose document or encoder changed; see the module doc."""
    started = time.perf_counter()
    keys = namespace.catalog(catalog_id)
    documents = read_documents(client, keys)
    digests = {b: document_digest(encoder.model_version, text) for b, text in documents.items() if text}
    counts = sync_vectors(
        client,
        namespace,
        catalog_id,
        VectorHashes(keys.bundle_vectors(), keys.bundle_vector_digests(), keys.bundle_vectors_meta()),
        digests,
        lambda ids: encoder.encode([documents[b] for b in ids]),
        batch,
        (encoder.model, encoder.model_version, encoder.dim),
        progress_printer(catalog_id, "bundles"),
    )
    return BackfillReport(
        catalog_id=catalog_id,
        live=len(documents),
        embedded=counts.embedded,
        unchanged=counts.unchanged,
        without_document=len(documents) - len(digests),
        removed=counts.removed,
        model_version=encoder.model_version,
        seconds=time.perf_counter() - started,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bundlewise backfill-vectors", description=__doc__)
    parser.add_argument("--catalogs", required=True, help="comma-separated catalog ids, e.g. amazon")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help=f"bundle documents per EmbedTexts call (default {BATCH})"
    )
    parser.add_argument(
        "--item-batch",
        type=int,
        default=ITEM_BATCH,
        help=f"items per EmbedItems call, 1 to {MAX_ITEM_BATCH} (default {ITEM_BATCH})",
    )
    parser.add_argument("--no-items", action="store_true", help="embed bundles only, no item vectors")
    return parser.parse_args(argv)


def open_item_encoder(channel: grpc.Channel, timeout_s: float) -> ItemEncoder | None:
    """The item fusion, or None (saying why) when the embedding service has none."""
    try:
        encoder = ItemEncoder(channel, timeout_s)
    except NoItemFusion as exc:
        print(f"item vectors skipped: the embedding service has no item fusion; {exc}", flush=True)
        return None
    print(f"item fusion {encoder.model_version} ({encoder.dim} dimensions)", flush=True)
    return encoder


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.batch <= 1024:
        print("--batch must be between 1 and 1024 (the embedding service's limit)", file=sys.stderr)
        return 2
    if not 1 <= args.item_batch <= MAX_ITEM_BATCH:
        print(f"--item-batch must be between 1 and {MAX_ITEM_BATCH} (EmbedItems' limit)", file=sys.stderr)
        return 2
    catalog_ids = [c.strip() for c in args.catalogs.split(",") if c.strip()]
    try:
        settings = load_settings(BackfillSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("backfill-vectors")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    namespace = NamespaceKeys(settings.namespace)
    channel = open_channel(settings.embedding_addr)
    try:
        encoder = PassageEncoder(channel, settings.embedding_timeout_s)
        print(f"encoder {encoder.model_version} ({encoder.dim} dimensions) at {settings.embedding_addr}", flush=True)
        item_encoder = None if args.no_items else open_item_encoder(channel, settings.embedding_timeout_s)
        for catalog_id in catalog_ids:
            keys = namespace.catalog(catalog_id)
            if client.get(keys.catalog_version()) is None:
                print(
                    f"{catalog_id}: no such catalog in namespace {settings.namespace}; sync it first", file=sys.stderr
                )
                return 1
            report = backfill_catalog(client, namespace, catalog_id, encoder, args.batch)
            print(
                f"{catalog_id}: {report.live} live bundles: {report.embedded} embedded, {report.unchanged} unchanged, "
                f"{report.without_document} without a document (no titled item), {report.removed} retired removed; "
                f"{report.model_version}; {report.seconds:.1f}s",
                flush=True,
            )
            if item_encoder is None:
                continue
            try:
                item_report = backfill_items(client, namespace, catalog_id, item_encoder, args.item_batch)
            except NoItemFusion as exc:
                print(f"item vectors skipped: the embedding service lost its item fusion; {exc}", flush=True)
                item_encoder = None
                continue
            print(report_line(item_report), flush=True)
    except BundlewiseError as exc:
        print(f"backfill failed: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"backfill failed: redis: {exc}", file=sys.stderr)
        return 1
    finally:
        channel.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
