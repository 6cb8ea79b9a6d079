"""FastAPI dependencies: what a route may ask for, typed, from the app that ``create_app`` built."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.access import API_KEY_HEADER, AccessControl
from services.gateway.metrics import GatewayMetrics, route_template
from services.gateway.ports import (
    BundleSearchSource,
    BundleSource,
    CatalogEditor,
    EventPublisher,
    RelatedItemsSource,
    Transcriber,
)
from services.gateway.settings import GatewaySettings


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """Everything routes use, attached once to ``app.state.gateway``.

    ``catalog`` is None when the gateway has no PostgreSQL and Redis (auth off, local experiments).
    """

    settings: GatewaySettings
    publisher: EventPublisher
    bundles: BundleSource
    metrics: GatewayMetrics
    access: AccessControl
    catalog: CatalogEditor | None = None
    related: RelatedItemsSource | None = None
    search: BundleSearchSource | None = None
    transcriber: Transcriber | None = None


def gateway_context(request: Request) -> GatewayContext:
    """The app's context. Plain, for code outside FastAPI's injection (see :func:`_context`)."""
    context = request.app.state.gateway
    if not isinstance(context, GatewayContext):
        raise TypeError("app.state.gateway is not a GatewayContext: build the app with create_app")
    return context


# The dependencies below are coroutines although they never wait: FastAPI runs a plain ``def``
# dependency on a worker thread, a thread hand-off per dependency per request.
async def _context(request: Request) -> GatewayContext:
    return gateway_context(request)


Context = Annotated[GatewayContext, Depends(_context)]


async def _settings(context: Context) -> GatewaySettings:
    return context.settings


async def _publisher(context: Context) -> EventPublisher:
    return context.publisher


async def _bundles(context: Context) -> BundleSource:
    return context.bundles


async def _metrics(context: Context) -> GatewayMetrics:
    return context.metrics


Settings = Annotated[GatewaySettings, Depends(_settings)]
Publisher = Annotated[EventPublisher, Depends(_publisher)]
Bundles = Annotated[BundleSource, Depends(_bundles)]
Metrics = Annotated[GatewayMetrics, Depends(_metrics)]

# Declared so that the OpenAPI document shows both ways to send a key; AccessControl reads the headers.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key, for clients that cannot set Authorization."
)


async def _admit(request: Request, scope: str) -> None:
    if getattr(request.state, "access_checked", False):
        return
    route = f"{request.method} {route_template(request.scope)}"
    key = await gateway_context(request).access.admit(request.headers, scope, route)
    request.state.access_checked = True
    request.state.api_key_id = key.key_id if key is not None else None


def requires(scope: str) -> Any:
    """A route dependency admitting only callers whose API key holds ``scope`` (and is within its
    rate limit); the refusals are 401, 403 and 429 problems (see :class:`AccessControl`).

    On a :class:`GuardedRoute` the check runs before the body is read; the dependency then also
    documents the key headers in the OpenAPI document.
    """

    async def admit(
        request: Request,
        _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        _header_key: Annotated[str | None, Depends(_key_header)],
    ) -> None:
        await _admit(request, scope)

    admit.required_scope = scope  # type: ignore[attr-defined]  # read by GuardedRoute
    return Depends(admit)


class GuardedRoute(APIRoute):
    """A route whose :func:`requires` check runs first, before FastAPI reads and validates the body,
    so a request without a valid key is a 401 even when its body is malformed."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scopes = [getattr(d.call, "required_scope", None) for d in self.dependant.dependencies]
        required = [s for s in scopes if isinstance(s, str)]
        if not required:
            return handler

        async def guarded(request: Request) -> Response:
            for scope in required:
                await _admit(request, scope)
            return await handler(request)

        return guarded
