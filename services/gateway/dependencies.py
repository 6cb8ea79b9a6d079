"""FastAPI dependencies: what a route may ask for, typed, from the app that ``create_app`` built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.gateway.metrics import GatewayMetrics
from services.gateway.ports import BundleSource, EventPublisher
from services.gateway.settings import GatewaySettings


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """Everything routes use, attached once to ``app.state.gateway``."""

    settings: GatewaySettings
    publisher: EventPublisher
    bundles: BundleSource
    metrics: GatewayMetrics


def gateway_context(request: Request) -> GatewayContext:
    context = request.app.state.gateway
    if not isinstance(context, GatewayContext):
        raise TypeError("app.state.gateway is not a GatewayContext: build the app with create_app")
    return context


Context = Annotated[GatewayContext, Depends(gateway_context)]


def _settings(context: Context) -> GatewaySettings:
    return context.settings


def _publisher(context: Context) -> EventPublisher:
    return context.publisher


def _bundles(context: Context) -> BundleSource:
    return context.bundles


def _metrics(context: Context) -> GatewayMetrics:
    return context.metrics


Settings = Annotated[GatewaySettings, Depends(_settings)]
Publisher = Annotated[EventPublisher, Depends(_publisher)]
Bundles = Annotated[BundleSource, Depends(_bundles)]
Metrics = Annotated[GatewayMetrics, Depends(_metrics)]
