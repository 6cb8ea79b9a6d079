"""Bundles that degrade instead of failing: the ranker first, popular bundles when it cannot answer."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from services.gateway.domain import NO_CONSTRAINTS, BundleConstraints, Recommendation
from services.gateway.metrics import GatewayMetrics
from services.gateway.ports import BundleSource, PopularBundles
from services.gateway.ranker_client import RankerTimedOut
from shared.errors import Unavailable

log = logging.getLogger(__name__)

RANKER_UNAVAILABLE = "ranker unavailable"
RANKER_TIMED_OUT = "ranker timed out"


class FallbackBundleSource:
    """A :class:`~services.gateway.ports.BundleSource`: ``primary``'s answer, or, when it raises
    :class:`~shared.errors.Unavailable` (down or past its deadline), ``popular``'s, marked with
    ``fallback_reason`` and counted in ``bundlewise_gateway_fallbacks_total``.

    Other errors (an unknown catalog, refused arguments) pass through: they are the caller's to fix.
    When ``popular`` has nothing either, the original Unavailable is raised (503).
    """

    def __init__(self, primary: BundleSource, popular: PopularBundles, metrics: GatewayMetrics) -> None:
        self._primary = primary
        self._popular = popular
        self._metrics = metrics

    async def recommend(
        self,
        *,
        catalog_id: str,
        user_id: str,
        k: int,
        anchor_item_ids: Sequence[str],
        request_id: str,
        constraints: BundleConstraints = NO_CONSTRAINTS,
    ) -> Recommendation:
        try:
            return await self._primary.recommend(
                catalog_id=catalog_id,
                user_id=user_id,
                k=k,
                anchor_item_ids=anchor_item_ids,
                request_id=request_id,
                constraints=constraints,
            )
        except Unavailable as failure:
            reason = RANKER_TIMED_OUT if isinstance(failure, RankerTimedOut) else RANKER_UNAVAILABLE
            popular = await self._popular.recommend(
                catalog_id=catalog_id, user_id=user_id, k=k, constraints=constraints
            )
            if popular is None:
                raise
            self._metrics.fallbacks.labels(reason=reason.replace(" ", "_")).inc()
            log.warning("request %s: %s (%s); answered popular bundles", request_id, reason, failure)
            return dataclasses.replace(popular, fallback_reason=reason)

    async def check_ready(self) -> None:
        """Always returns: with the ranker down this gateway still answers (from the fallback).

        Every replica shares the ranker; failing readiness with it would take every gateway out of
        rotation at once and turn fallback answers into refused connections. The ranker's state is
        logged here and visible in ``bundlewise_gateway_fallbacks_total``.
        """
        try:
            await self._primary.check_ready()
        except Unavailable as exc:
            log.warning("ready on the popular-bundles fallback: %s", exc)

    async def close(self) -> None:
        await self._primary.close()
        await self._popular.close()
