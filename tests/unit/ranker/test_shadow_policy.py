"""Specification of a candidate policy run in shadow: where it comes from (a candidate params file and
three settings), and that serving reports its propensities without changing the answer, through the
recommender and the real gRPC servicer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from bundlewise.ranker.v1 import ranker_pb2, ranker_pb2_grpc
from prometheus_client import REGISTRY

from services.ranker.domain import BundleInfo, ItemInfo, PolicyParams, UserSignals
from services.ranker.recommender import Recommendation, Recommender
from services.ranker.servicer import RankerServicer
from services.ranker.settings import RankerSettings
from services.ranker.shadow_policy import ShadowPolicy, load_shadow_policy
from services.ranker.wiring import shadow_policies
from shared.settings import SettingsError, load_settings
from tests.unit.ranker.in_memory_shop import InMemoryShop

SERVED = PolicyParams(version=7, temperature=0.5, ctr_weight=1.0, arms={"kit-a": (5.0, 5.0)})
CANDIDATE = PolicyParams(
    version=0, temperature=0.2, ctr_weight=4.0, arms={"kit-c": (9.0, 1.0)}, exploration="epsilon_mixture", epsilon=0.1
)
# What `python -m services.policy.rollout promote --params` takes (shared/policy_params.py).
CANDIDATE_PARAMS = {
    "temperature": 0.2,
    "ctr_weight": 4.0,
    "prior_alpha": 1.0,
    "prior_beta": 20.0,
    "arms": {"kit-c": [9.0, 1.0]},
    "counts": {"kit-c": [10, 8]},
    "log_positions": {"events": {"0": 42}},
    "exploration": "epsilon_mixture",
    "epsilon": 0.1,
}


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(document))
    return path


def test_a_candidate_params_file_as_promotion_takes_it_becomes_the_shadow_policy(tmp_path: Path) -> None:
    shadow = load_shadow_policy(write(tmp_path, CANDIDATE_PARAMS), "garden", "ctr-heavy:v3")

    assert shadow == ShadowPolicy("garden", "ctr-heavy:v3", CANDIDATE)


def test_a_candidate_without_its_learning_state_is_the_same_shadow_policy(tmp_path: Path) -> None:
    serving_part = {k: CANDIDATE_PARAMS[k] for k in ("temperature", "ctr_weight", "arms", "exploration", "epsilon")}

    shadow = load_shadow_policy(write(tmp_path, serving_part), "garden", "ctr-heavy:v3")

    assert shadow == ShadowPolicy("garden", "ctr-heavy:v3", CANDIDATE)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({**CANDIDATE_PARAMS, "epsilion": 0.1}, "is not candidate policy params"),
        ({**CANDIDATE_PARAMS, "exploration": "thompson"}, "is not candidate policy params"),
        ({**CANDIDATE_PARAMS, "arms": {"kit-c": [0.0, 1.0]}}, "arms need alpha > 0 and beta > 0"),
        ({**CANDIDATE_PARAMS, "temperature": -0.1}, "temperature must be at least 0"),
        ("not an object", "is not candidate policy params"),
    ],
)
def test_a_file_that_is_not_candidate_params_stops_the_ranker_saying_what_is_wrong(
    tmp_path: Path, document: object, problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        load_shadow_policy(write(tmp_path, document), "garden", "ctr-heavy:v3")


def test_a_missing_file_stops_the_ranker_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"BUNDLEWISE_SHADOW_POLICY_FILE .* cannot be read"):
        load_shadow_policy(tmp_path / "absent.json", "garden", "ctr-heavy:v3")


@pytest.fixture
def ranker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_POLICY_ADDR", "127.0.0.1:1")
    monkeypatch.setenv("BUNDLEWISE_REDIS_URL", "redis://127.0.0.1:1/0")
    for name in ("FILE", "CATALOG"):
        monkeypatch.delenv(f"BUNDLEWISE_SHADOW_POLICY_{name}", raising=False)
    monkeypatch.delenv("BUNDLEWISE_SHADOW_POLICY", raising=False)


def test_without_the_shadow_settings_no_catalog_runs_a_shadow(ranker_env: None) -> None:
    assert shadow_policies(load_settings(RankerSettings)) == {}


def test_the_three_shadow_settings_name_the_catalogs_candidate(
    ranker_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BUNDLEWISE_SHADOW_POLICY_FILE", str(write(tmp_path, CANDIDATE_PARAMS)))
    monkeypatch.setenv("BUNDLEWISE_SHADOW_POLICY", "ctr-heavy:v3")
    monkeypatch.setenv("BUNDLEWISE_SHADOW_POLICY_CATALOG", "garden")

    assert shadow_policies(load_settings(RankerSettings)) == {
        "garden": ShadowPolicy("garden", "ctr-heavy:v3", CANDIDATE)
    }


def test_a_shadow_file_without_its_name_or_catalog_is_refused_naming_what_to_set(
    ranker_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUNDLEWISE_SHADOW_POLICY_FILE", "/srv/candidate.json")

    with pytest.raises(SettingsError, match="set BUNDLEWISE_SHADOW_POLICY, BUNDLEWISE_SHADOW_POLICY_CATALOG too"):
        load_settings(RankerSettings)


@pytest.mark.parametrize("label", ["no-version", "two words:v1", "a,b:v1", "x" * 65 + ":v1"])
def test_a_shadow_name_the_log_could_not_carry_is_refused(
    ranker_env: None, monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    monkeypatch.setenv("BUNDLEWISE_SHADOW_POLICY", label)

    with pytest.raises(SettingsError, match="BUNDLEWISE_SHADOW_POLICY is invalid"):
        load_settings(RankerSettings)


# --- serving, over in-memory ports -----------------------------------------------------------------


def kit(bundle_id: str, items: tuple[str, ...], purchases: int) -> BundleInfo:
    return BundleInfo(bundle_id, f"Kit {bundle_id}", items, 20.0, None, False, purchases)


BUNDLES = {f"kit-{c}": kit(f"kit-{c}", (f"g{n}", f"g{n + 1}"), 10 - n) for n, c in enumerate("abcdefgh")}
ITEMS = {f"g{n}": ItemInfo(f"g{n}", f"Garden thing {n}", 10.0, "", False, ("Garden", "Tools")) for n in range(10)}


# The FeatureSource reads of one recommendation: a shopper who looked at two items.
GARDEN_SHOP = InMemoryShop(
    BUNDLES, ITEMS, UserSignals(("g3", "g1"), frozenset(), ()), {"g3": [("g5", 2.0), ("g6", 1.0)]}
)


class ServedPolicy:
    def current(self, catalog_id: str) -> PolicyParams:
        return SERVED


def recommender(shadows: dict[str, ShadowPolicy]) -> Recommender:
    return Recommender(GARDEN_SHOP, ServedPolicy(), None, shadows)


def recommend(shadows: dict[str, ShadowPolicy], catalog_id: str = "garden", request: str = "r1") -> Recommendation:
    return recommender(shadows).recommend(catalog_id, "shopper-1", 3, request_id=request)


def served_part(recommendation: Recommendation) -> list[tuple[str, float, float]]:
    return [(r.bundle.bundle_id, r.score, r.propensity) for r in recommendation.bundles]


def test_a_shadow_candidate_leaves_the_answer_exactly_as_without_it_and_reports_its_propensities() -> None:
    shadows = {"garden": ShadowPolicy("garden", "ctr-heavy:v3", CANDIDATE)}

    for request in ("r1", "r2", "r3", "r4"):
        plain, shadowed = recommend({}, request=request), recommend(shadows, request=request)

        assert served_part(shadowed) == served_part(plain)
        assert (shadowed.policy_version, shadowed.model_version) == (plain.policy_version, plain.model_version)
        assert shadowed.shadow_policy == "ctr-heavy:v3"
        assert plain.shadow_policy is None
        assert all(r.shadow_propensity is None for r in plain.bundles)
        # The candidate's ε-mixture over all M = 8 kits: ε / M, plus 1 − ε where it is its greedy bundle.
        for r in shadowed.bundles:
            assert r.shadow_propensity in (pytest.approx(0.1 / 8), pytest.approx(0.9 + 0.1 / 8))


def test_a_shadow_equal_to_the_served_policy_reports_the_served_propensities() -> None:
    same = {"garden": ShadowPolicy("garden", "served-copy:v7", SERVED)}

    shadowed = recommend(same)

    assert [r.shadow_propensity for r in shadowed.bundles] == [r.propensity for r in shadowed.bundles]


def test_another_catalogs_candidate_does_not_shadow_this_one() -> None:
    answer = recommend({"amazon": ShadowPolicy("amazon", "ctr-heavy:v3", CANDIDATE)})

    assert answer.shadow_policy is None
    assert all(r.shadow_propensity is None for r in answer.bundles)


@pytest.fixture
def ranker_stub() -> Iterator[ranker_pb2_grpc.RankerStub]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    shadows = {"garden": ShadowPolicy("garden", "served-copy:v7", SERVED)}
    ranker_pb2_grpc.add_RankerServicer_to_server(RankerServicer(recommender(shadows)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ranker_pb2_grpc.RankerStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)


def test_the_grpc_answer_carries_the_shadow_policy_and_each_bundles_shadow_propensity(
    ranker_stub: ranker_pb2_grpc.RankerStub,
) -> None:
    request = ranker_pb2.RecommendBundlesRequest(catalog_id="garden", user_id="shopper-1", k=3, request_id="r1")

    shadowed = ranker_stub.RecommendBundles(request, timeout=5)
    other = ranker_stub.RecommendBundles(
        ranker_pb2.RecommendBundlesRequest(catalog_id="amazon", user_id="shopper-1", k=3, request_id="r1"), timeout=5
    )

    assert shadowed.shadow_policy == "served-copy:v7"
    assert len(shadowed.bundles) == 3
    assert [b.shadow_propensity for b in shadowed.bundles] == [b.propensity for b in shadowed.bundles]
    assert all(b.HasField("shadow_propensity") for b in shadowed.bundles)
    assert other.shadow_policy == ""
    assert not any(b.HasField("shadow_propensity") for b in other.bundles)


def test_shadowed_answers_and_the_candidates_propensities_are_exported_as_metrics(
    ranker_stub: ranker_pb2_grpc.RankerStub,
) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    answers = {"catalog": "garden", "policy": "served-copy:v7"}
    before = (
        sample("bundlewise_ranker_shadow_answers_total", **answers),
        sample("bundlewise_ranker_shadow_propensity_count", catalog="garden"),
        sample("bundlewise_ranker_shadow_propensity_sum", catalog="garden"),
    )
    request = ranker_pb2.RecommendBundlesRequest(catalog_id="garden", user_id="shopper-1", k=3, request_id="r2")

    shadowed = ranker_stub.RecommendBundles(request, timeout=5)
    ranker_stub.RecommendBundles(
        ranker_pb2.RecommendBundlesRequest(catalog_id="amazon", user_id="shopper-1", k=3, request_id="r2"), timeout=5
    )

    assert sample("bundlewise_ranker_shadow_answers_total", **answers) - before[0] == 1
    assert sample("bundlewise_ranker_shadow_propensity_count", catalog="garden") - before[1] == 3
    assert sample("bundlewise_ranker_shadow_propensity_sum", catalog="garden") - before[2] == pytest.approx(
        sum(b.shadow_propensity for b in shadowed.bundles)
    )
    assert sample("bundlewise_ranker_shadow_answers_total", catalog="amazon", policy="served-copy:v7") == 0
