"""PostgresSnapshotStore against the real PostgreSQL: versions, round trips, concurrency, outages."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from services.policy.domain import BANDIT_POLICY_NAME, POLICY_NAME, Arm, PolicyParams
from services.policy.postgres_snapshots import PostgresSnapshotStore, params_from_json, params_to_json
from shared.bandit_features import FEATURES
from shared.errors import Unavailable
from shared.policy_params import ServingParamsDocument
from shared.store import tables
from shared.store.migrate import make_engine
from tests.unit.policy.policy_testkit import EVENT_TIME, POSTGRES_URL, bandit_params

PARAMS = PolicyParams(
    temperature=0.1,
    ctr_weight=1.5,
    prior_alpha=1.0,
    prior_beta=20.0,
    arms=(
        Arm("bundle-a", impressions=10, clicks=3, alpha=4.0, beta=27.0),
        Arm("bundle:b/2", impressions=0, clicks=1, alpha=2.0, beta=20.0),
    ),
    log_positions={("bundlewise.events.v1", 0): 17, ("bundlewise.events.v1", 5): 3},
)


def test_params_json_has_the_documented_shape_and_round_trips() -> None:
    document = params_to_json(PARAMS)

    assert document == {
        "temperature": 0.1,
        "ctr_weight": 1.5,
        "prior_alpha": 1.0,
        "prior_beta": 20.0,
        "arms": {"bundle-a": [4.0, 27.0], "bundle:b/2": [2.0, 20.0]},
        "counts": {"bundle-a": [10, 3], "bundle:b/2": [0, 1]},
        "log_positions": {"bundlewise.events.v1": {"0": 17, "5": 3}},
        "exploration": "softmax",
        "epsilon": 0.0,
    }
    assert params_from_json(document) == PARAMS


def test_a_document_from_before_exploration_settings_reads_as_softmax() -> None:
    document = params_to_json(replace(PARAMS, exploration="epsilon_mixture", epsilon=0.05))
    assert params_from_json(document).exploration == "epsilon_mixture"
    del document["exploration"], document["epsilon"]

    older = params_from_json(document)

    assert (older.exploration, older.epsilon) == ("softmax", 0.0)


def test_params_json_whose_arms_and_counts_disagree_is_refused() -> None:
    document = params_to_json(PARAMS)
    del document["counts"]["bundle-a"]

    with pytest.raises(ValueError, match="name different bundles"):
        params_from_json(document)


def test_params_json_with_unknown_keys_is_refused() -> None:
    with pytest.raises(ValidationError):
        params_from_json({**params_to_json(PARAMS), "surprise": 1})


def test_an_unreachable_database_is_reported_as_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://nobody:nothing@127.0.0.1:1/none", "policytest_unreachable")
    store = PostgresSnapshotStore(engine)
    try:
        with pytest.raises(Unavailable, match="policy store"):
            store.latest("shop")
        with pytest.raises(Unavailable, match="policy store"):
            store.publish("shop", PARAMS, note="")
    finally:
        engine.dispose()


@pytest.mark.integration
def test_nothing_is_published_in_a_new_namespace(engine: Engine) -> None:
    store = PostgresSnapshotStore(engine)

    assert store.latest("shop") is None
    assert store.catalogs() == []


@pytest.mark.integration
def test_a_published_snapshot_reads_back_as_the_latest(engine: Engine) -> None:
    store = PostgresSnapshotStore(engine)

    version = store.publish("shop", PARAMS, note="first")
    latest = store.latest("shop")

    assert version == 1
    assert latest is not None
    assert (latest.catalog_id, latest.version, latest.policy_name, latest.params, latest.note) == (
        "shop",
        1,
        POLICY_NAME,
        PARAMS,
        "first",
    )
    assert latest.created_at.tzinfo is not None


@pytest.mark.integration
def test_versions_go_up_by_one_per_catalog_independently(engine: Engine) -> None:
    store = PostgresSnapshotStore(engine)
    second = PolicyParams(temperature=0.0, ctr_weight=1.0, prior_alpha=1.0, prior_beta=20.0, arms=())

    versions = [
        store.publish("shop", PARAMS, ""),
        store.publish("books", PARAMS, ""),
        store.publish("shop", PARAMS, ""),
        store.publish("shop", second, "newest"),
        store.publish("books", PARAMS, ""),
    ]

    assert versions == [1, 1, 2, 3, 2]
    latest = store.latest("shop")
    assert latest is not None
    assert (latest.version, latest.params, latest.note) == (3, second, "newest")
    assert store.catalogs() == ["books", "shop"]


@pytest.mark.integration
def test_concurrent_publishes_get_distinct_consecutive_versions(engine: Engine) -> None:
    publishers, each = 8, 6
    store = PostgresSnapshotStore(engine)

    def publish_many(_: int) -> list[int]:
        return [store.publish("shop", PARAMS, "") for _ in range(each)]

    with ThreadPoolExecutor(publishers) as pool:
        versions = [v for batch in pool.map(publish_many, range(publishers)) for v in batch]

    assert sorted(versions) == list(range(1, publishers * each + 1))
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(tables.policy_versions)).scalar_one()
    assert rows == publishers * each


@pytest.mark.integration
def test_namespaces_do_not_see_each_others_snapshots(engine: Engine, make_namespace: Callable[[], str]) -> None:
    PostgresSnapshotStore(engine).publish("shop", PARAMS, "")
    other_engine = make_engine(POSTGRES_URL, make_namespace())
    try:
        other = PostgresSnapshotStore(other_engine)
        assert other.latest("shop") is None
        assert other.publish("shop", PARAMS, "") == 1
    finally:
        other_engine.dispose()


BANDIT_PARAMS = replace(
    PARAMS,
    exploration="epsilon_mixture",
    epsilon=0.05,
    bandit=bandit_params(biases={"bundle-a": 0.25, "bundle-new": -0.5}, closed_through=EVENT_TIME),
)


def test_params_json_with_a_bandit_has_the_documented_bandit_section_and_round_trips() -> None:
    document = params_to_json(BANDIT_PARAMS)

    assert document == {**params_to_json(replace(BANDIT_PARAMS, bandit=None)), "bandit": document["bandit"]}
    assert document["bandit"] == {
        "feature_names": list(FEATURES),
        "feature_weights": [0.1, 0.2, -0.05, 0.3, -0.4, 0.5],
        "bundle_bias": {"bundle-a": 0.25, "bundle-new": -0.5},
        "closed_through": "2026-01-02T03:04:05+00:00",
        "state": {
            "shared_gram": [[2.0 if i == j else 0.5 for j in range(6)] for i in range(6)],
            "shared_target": [0.5] * 6,
            "bundles": {"bundle-a": [1.5, 0.25, *[0.75] * 6], "bundle-new": [1.5, 0.25, *[0.75] * 6]},
            "explored_clicks": [1.0, 0.5],
            "explored_shown": [4.0, 4.0],
        },
    }
    assert params_from_json(json.loads(json.dumps(document))) == BANDIT_PARAMS


def test_a_document_of_click_rates_has_no_bandit_section() -> None:
    assert "bandit" not in params_to_json(PARAMS)
    assert params_from_json(params_to_json(PARAMS)).bandit is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("feature_weights",), [0.1] * 5),
        (("state", "shared_gram"), [[1.0] * 6] * 5),
        (("state", "shared_target"), [0.5] * 7),
        (("state", "bundles"), {"bundle-a": [1.5, 0.25]}),
        (("state", "explored_shown"), [4.0]),
    ],
)
def test_a_bandit_section_whose_shapes_disagree_with_its_features_is_refused(
    path: tuple[str, ...], value: object
) -> None:
    document = params_to_json(BANDIT_PARAMS)
    section = document["bandit"]
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value

    with pytest.raises(ValidationError, match="bandit over d = 6 features"):
        params_from_json(document)


def test_the_serving_reader_accepts_a_document_with_a_bandit_and_reads_its_click_rates() -> None:
    served = ServingParamsDocument.model_validate(params_to_json(BANDIT_PARAMS))

    assert served.arms == {"bundle-a": (4.0, 27.0), "bundle:b/2": (2.0, 20.0)}
    assert (served.exploration, served.epsilon) == ("epsilon_mixture", 0.05)


@pytest.mark.integration
def test_a_snapshot_with_a_bandit_reads_back_whole_under_the_bandit_name(engine: Engine) -> None:
    store = PostgresSnapshotStore(engine)

    store.publish("shop", BANDIT_PARAMS, note="bandit")
    latest = store.latest("shop")

    assert latest is not None
    assert (latest.policy_name, latest.params) == (BANDIT_POLICY_NAME, BANDIT_PARAMS)
