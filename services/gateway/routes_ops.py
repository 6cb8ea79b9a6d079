"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway.dependencies import Bundles, Metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "alive"}``; a failing probe means the process must be restarted."""
    return {"status": "alive"}


@router.get(
    "/readyz",
    summary="Readiness: the ranker answers its health check",
    responses={503: {"description": "The ranker is not serving; take this instance out of rotation."}},
)
async def readyz(bundles: Bundles) -> dict[str, str]:
    """``{"status": "ready"}`` when the ranker reports SERVING within a short deadline, else 503.

    Kafka is not checked: without it only events are refused, bundles are still served.
    """
    await bundles.check_ready()
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics_exposition(metrics: Metrics) -> Response:
    """The Prometheus text exposition (every process's values in multiprocess mode)."""
    content, content_type = metrics.exposition()
    return Response(content=content, media_type=content_type)
