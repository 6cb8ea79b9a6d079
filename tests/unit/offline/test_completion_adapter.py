"""The low-rank adapter: starts as the identity, and training on bundles lowers its loss and pulls
bundle partners together."""

from __future__ import annotations

import random

import numpy as np
import torch

from services.ranker.offline.completion_adapter import (
    AdapterConfig,
    LowRankAdapter,
    bundle_pairs,
    train_adapter,
)
from services.ranker.offline.completion_data import CompletionBundle


def _tiny_bundles() -> tuple[np.ndarray, list[CompletionBundle]]:
    """40 random unit vectors; bundles pair item i with item i + 20 (unrelated in the vectors)."""
    vectors = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, [CompletionBundle(str(i), (i, i + 20)) for i in range(20)]


def test_a_fresh_adapter_returns_the_normalised_input() -> None:
    vectors = torch.randn(5, 16)

    adapted = LowRankAdapter(16, 4)(vectors)

    assert torch.allclose(adapted, torch.nn.functional.normalize(vectors, dim=-1))


def test_bundle_pairs_give_each_item_of_a_bundle_a_partner_from_that_bundle() -> None:
    pairs = bundle_pairs([CompletionBundle("a", (1, 2, 3)), CompletionBundle("b", (4,))], random.Random(0))

    assert [anchor for anchor, _ in pairs] == [1, 2, 3]
    assert all(partner in (1, 2, 3) and partner != anchor for anchor, partner in pairs)


def test_training_lowers_the_loss_and_brings_bundle_partners_closer() -> None:
    vectors, bundles = _tiny_bundles()

    run = train_adapter(vectors, bundles, AdapterConfig(rank=8, epochs=30, batch_size=16, lr=1e-2), seed=0)

    assert run.losses[-1] < 0.8 * run.losses[0]
    before = float(np.mean([vectors[i] @ vectors[i + 20] for i in range(20)]))
    after = float(np.mean([run.vectors[i] @ run.vectors[i + 20] for i in range(20)]))
    assert after > before + 0.2
    assert np.allclose(np.linalg.norm(run.vectors, axis=1), 1.0, atol=1e-5)


def test_the_same_seed_trains_the_same_adapter() -> None:
    vectors, bundles = _tiny_bundles()
    config = AdapterConfig(rank=4, epochs=2, batch_size=8)

    first, second = train_adapter(vectors, bundles, config, seed=3), train_adapter(vectors, bundles, config, seed=3)

    assert first.losses == second.losses
    assert np.array_equal(first.vectors, second.vectors)
