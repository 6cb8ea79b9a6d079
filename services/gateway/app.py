"""The gateway's FastAPI application: routes, error handlers and metrics, over two ports."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from services.gateway import (
    routes_bundles,
    routes_catalog,
    routes_events,
    routes_feedback,
    routes_items,
    routes_ops,
    routes_privacy,
    routes_search,
)
from services.gateway.access import API_KEY_HEADER, AccessControl
from services.gateway.dependencies import GatewayContext
from services.gateway.limits import BodySizeLimitMiddleware
from services.gateway.metrics import GatewayMetrics, HttpMetricsMiddleware
from services.gateway.ports import (
    BundleSearchSource,
    BundleSource,
    CatalogEditor,
    EventPublisher,
    RelatedItemsSource,
    Transcriber,
)
from services.gateway.problems import REQUEST_ID_HEADER, install_problem_handlers
from services.gateway.schemas import EventsBatch
from services.gateway.settings import GatewaySettings

STOREFRONT_DIR = Path(__file__).parent / "storefront"
API_VERSION = "1.0.0"
TITLE = "Bundlewise gateway"
DESCRIPTION = """\
The storefront's API to Bundlewise: ask which product bundles to show a shopper
(`GET /v1/users/{user_id}/bundles`) or which match what they typed (`GET /v1/bundles/search`),
report what shoppers do (`POST /v1/events`, `POST /v1/feedback`), and keep the catalog in sync
(`/v1/catalogs/...`).

Every `/v1` route needs an API key with the route's scope, sent as `Authorization: Bearer <key>` or
`X-API-Key: <key>`: `recommendations:read` (bundles), `events:write` (events, feedback),
`catalog:admin` (catalog sync, deleting a shopper). Each key has a rate limit; over it the answer is
429 with `Retry-After`.

Every error answer is an RFC 9457 problem (`application/problem+json`) whose `detail` says what to
change. A 503 carries `Retry-After`. See docs/api.md.
"""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    settings: GatewaySettings,
    publisher: EventPublisher,
    bundles: BundleSource,
    *,
    access: AccessControl,
    metrics: GatewayMetrics,
    catalog: CatalogEditor | None = None,
    related: RelatedItemsSource | None = None,
    search: BundleSearchSource | None = None,
    transcriber: Transcriber | None = None,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """The API over ``publisher``, ``bundles`` and ``catalog``, guarded by ``access``; connects to
    nothing itself.

    ``metrics`` must be the registry ``access`` counts into; ``lifespan`` opens and closes what the
    caller built (see :func:`services.gateway.wiring.build_app`). Without ``catalog`` the catalog
    routes answer 501, without ``related`` the related-items route does, and without ``search`` the
    bundle search does, and without ``transcriber`` spoken search does.
    """
    if settings.auth_enabled and not access.enabled:
        raise ValueError(
            "settings.auth_enabled is true but access checks no keys: pass an AccessControl with a verifier"
        )
    app = FastAPI(title=TITLE, description=DESCRIPTION, version=API_VERSION, lifespan=lifespan)
    app.state.gateway = GatewayContext(
        settings=settings,
        publisher=publisher,
        bundles=bundles,
        metrics=metrics,
        access=access,
        catalog=catalog,
        related=related,
        search=search,
        transcriber=transcriber,
    )
    install_problem_handlers(app)
    # The last added middleware runs first: metrics see every answer, the body limit comes before
    # any route reads, and CORS answers preflights before both.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", API_KEY_HEADER, "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
            max_age=600,
        )
    app.include_router(routes_events.router)
    app.include_router(routes_feedback.router)
    app.include_router(routes_bundles.router)
    app.include_router(routes_search.router)
    app.include_router(routes_items.router)
    app.include_router(routes_catalog.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_privacy.router)
    # A small storefront page a person can try the API with (it asks for an API key).
    app.mount("/storefront", StaticFiles(directory=STOREFRONT_DIR, html=True), name="storefront")
    app.openapi = lambda: _openapi_document(app, settings)  # type: ignore[method-assign]
    return app


def _openapi_document(app: FastAPI, settings: GatewaySettings) -> dict[str, Any]:
    """FastAPI's document plus the event schemas, which it cannot see: the events route reads its body
    itself (to validate each event on its own), so the batch schema is added here and referenced by
    the route's ``openapi_extra``."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        batch = EventsBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(batch.pop("$defs", {}))
        batch["properties"]["events"]["maxItems"] = settings.max_events_per_request
        schemas["EventsBatch"] = batch
        app.openapi_schema = document
    return app.openapi_schema
