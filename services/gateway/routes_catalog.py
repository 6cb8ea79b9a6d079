"""Catalog sync (``catalog:admin``): a storefront creates, updates and retires items and bundles.

Writes land in PostgreSQL and the Redis mirror the ranker reads before the answer, so the next
bundles answer already reflects them: a retired item or bundle is never recommended again, by the
ranker or by the popular-bundles fallback.
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.dependencies import GuardedRoute, requires
from services.gateway.ports import CatalogEditor
from services.gateway.problems import access_responses, problem_doc
from shared.errors import BundlewiseError, NotFound
from shared.events import CatalogId, EntityId
from shared.store.api_keys import Scope
from shared.store.catalog import CatalogBundle, CatalogItem

router = APIRouter(tags=["catalog"], dependencies=[requires(Scope.CATALOG_ADMIN)], route_class=GuardedRoute)

MAX_PER_REQUEST = 1000
Price = Annotated[float, Field(ge=0, le=1e7)]
# No control characters: PostgreSQL text cannot hold NUL, and none belongs in a title or category.
Text = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]+$")]
ImageUrl = Annotated[
    str,
    Field(max_length=2048, pattern=r"^(https?://[^\s\x00-\x1f\x7f]+)?$", description="http(s) URL, or empty."),
]
Category = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class CatalogSyncNotConfigured(BundlewiseError):
    """This gateway runs without PostgreSQL and Redis (501)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


async def catalog_editor(request: Request) -> CatalogEditor:
    editor: CatalogEditor | None = request.app.state.gateway.catalog
    if editor is None:
        raise CatalogSyncNotConfigured(
            "catalog sync is not configured on this gateway: set BUNDLEWISE_POSTGRES_URL and BUNDLEWISE_REDIS_URL"
        )
    return editor


Editor = Annotated[CatalogEditor, Depends(catalog_editor)]
CatalogPath = Annotated[CatalogId, Path(description="The catalog, e.g. amazon.")]


class CatalogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. EUR.")] | None = None


class ItemIn(BaseModel):
    """An item as the storefront sells it; sending it again replaces it (and un-retires it)."""

    model_config = ConfigDict(extra="forbid")

    item_id: EntityId
    title: Text
    price: Price | None = Field(default=None, description="Unit price in the catalog's currency; null if unknown.")
    category_path: list[Category] = Field(
        default_factory=list, max_length=10, description='Most general first, e.g. ["Electronics", "Camera & Photo"].'
    )
    image_url: ImageUrl = ""


class BundleIn(BaseModel):
    """A curated bundle of catalog items; sending it again replaces it (and un-retires it)."""

    model_config = ConfigDict(extra="forbid")

    bundle_id: EntityId
    name: Text
    item_ids: list[EntityId] = Field(min_length=1, max_length=100, description="Items already sent, in order.")
    price: Price | None = Field(default=None, description="The bundle's list price; null: the items' sum.")
    discounted_price: Price | None = Field(default=None, description="What the shopper pays; null: no discount.")


class ItemsBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_PER_REQUEST)


class BundlesBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundles: list[BundleIn] = Field(min_length=1, max_length=MAX_PER_REQUEST)


class CatalogWritten(BaseModel):
    catalog_id: str
    upserted: int = Field(ge=0, description="Rows created or replaced.")


class Retired(BaseModel):
    catalog_id: str
    id: str
    retired: bool = Field(description="Always true: retiring again changes nothing.")


_COMMON: dict[int | str, dict[str, Any]] = {
    **access_responses(),
    422: problem_doc("The body or a parameter is invalid; `detail` names each one."),
}
_NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {
    501: problem_doc("Catalog sync is not configured on this gateway; `detail` says what to set.")
}


@router.put(
    "/v1/catalogs/{catalog_id}",
    summary="Create or rename a catalog",
    response_model=CatalogWritten,
    responses={**_COMMON, **_NOT_CONFIGURED},
)
async def put_catalog(editor: Editor, catalog_id: CatalogPath, body: CatalogIn) -> CatalogWritten:
    await editor.upsert_catalog(catalog_id, body.name, body.currency)
    return CatalogWritten(catalog_id=catalog_id, upserted=1)


@router.post(
    "/v1/catalogs/{catalog_id}/items",
    summary="Create or update items",
    response_model=CatalogWritten,
    responses={**_COMMON, **_NOT_CONFIGURED, 404: problem_doc("The catalog does not exist; create it first.")},
)
async def post_items(editor: Editor, catalog_id: CatalogPath, body: ItemsBatch) -> CatalogWritten:
    """Upserts up to 1000 items by id. Idempotent: sending the same batch again changes nothing."""
    items = {
        item.item_id: CatalogItem(
            item_id=item.item_id,
            title=item.title,
            category_path=tuple(item.category_path),
            price=item.price,
            image_url=item.image_url,
        )
        for item in body.items
    }
    await editor.upsert_items(catalog_id, list(items.values()))
    return CatalogWritten(catalog_id=catalog_id, upserted=len(items))


@router.post(
    "/v1/catalogs/{catalog_id}/bundles",
    summary="Create or update bundles",
    response_model=CatalogWritten,
    responses={
        **_COMMON,
        **_NOT_CONFIGURED,
        404: problem_doc("The catalog, or an item of a bundle, does not exist; `detail` names it."),
    },
)
async def post_bundles(editor: Editor, catalog_id: CatalogPath, body: BundlesBatch) -> CatalogWritten:
    """Upserts up to 1000 bundles by id; every item must have been sent before. Idempotent."""
    bundles = {
        bundle.bundle_id: CatalogBundle(
            bundle_id=bundle.bundle_id,
            name=bundle.name,
            item_ids=tuple(dict.fromkeys(bundle.item_ids)),
            price=bundle.price,
            discounted_price=bundle.discounted_price,
        )
        for bundle in body.bundles
    }
    await editor.upsert_bundles(catalog_id, list(bundles.values()))
    return CatalogWritten(catalog_id=catalog_id, upserted=len(bundles))


@router.delete(
    "/v1/catalogs/{catalog_id}/items/{item_id}",
    summary="Retire an item",
    response_model=Retired,
    responses={**_COMMON, **_NOT_CONFIGURED, 404: problem_doc("The catalog has no such item.")},
)
async def retire_item(
    editor: Editor, catalog_id: CatalogPath, item_id: Annotated[EntityId, Path(description="The item.")]
) -> Retired:
    """The item stays in history but no bundle holding it is recommended again. Idempotent."""
    if not await editor.retire_item(catalog_id, item_id):
        raise NotFound(f"catalog {catalog_id} has no item {item_id}")
    return Retired(catalog_id=catalog_id, id=item_id, retired=True)


@router.delete(
    "/v1/catalogs/{catalog_id}/bundles/{bundle_id}",
    summary="Retire a bundle",
    response_model=Retired,
    responses={**_COMMON, **_NOT_CONFIGURED, 404: problem_doc("The catalog has no such bundle.")},
)
async def retire_bundle(
    editor: Editor, catalog_id: CatalogPath, bundle_id: Annotated[EntityId, Path(description="The bundle.")]
) -> Retired:
    """The bundle stays in history but is not recommended again. Idempotent."""
    if not await editor.retire_bundle(catalog_id, bundle_id):
        raise NotFound(f"catalog {catalog_id} has no bundle {bundle_id}")
    return Retired(catalog_id=catalog_id, id=bundle_id, retired=True)
