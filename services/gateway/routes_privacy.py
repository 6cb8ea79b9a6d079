"""``DELETE /v1/users/{user_id}``: deletes a shopper's personal data on request.

The eraser is optional: :func:`services.gateway.wiring.build_app` attaches one to ``app.state.privacy``
only when the gateway is given the feature store's PostgreSQL and Redis; without it the route answers
501 saying what to set.
"""

from __future__ import annotations

import logging
from typing import Annotated

import grpc
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from services.gateway.dependencies import GuardedRoute, requires
from services.gateway.ports import UserDataEraser
from services.gateway.problems import access_responses, problem_doc
from shared.errors import BundlewiseError
from shared.events import CatalogId, EntityId
from shared.log import pseudonymise
from shared.store.api_keys import Scope

log = logging.getLogger(__name__)

router = APIRouter(tags=["privacy"], route_class=GuardedRoute)


class ErasureNotConfigured(BundlewiseError):
    """This gateway was started without the feature store's servers (501)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501


class UserDeletion(BaseModel):
    """What was deleted. The user is deny-listed either way: replays leave their events out."""

    catalog_id: str
    events_deleted: int = Field(description="Stored events of the shopper that were deleted.")
    user_row_deleted: bool = Field(description="False when the store had no record of the shopper.")
    redis_keys_deleted: int = Field(description="The shopper's own feature keys (history, affinity, baskets).")
    aggregates_corrected: int = Field(
        description="Entries of shared aggregates (popularity, co-purchases, bundle statistics) their share left."
    )
    denylisted: bool = True


async def user_data_eraser(request: Request) -> UserDataEraser:
    eraser: UserDataEraser | None = getattr(request.app.state, "privacy", None)
    if eraser is None:
        raise ErasureNotConfigured(
            "deleting users is not configured on this gateway: set BUNDLEWISE_POSTGRES_URL and "
            "BUNDLEWISE_REDIS_URL to the feature store's servers (and BUNDLEWISE_NAMESPACE, default live)"
        )
    return eraser


Eraser = Annotated[UserDataEraser, Depends(user_data_eraser)]


@router.delete(
    "/v1/users/{user_id}",
    summary="Delete a shopper's personal data",
    response_model=UserDeletion,
    dependencies=[requires(Scope.CATALOG_ADMIN)],
    responses={
        **access_responses(),
        422: problem_doc("A parameter is invalid; `detail` names each one."),
        501: problem_doc("Deletion is not configured on this gateway; `detail` says what to set."),
        503: problem_doc("The feature store is unavailable; retry after Retry-After seconds."),
    },
)
async def delete_user(
    eraser: Eraser,
    user_id: Annotated[EntityId, Path(description="The shopper, as the storefront knows them.")],
    catalog_id: Annotated[CatalogId, Query(description="The catalog the shopper belongs to, e.g. amazon.")],
) -> UserDeletion:
    """Removes the shopper's stored events and profile, their features, and their share of the
    aggregates other shoppers see, and deny-lists them so that replays of the event log leave their
    events out. Idempotent: deleting again answers 200 with zero counts. Needs the `catalog:admin` scope."""
    erasure = await eraser.delete_user(catalog_id=catalog_id, user_id=user_id)
    log.info("deleted %s from %s: %d events", pseudonymise(user_id), catalog_id, erasure.events_deleted)
    return UserDeletion(
        catalog_id=catalog_id,
        events_deleted=erasure.events_deleted,
        user_row_deleted=erasure.user_row_deleted,
        redis_keys_deleted=erasure.keys_deleted,
        aggregates_corrected=erasure.aggregates_corrected,
    )
