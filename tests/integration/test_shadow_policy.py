"""A candidate policy in shadow, end to end on the real services: a ranker started with
BUNDLEWISE_SHADOW_POLICY_* answers through its gateway exactly what the suite's ranker answers, plus
the candidate's propensities; the storefront's `shown` feedback of that answer reaches Kafka with them
in the impression's context, and ``python -m services.policy.ope`` evaluates the candidate from there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine

from scripts.local_stack import LocalStack, free_port
from services.policy import ope
from shared.store.catalog import CatalogBundle, CatalogItem, CatalogWriter
from shared.store.redis_keys import NamespaceKeys
from tests.integration.servers import KAFKA
from tests.integration.waiting import wait_for

CATALOG = "shadowgarden"
CANDIDATE = "ctr-heavy:v2"
ITEMS = {f"g{n}": (f"Garden thing {n}", 5.0 + n, ("Garden", "Tools" if n % 2 else "Seeds")) for n in range(12)}
KITS = {f"kit-{c}": (f"g{n}", f"g{n + 1}", f"g{n + 2}") for n, c in enumerate("abcdefghij")}
PURCHASES = {kit: 20 - n for n, kit in enumerate(KITS)}
# The promotion format (shared/policy_params.py): a candidate that believes in kit-h.
CANDIDATE_PARAMS = {
    "temperature": 0.3,
    "ctr_weight": 3.0,
    "prior_alpha": 1.0,
    "prior_beta": 20.0,
    "arms": {"kit-h": [8.0, 2.0], "kit-a": [1.0, 30.0]},
    "counts": {"kit-h": [9, 7], "kit-a": [29, 0]},
}


@pytest.fixture(scope="module")
def shadowed(
    stack: LocalStack,
    engine: Engine,
    redis_client: redis.Redis,
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalStack]:
    """A second ranker and gateway beside the suite's, on the same stores, running CANDIDATE in shadow."""
    writer = CatalogWriter(engine, redis_client, namespace)
    writer.upsert_catalog(CATALOG, "Shadow garden", "tests", "EUR")
    writer.upsert_items(CATALOG, [CatalogItem(i, t, c, p) for i, (t, p, c) in ITEMS.items()])
    writer.upsert_bundles(CATALOG, [CatalogBundle(b, f"Kit {b}", members) for b, members in KITS.items()])
    redis_client.zadd(NamespaceKeys(namespace).catalog(CATALOG).bundle_popularity(), PURCHASES)
    work = tmp_path_factory.mktemp("shadow")
    params = work / "candidate.json"
    params.write_text(json.dumps(CANDIDATE_PARAMS))
    env = {
        **stack.base_env,
        "BUNDLEWISE_SHADOW_POLICY_FILE": str(params),
        "BUNDLEWISE_SHADOW_POLICY": CANDIDATE,
        "BUNDLEWISE_SHADOW_POLICY_CATALOG": CATALOG,
    }
    beside = LocalStack(env, Path(work / "logs"), {**stack.ports, "ranker": free_port(), "gateway": free_port()})
    beside.pepper = stack.pepper
    try:
        beside.start(("ranker", "gateway"))
        yield beside
    finally:
        codes = beside.stop()
    assert codes == dict.fromkeys(codes, 0), f"the shadowed services did not stop gracefully: {codes}"


def answer(stack: LocalStack, user_id: str, request_id: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{stack.gateway_url}/v1/users/{user_id}/bundles",
        params={"catalog_id": CATALOG, "k": 4, "request_id": request_id},
        headers=stack.auth_headers(),
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def served_part(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without its impression id and shadow fields."""
    bundles = [{k: v for k, v in b.items() if k != "shadow_propensity"} for b in body["bundles"]]
    return {**{k: v for k, v in body.items() if k not in ("impression_id", "shadow_policy")}, "bundles": bundles}


def test_a_candidate_in_shadow_changes_no_answer_and_is_evaluated_from_the_logged_feedback(
    stack: LocalStack,
    shadowed: LocalStack,
    topics: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    # Both rankers come to the catalog cold and serve its default policy; a request id fixes the draw.
    plain = wait_for(lambda: answer(stack, "gardener", "shadow-req-1"), lambda a: len(a["bundles"]) == 4, 30, "bundles")
    with_shadow = answer(shadowed, "gardener", "shadow-req-1")

    assert with_shadow["fallback"] is None
    assert served_part(with_shadow) == served_part(plain)
    assert plain["shadow_policy"] is None
    assert [b["shadow_propensity"] for b in plain["bundles"]] == [None] * 4
    assert with_shadow["shadow_policy"] == CANDIDATE
    shadow_propensities = [b["shadow_propensity"] for b in with_shadow["bundles"]]
    assert all(0 <= q <= 1 for q in shadow_propensities), shadow_propensities

    def feedback(action: str, **fields: Any) -> httpx.Response:
        body = {
            "feedback_id": f"fb-shadow-{action}",
            "action": action,
            "catalog_id": CATALOG,
            "user_id": "gardener",
            "impression_id": with_shadow["impression_id"],
            **fields,
        }
        return httpx.post(f"{shadowed.gateway_url}/v1/feedback", json=body, headers=shadowed.auth_headers(), timeout=10)

    shown = [
        {"bundle_id": b["bundle_id"], "position": n, "propensity": b["propensity"], "shadow_propensity": q}
        for n, (b, q) in enumerate(zip(with_shadow["bundles"], shadow_propensities, strict=True))
    ]
    assert feedback("shown", bundles=shown, shadow_policy=CANDIDATE, policy_version="0").status_code == 200
    first = with_shadow["bundles"][0]
    assert feedback("clicked", bundle_id=first["bundle_id"]).status_code == 200
    monkeypatch.setenv("BUNDLEWISE_KAFKA_BOOTSTRAP", KAFKA)

    status = ope.main(
        ["--topic", topics["events"], "--from", since, "--catalog", CATALOG, "--shadow-policy", CANDIDATE]
    )
    report = json.loads(capsys.readouterr().out)

    assert status == 0, report
    assert report["impressions_evaluated"] == 1
    assert report["logging"]["value"] == 1.0  # one click
    # IPS credits the click at position 0 with the candidate's weight there: q / p.
    expected = shadow_propensities[0] / first["propensity"]
    assert report["estimates"]["ips"]["value"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
