"""``GET /v1/users/{user_id}/bundles``: personalised bundles for a shopper."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from services.gateway.dependencies import Bundles, GuardedRoute, requires
from services.gateway.domain import BundleConstraints
from services.gateway.problems import REQUEST_ID_HEADER, access_responses, problem_doc
from services.gateway.schemas import BundlesResponse
from shared.events import CatalogId, EntityId
from shared.log import pseudonymise
from shared.store.api_keys import Scope

log = logging.getLogger(__name__)

router = APIRouter(tags=["bundles"], route_class=GuardedRoute)

MAX_K = 100
MAX_ANCHORS = 50
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


@router.get(
    "/v1/users/{user_id}/bundles",
    summary="Recommend bundles to a shopper",
    response_model=BundlesResponse,
    dependencies=[requires(Scope.RECOMMENDATIONS_READ)],
    responses={
        **access_responses(),
        404: problem_doc("The catalog is unknown."),
        422: problem_doc("A parameter is invalid; `detail` names each one."),
        503: problem_doc("Neither the ranker nor the popular bundles could answer; retry after Retry-After seconds."),
    },
)
async def get_bundles(
    request: Request,
    response: Response,
    bundles: Bundles,
    user_id: Annotated[EntityId, Path(description="The shopper, as the storefront knows them.")],
    catalog_id: Annotated[CatalogId, Query(description="The catalog to recommend from, e.g. amazon.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many bundles, at most.")] = 10,
    anchor_item_id: Annotated[
        list[EntityId] | None,
        Query(
            max_length=MAX_ANCHORS,
            description="Items the shopper is looking at or has in the cart (repeat the parameter); "
            "bundles that complete them rank higher.",
        ),
    ] = None,
    max_total_price: Annotated[
        float | None, Query(gt=0, le=1e7, description="Only bundles whose total price is at most this.")
    ] = None,
    min_items: Annotated[int, Query(ge=0, le=100, description="Smallest bundle size; 0: no bound.")] = 0,
    max_items: Annotated[int, Query(ge=0, le=100, description="Largest bundle size; 0: no bound.")] = 0,
    request_id: Annotated[
        str | None,
        Query(pattern=REQUEST_ID_PATTERN, description="For tracing; a UUID is minted when absent."),
    ] = None,
) -> BundlesResponse:
    """At most ``k`` bundles, best first, with the propensities to log with the impression.

    When the ranker is down or too slow, the answer is still 200: the catalog's popular bundles (for
    the shopper's favourite category first), with `fallback.reason` saying so. The request id is
    echoed in the ``X-Request-Id`` header, also on error answers. Needs the `recommendations:read` scope.
    """
    request_id = request_id or str(uuid.uuid4())
    request.state.request_id = request_id
    response.headers[REQUEST_ID_HEADER] = request_id
    recommendation = await bundles.recommend(
        catalog_id=catalog_id,
        user_id=user_id,
        k=k,
        anchor_item_ids=anchor_item_id or [],
        request_id=request_id,
        constraints=BundleConstraints(max_total_price, min_items, max_items),
    )
    log.debug(
        "request %s: %d bundles for %s in %s (cold start: %s)",
        request_id,
        len(recommendation.bundles),
        pseudonymise(user_id),
        catalog_id,
        recommendation.cold_start,
    )
    return BundlesResponse.from_recommendation(
        recommendation,
        user_id=user_id,
        catalog_id=catalog_id,
        request_id=request_id,
        impression_id=f"imp-{uuid.uuid4().hex}",
    )
