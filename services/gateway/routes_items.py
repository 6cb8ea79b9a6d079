"""``GET /v1/items/{item_id}/related``: what completes an item, for an item page."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from services.gateway.dependencies import GuardedRoute, requires
from services.gateway.ports import RelatedItemsSource
from services.gateway.problems import access_responses, problem_doc
from services.gateway.schemas import BundleItemOut
from shared.errors import BundlewiseError
from shared.events import CatalogId, EntityId
from shared.store.api_keys import Scope

router = APIRouter(tags=["items"], route_class=GuardedRoute)

MAX_K = 100


class RelatedItemsNotConfigured(BundlewiseError):
    """This gateway was built without a related-items source (501)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class RelatedItemOut(BaseModel):
    item: BundleItemOut
    bought_together: float = Field(description="Baskets that held both items; 0 when a curated bundle holds both.")
    explanation: str = Field(description='Why it is shown, e.g. "Bought together in 12 baskets".')


class RelatedItemsResponse(BaseModel):
    """Items that complete ``item_id``, best first; live items only, never the item itself."""

    catalog_id: str
    item_id: str
    items: list[RelatedItemOut]


async def related_source(request: Request) -> RelatedItemsSource:
    source: RelatedItemsSource | None = request.app.state.gateway.related
    if source is None:
        raise RelatedItemsNotConfigured("related items are not configured on this gateway (no ranker)")
    return source


@router.get(
    "/v1/items/{item_id}/related",
    summary="Items that complete an item (an item page's 'bought together')",
    response_model=RelatedItemsResponse,
    dependencies=[requires(Scope.RECOMMENDATIONS_READ)],
    responses={
        **access_responses(),
        404: problem_doc("The catalog does not know the item."),
        422: problem_doc("A parameter is invalid; `detail` names each one."),
        501: problem_doc("This gateway has no ranker to ask."),
        503: problem_doc("The ranker is unavailable; retry after Retry-After seconds."),
    },
)
async def get_related_items(
    source: Annotated[RelatedItemsSource, Depends(related_source)],
    item_id: Annotated[EntityId, Path(description="The item on the page.")],
    catalog_id: Annotated[CatalogId, Query(description="Its catalog, e.g. amazon.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items, at most.")] = 10,
) -> RelatedItemsResponse:
    related = await source.related_items(catalog_id=catalog_id, item_id=item_id, k=k)
    return RelatedItemsResponse(
        catalog_id=catalog_id,
        item_id=item_id,
        items=[
            RelatedItemOut(
                item=BundleItemOut(
                    item_id=r.item.item_id, title=r.item.title, price=r.item.price, image_url=r.item.image_url
                ),
                bought_together=r.bought_together,
                explanation=r.explanation,
            )
            for r in related
        ],
    )
