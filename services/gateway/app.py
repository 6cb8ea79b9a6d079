"""The gateway's FastAPI application: routes, error handlers and metrics, over two ports."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.gateway import routes_bundles, routes_events, routes_ops, routes_privacy
from services.gateway.dependencies import GatewayContext
from services.gateway.metrics import GatewayMetrics, HttpMetricsMiddleware
from services.gateway.ports import BundleSource, EventPublisher
from services.gateway.problems import install_problem_handlers
from services.gateway.schemas import EventsBatch
from services.gateway.settings import GatewaySettings

API_VERSION = "1.0.0"
TITLE = "Bundlewise gateway"
DESCRIPTION = """\
The storefront's API to Bundlewise: report what shoppers do (`POST /v1/events`) and ask which
product bundles to show them (`GET /v1/users/{user_id}/bundles`).

Every error answer is an RFC 9457 problem (`application/problem+json`) whose `detail` says what to
change. A 503 carries `Retry-After`.
"""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    settings: GatewaySettings,
    publisher: EventPublisher,
    bundles: BundleSource,
    *,
    metrics: GatewayMetrics | None = None,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """The API over ``publisher`` and ``bundles``; connects to nothing itself.

    ``metrics`` defaults to a fresh registry (with process metrics) owned by this app; ``lifespan``
    opens and closes what the caller built (see :func:`services.gateway.wiring.build_app`).
    """
    app = FastAPI(title=TITLE, description=DESCRIPTION, version=API_VERSION, lifespan=lifespan)
    metrics = metrics or GatewayMetrics.with_process_metrics()
    app.state.gateway = GatewayContext(settings=settings, publisher=publisher, bundles=bundles, metrics=metrics)
    install_problem_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.include_router(routes_events.router)
    app.include_router(routes_bundles.router)
    app.include_router(routes_ops.router)
    app.include_router(routes_privacy.router)
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
