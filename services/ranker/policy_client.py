"""Keeps the newest policy of each catalog, swapping atomically when a higher version is published."""

from __future__ import annotations

import logging
import threading

import grpc
from bundlewise.policy.v1 import policy_pb2, policy_pb2_grpc

from services.ranker.domain import DEFAULT_POLICY, LinearBandit, PolicyParams
from shared.bandit_features import FEATURES

log = logging.getLogger(__name__)


def params_from_snapshot(snapshot: policy_pb2.PolicySnapshot) -> PolicyParams:
    """The ranker's view of a snapshot. A contextual bandit over features other than this ranker's
    (a policy service of another release) is not served: the arms' click rates are, with a warning."""
    bandit = None
    if snapshot.feature_names:
        if tuple(snapshot.feature_names) == FEATURES and len(snapshot.feature_weights) == len(FEATURES):
            bandit = LinearBandit(
                weights=tuple(snapshot.feature_weights),
                bundle_bias={arm.bundle_id: arm.bandit_bias for arm in snapshot.arms if arm.bandit_bias},
            )
        else:
            log.warning(
                "policy %s v%d is a contextual bandit over features %s, but this ranker computes %s; "
                "serving its arms' click rates instead (upgrade the ranker or the policy service)",
                snapshot.catalog_id,
                snapshot.version,
                list(snapshot.feature_names),
                list(FEATURES),
            )
    return PolicyParams(
        version=snapshot.version,
        temperature=snapshot.temperature,
        ctr_weight=snapshot.ctr_weight,
        arms={arm.bundle_id: (arm.alpha, arm.beta) for arm in snapshot.arms},
        exploration="epsilon_mixture"
        if bandit is not None or snapshot.exploration == policy_pb2.EXPLORATION_EPSILON_MIXTURE
        else "softmax",
        epsilon=snapshot.epsilon,
        bandit=bandit,
    )


class RefreshingPolicySource:
    """Answers from memory; a background thread polls the policy service every ``refresh_s``.

    A catalog is polled from the first time it is asked for, at once (that first answer uses the
    default policy), and every ``refresh_s`` after; :meth:`prefetch` loads known catalogs before
    serving. A failed poll keeps the version in hand (serving never waits on the policy service).
    """

    def __init__(self, channel: grpc.Channel, timeout_s: float, refresh_s: float) -> None:
        self._stub = policy_pb2_grpc.PolicyStub(channel)
        self._timeout_s = timeout_s
        self._refresh_s = refresh_s
        self._current: dict[str, PolicyParams] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def prefetch(self, catalog_ids: list[str]) -> None:
        """Polls ``catalog_ids`` now, so that their first requests use the published policy."""
        with self._lock:
            for catalog_id in catalog_ids:
                self._current.setdefault(catalog_id, DEFAULT_POLICY)
        self.refresh()

    def current(self, catalog_id: str) -> PolicyParams:
        with self._lock:
            params = self._current.get(catalog_id)
            if params is None:
                self._current[catalog_id] = DEFAULT_POLICY
                self._wake.set()  # poll it now rather than at the next period
                return DEFAULT_POLICY
            return params

    def refresh(self) -> None:
        """Polls every known catalog once."""
        with self._lock:
            catalogs = list(self._current)
        for catalog_id in catalogs:
            try:
                snapshot = self._stub.GetCurrentPolicy(
                    policy_pb2.GetCurrentPolicyRequest(catalog_id=catalog_id), timeout=self._timeout_s
                )
            except grpc.RpcError as exc:
                if isinstance(exc, grpc.Call) and exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("policy refresh for %s failed: %s", catalog_id, exc.code())
                continue
            with self._lock:
                old = self._current.get(catalog_id, DEFAULT_POLICY)
                if snapshot.version > old.version:
                    self._current[catalog_id] = params_from_snapshot(snapshot)
                    log.info("policy for %s: version %d -> %d", catalog_id, old.version, snapshot.version)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._refresh_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.refresh()
