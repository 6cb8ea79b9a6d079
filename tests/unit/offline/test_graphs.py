"""Specification of the propagation matrices and layer combinations."""

from __future__ import annotations

import math

import pytest
import torch

from services.ranker.offline.graphs import BipartiteLaplacian, MeanAggregation, propagate

# Users 0, 1; bundles 0, 1 (nodes 2, 3). Edges: u0-b0, u0-b1, u1-b1.
PAIRS = torch.tensor([[0, 0], [0, 1], [1, 1]])


def test_laplacian_is_symmetric_and_normalised_by_both_degrees() -> None:
    matrix = BipartiteLaplacian(PAIRS, 2, 2).matrix().to_dense()
    # Degrees: u0 2, u1 1, b0 1, b1 2.
    expected = torch.zeros(4, 4)
    for user, bundle, value in [(0, 2, 1 / math.sqrt(2)), (0, 3, 1 / 2), (1, 3, 1 / math.sqrt(2))]:
        expected[user, bundle] = expected[bundle, user] = value
    assert torch.allclose(matrix, expected, atol=1e-7)


def test_dropping_an_edge_removes_both_directions_and_renormalises() -> None:
    matrix = BipartiteLaplacian(PAIRS, 2, 2).matrix(torch.tensor([True, False, True])).to_dense()
    expected = torch.zeros(4, 4)
    for user, bundle, value in [(0, 2, 1.0), (1, 3, 1.0)]:
        expected[user, bundle] = expected[bundle, user] = value
    assert torch.equal(matrix, expected)


def test_edge_dropout_rate_zero_keeps_every_edge() -> None:
    graph = BipartiteLaplacian(PAIRS, 2, 2)
    dropped = graph.dropped(0.0, torch.Generator().manual_seed(0)).to_dense()
    assert torch.equal(dropped, graph.matrix().to_dense())


def test_edge_dropout_is_reproducible_from_the_generator() -> None:
    graph = BipartiteLaplacian(torch.tensor([[u, b] for u in range(5) for b in range(5)]), 5, 5)
    first = graph.dropped(0.5, torch.Generator().manual_seed(3)).to_dense()
    second = graph.dropped(0.5, torch.Generator().manual_seed(3)).to_dense()
    assert torch.equal(first, second)
    assert 0 < int((first[:5] != 0).sum()) < 25


def test_mean_aggregation_averages_each_rows_members() -> None:
    matrix = MeanAggregation(torch.tensor([[0, 0], [0, 2], [1, 1]]), 2, 3).matrix()
    items = torch.tensor([[1.0], [10.0], [100.0]])
    assert torch.sparse.mm(matrix, items).tolist() == [[50.5], [10.0]]


def test_propagate_mean_averages_layers_zero_to_l() -> None:
    graph = BipartiteLaplacian(torch.tensor([[0, 0]]), 1, 1).matrix()
    features = torch.tensor([[1.0], [3.0]])
    # Layer 1 swaps the two nodes: [[3], [1]]; layer 2 swaps back.
    assert propagate(graph, features, 2, "mean").tolist() == [[pytest.approx(5 / 3)], [pytest.approx(7 / 3)]]


def test_propagate_normalized_sum_adds_unit_length_layers_to_layer_zero() -> None:
    graph = BipartiteLaplacian(torch.tensor([[0, 0]]), 1, 1).matrix()
    features = torch.tensor([[1.0, 0.0], [0.0, -3.0]])
    assert propagate(graph, features, 1, "normalized_sum").tolist() == [[1.0, -1.0], [1.0, -3.0]]


def test_propagate_refuses_an_unknown_combination() -> None:
    graph = BipartiteLaplacian(PAIRS, 2, 2).matrix()
    with pytest.raises(ValueError, match="unknown layer combination"):
        propagate(graph, torch.zeros(4, 1), 1, "max")
