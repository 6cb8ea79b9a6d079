"""The gRPC face of the policy service: serves the latest published snapshot of a catalog."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc
from bundlewise.policy.v1 import policy_pb2, policy_pb2_grpc
from pydantic import TypeAdapter, ValidationError

from services.policy.domain import EPSILON_MIXTURE, Snapshot
from services.policy.ports import SnapshotStore
from shared.errors import InvalidArgument, NotFound
from shared.events import CatalogId

log = logging.getLogger(__name__)

_CATALOG_ID: TypeAdapter[str] = TypeAdapter(CatalogId)
# Above this many cached catalogs, expired entries are dropped, so unknown ids cannot grow the cache.
_CACHE_PRUNE_SIZE = 1024


def snapshot_to_proto(snapshot: Snapshot) -> policy_pb2.PolicySnapshot:
    """The snapshot as served. A contextual bandit's feature names and weights fill ``feature_names``
    and ``feature_weights``, each bundle's bias its arm's ``bandit_bias``; a bundle only the bandit knows
    gets an arm with the Beta prior, after the others."""
    params = snapshot.params
    bandit = params.bandit
    biases = {} if bandit is None else bandit.biases
    arms = [
        policy_pb2.BundleArm(
            bundle_id=a.bundle_id, alpha=a.alpha, beta=a.beta, bandit_bias=biases.get(a.bundle_id, 0.0)
        )
        for a in params.arms
    ]
    known = {a.bundle_id for a in params.arms}
    arms.extend(
        policy_pb2.BundleArm(
            bundle_id=bundle_id, alpha=params.prior_alpha, beta=params.prior_beta, bandit_bias=biases[bundle_id]
        )
        for bundle_id in sorted(biases.keys() - known)
    )
    return policy_pb2.PolicySnapshot(
        catalog_id=snapshot.catalog_id,
        version=snapshot.version,
        name=snapshot.policy_name,
        temperature=params.temperature,
        ctr_weight=params.ctr_weight,
        arms=arms,
        exploration=policy_pb2.EXPLORATION_EPSILON_MIXTURE
        if params.exploration == EPSILON_MIXTURE
        else policy_pb2.EXPLORATION_SOFTMAX,
        epsilon=params.epsilon,
        feature_names=[] if bandit is None else list(bandit.feature_names),
        feature_weights=[] if bandit is None else list(bandit.weights),
    )


class PolicyServicer(policy_pb2_grpc.PolicyServicer):
    """Answers from the store, caching each catalog's answer (found or not) for ``cache_ttl_s``."""

    def __init__(
        self,
        store: SnapshotStore,
        cache_ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, policy_pb2.PolicySnapshot | None]] = {}
        self._served_versions: dict[str, int] = {}

    def GetCurrentPolicy(
        self, request: policy_pb2.GetCurrentPolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb2.PolicySnapshot:
        """The newest snapshot of ``request.catalog_id``, at most ``cache_ttl_s`` old.

        Raises:
            InvalidArgument: the catalog id is not a valid one.
            NotFound: no policy was published for the catalog yet.
            Unavailable: the store cannot be reached.
        """
        try:
            catalog_id = _CATALOG_ID.validate_python(request.catalog_id)
        except ValidationError:
            raise InvalidArgument(f"catalog_id {request.catalog_id!r} is not a valid catalog id") from None
        snapshot = self._cached(catalog_id)
        if snapshot is None:
            raise NotFound(f"no policy published for catalog {catalog_id} yet")
        return snapshot

    def _cached(self, catalog_id: str) -> policy_pb2.PolicySnapshot | None:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(catalog_id)
        if entry is not None and now < entry[0]:
            return entry[1]
        found = self._store.latest(catalog_id)
        message = None if found is None else snapshot_to_proto(found)
        with self._lock:
            if len(self._cache) >= _CACHE_PRUNE_SIZE:
                self._cache = {c: e for c, e in self._cache.items() if now < e[0]}
            self._cache[catalog_id] = (now + self._cache_ttl_s, message)
            previous = self._served_versions.get(catalog_id)
            if found is not None and (previous is None or found.version > previous):
                self._served_versions[catalog_id] = found.version
                log.info("serving policy of %s: version %s -> %d", catalog_id, previous, found.version)
        return message
