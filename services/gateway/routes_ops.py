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
    summary="Readiness: bundles can be answered",
    responses={503: {"description": "Bundles cannot be answered; take this instance out of rotation."}},
)
async def readyz(bundles: Bundles) -> dict[str, str]:
    """``{"status": "ready"}`` when bundles can be answered, else 503: the ranker reports SERVING
    within a short deadline or, on a gateway with the popular-bundles fallback, always (its answers
    then say ``fallback``).

    Kafka is not checked: without it only events are refused, bundles are still served.
    """
    await bundles.check_ready()
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics_exposition(metrics: Metrics) -> Response:
    """The Prometheus text exposition (every process's values in multiprocess mode)."""
    content, content_type = metrics.exposition()
    return Response(content=content, media_type=content_type)
