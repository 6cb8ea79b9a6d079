"""The benchmark's event generator: seeded, valid, realistic in shape, on the real Amazon data."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from itertools import islice

import pytest

from benchmarks.event_generator import ShopperSimulator, encoded, generate, real_sessions
from services.featurestore.real_catalogs import RealCatalog, load_amazon
from shared.datasets import default_data_dir
from shared.events import EventType, parse_event, partition_key


@pytest.fixture(scope="module")
def amazon() -> RealCatalog:
    return load_amazon(default_data_dir())


@pytest.fixture(scope="module")
def early_amazon(amazon: RealCatalog) -> RealCatalog:
    """The whole catalog with its first 2,000 real events only: a pass is short."""
    return replace(amazon, events=amazon.events[:2_000])


def test_the_same_seed_gives_the_same_stream_byte_for_byte(amazon: RealCatalog) -> None:
    assert list(generate(amazon, 2_000, seed=7)) == list(generate(amazon, 2_000, seed=7))
    assert list(generate(amazon, 2_000, seed=7)) != list(generate(amazon, 2_000, seed=8))


def test_every_generated_event_is_valid_and_keyed_like_the_gateways(amazon: RealCatalog) -> None:
    for key, value in generate(amazon, 10_000, seed=7):
        assert key == partition_key(parse_event(value))


def test_a_pass_shows_every_event_type_and_keeps_the_real_purchases(early_amazon: RealCatalog) -> None:
    sessions = real_sessions(early_amazon)
    stream = list(islice(ShopperSimulator(early_amazon, seed=7).events(), 30_000))
    first_pass = [e for e in stream if e["event_id"].startswith("gen-0-")]
    kinds = Counter(e["type"] for e in first_pass)

    assert set(kinds) == {t.value for t in EventType}
    assert kinds["purchase"] == sum(len(s.items) for s in sessions)
    assert kinds["bundle_purchase"] == sum(len(s.bundles) for s in sessions)
    assert kinds["view"] > kinds["click"] > kinds["bundle_click"]


def test_later_passes_replay_the_sessions_as_other_shoppers(early_amazon: RealCatalog) -> None:
    events = list(islice(ShopperSimulator(early_amazon, seed=7).events(), 30_000))
    users = {replay: {e["user_id"] for e in events if e["event_id"].startswith(f"gen-{replay}-")} for replay in (0, 1)}

    assert users[0]
    assert users[1]
    assert not users[0] & users[1]
    assert {u.removesuffix(".r1") for u in users[1]} <= users[0]
    assert len({e["event_id"] for e in events}) == len(events)
    assert encoded(events[0])[0] == f"amazon:{events[0]['user_id']}".encode()
