"""The complete-the-bundle split: seeded 8:1:1 over bundles, no held-out session in training."""

from __future__ import annotations

from services.ranker.offline.completion_data import (
    CompletionBundle,
    CompletionDomain,
    split_bundles,
)


def _domain(n_bundles: int = 40) -> CompletionDomain:
    """Bundle b holds items b, b+1, b+2 (mod 50) and lives alone in session 100 + b, except that
    bundles 0 and 1 share session 100; bundle 99 has one item and is never split. User ``b % 5``
    owns bundle b, on day ``b``."""
    bundles = [
        CompletionBundle(
            str(b), ((b) % 50, (b + 1) % 50, (b + 2) % 50), session=100 + (b if b > 1 else 0), user=b % 5, timestamp=b
        )
        for b in range(n_bundles)
    ]
    bundles.append(CompletionBundle("99", (7,), session=999, user=0, timestamp=0))
    sessions = {100 + b: (*bundles[b].items, 49) for b in range(1, n_bundles)}
    sessions[100] = bundles[0].items + bundles[1].items
    sessions[999] = (7, 8)
    return CompletionDomain(
        name="tiny",
        item_ids=tuple(str(i) for i in range(50)),
        titles=tuple(f"item {i}" for i in range(50)),
        texts=tuple(f"item {i} | shelf" for i in range(50)),
        categories=tuple("even" if i % 2 == 0 else "odd" for i in range(50)),
        bundles=tuple(bundles),
        sessions=sessions,
    )


def test_split_is_8_1_1_over_bundles_with_two_or_more_items() -> None:
    split = split_bundles(_domain(40), seed=3)

    assert (len(split.train_bundles), len(split.tune), len(split.test)) == (32, 4, 4)
    every_id = [b.bundle_id for b in split.train_bundles] + [q.bundle_id for q in (*split.tune, *split.test)]
    assert sorted(every_id, key=int) == [str(b) for b in range(40)]


def test_same_seed_gives_the_same_split_and_hidden_items_and_another_seed_does_not() -> None:
    domain = _domain()

    first, again, other = split_bundles(domain, 5), split_bundles(domain, 5), split_bundles(domain, 6)

    assert first == again
    assert [q.bundle_id for q in first.test] != [q.bundle_id for q in other.test]


def test_each_held_out_bundle_hides_exactly_one_of_its_items() -> None:
    domain = _domain()
    items = {b.bundle_id: b.items for b in domain.bundles}

    split = split_bundles(domain, 1)

    for query in (*split.tune, *split.test):
        assert query.hidden in items[query.bundle_id]
        assert sorted((*query.given, query.hidden)) == sorted(items[query.bundle_id])


def test_no_session_holding_a_tune_or_test_bundle_is_in_training() -> None:
    domain = _domain()
    for seed in range(5):
        split = split_bundles(domain, seed)
        held_out = {q.bundle_id for q in (*split.tune, *split.test)}
        held_out_sessions = {
            domain.sessions[b.session] for b in domain.bundles if b.bundle_id in held_out and b.session
        }
        assert not held_out_sessions & set(split.train_sessions)
        expected_kept = len([s for s in domain.sessions.values() if s not in held_out_sessions])
        assert len(split.train_sessions) == expected_kept
        assert split.left_out_sessions == len({b.session for b in domain.bundles if b.bundle_id in held_out})


def test_history_is_the_owners_strictly_earlier_training_bundles_from_other_sessions() -> None:
    domain = _domain()
    split = split_bundles(domain, 2)
    train = {b.bundle_id: b for b in split.train_bundles}
    by_id = {b.bundle_id: b for b in domain.bundles}

    for query in (*split.tune, *split.test):
        bundle = by_id[query.bundle_id]
        expected = [
            item
            for b in split.train_bundles
            if b.user == bundle.user and b.timestamp < bundle.timestamp and b.session != bundle.session
            for item in b.items
        ]
        assert set(query.history) == set(expected)
        assert all(item in {i for b in train.values() for i in b.items} for item in query.history)


def test_dropping_session_mates_removes_exactly_the_training_bundles_of_held_out_sessions() -> None:
    domain = _domain()
    for seed in range(5):
        plain, strict = split_bundles(domain, seed), split_bundles(domain, seed, drop_session_mates=True)
        held_out = {q.bundle_id for q in (*plain.tune, *plain.test)}
        held_out_sessions = {b.session for b in domain.bundles if b.bundle_id in held_out}

        assert (strict.tune, strict.test, strict.train_sessions) == (plain.tune, plain.test, plain.train_sessions)
        assert strict.train_bundles == tuple(b for b in plain.train_bundles if b.session not in held_out_sessions)
    mates = [split_bundles(domain, s) for s in range(20)]
    assert any(
        {b.session for b in m.train_bundles}
        & {b.session for b in domain.bundles if b.bundle_id in {q.bundle_id for q in (*m.tune, *m.test)}}
        for m in mates
    ), "no seed puts bundles 0 and 1 (one session) on both sides: the test would prove nothing"
