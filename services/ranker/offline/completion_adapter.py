"""A low-rank residual adapter on frozen text vectors, trained so that items of one bundle are close.

The pretrained encoder stays frozen; only ``x -> normalize(x + B A x)`` is trained, ``A`` of shape
[rank, dim] and ``B`` [dim, rank] with ``B`` starting at zero, so training starts from the frozen
vectors exactly (the parameter-efficient fine-tuning of issue 5, on the encoder's output rather
than inside its layers: the items are encoded once, and training takes seconds on a CPU).

Loss: for each anchor item of a training bundle and one other item of that bundle as its positive,
softmax cross-entropy over all candidate items at temperature ``temperature`` (the anchor itself
excluded), i.e. retrieve the bundle partner from the whole catalog.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from services.ranker.offline.completion_data import CompletionBundle

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AdapterConfig:
    """Rank of the update, contrastive temperature, Adam step size and weight decay, epochs (one
    anchor per bundle item each), anchors per batch."""

    rank: int = 64
    temperature: float = 0.05
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 8
    batch_size: int = 256


@dataclass
class AdapterRun:
    """The adapted vectors [n_items, dim] (L2-normalised) and each epoch's mean training loss, every
    batch's loss measured just before its own step."""

    vectors: FloatArray
    losses: list[float] = field(default_factory=list)


class LowRankAdapter(torch.nn.Module):
    """``normalize(x + up(down(x)))``; ``up`` starts at zero, so a fresh adapter returns ``normalize(x)``."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = torch.nn.Linear(dim, rank, bias=False)
        self.up = torch.nn.Linear(rank, dim, bias=False)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(vectors + self.up(self.down(vectors)), dim=-1)


def bundle_pairs(bundles: Sequence[CompletionBundle], rng: random.Random) -> list[tuple[int, int]]:
    """One (anchor, positive) pair per item of every bundle of 2 or more items, the positive drawn
    from the bundle's other items."""
    pairs = []
    for bundle in bundles:
        for anchor in bundle.items:
            others = [item for item in bundle.items if item != anchor]
            if others:
                pairs.append((anchor, rng.choice(others)))
    return pairs


def contrastive_loss(
    adapted: torch.Tensor, anchors: torch.Tensor, positives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean cross-entropy of finding each positive among all rows of ``adapted`` [n_items, dim]
    from its anchor, the anchor's own row excluded."""
    logits = adapted[anchors] @ adapted.T / temperature
    logits = logits.index_put((torch.arange(anchors.numel()), anchors), torch.tensor(float("-inf")))
    return torch.nn.functional.cross_entropy(logits, positives)


def contrastive_epoch(
    bundles: Sequence[CompletionBundle],
    rng: random.Random,
    generator: torch.Generator,
    batch_size: int,
    train_step: Callable[[torch.Tensor], torch.Tensor],
) -> float | None:
    """One epoch: a fresh (anchor, positive) pair per bundle item (:func:`bundle_pairs`), shuffled,
    in batches of ``batch_size``; ``train_step(batch)`` takes one optimiser step on an int64 [b, 2]
    batch and returns its loss (measured before the step). The mean loss per pair, or None when the
    bundles give no pair."""
    pairs = torch.tensor(bundle_pairs(bundles, rng), dtype=torch.int64).reshape(-1, 2)
    if pairs.shape[0] == 0:
        return None
    order = torch.randperm(pairs.shape[0], generator=generator)
    total = 0.0
    for start in range(0, order.numel(), batch_size):
        batch = pairs[order[start : start + batch_size]]
        total += float(train_step(batch).detach()) * batch.shape[0]
    return total / pairs.shape[0]


def train_adapter(
    frozen: FloatArray, bundles: Sequence[CompletionBundle], config: AdapterConfig, seed: int
) -> AdapterRun:
    """Trains a :class:`LowRankAdapter` on ``bundles`` (training bundles only) over the L2-normalised
    ``frozen`` vectors [n_items, dim]; returns the adapted vectors of every item and the losses.

    The same seed gives the same result (single-threaded CPU)."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = LowRankAdapter(frozen.shape[1], config.rank)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    inputs = torch.from_numpy(np.ascontiguousarray(frozen, dtype=np.float32))

    def step(batch: torch.Tensor) -> torch.Tensor:
        loss = contrastive_loss(adapter(inputs), batch[:, 0], batch[:, 1], config.temperature)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        return loss

    losses: list[float] = []
    for _ in range(config.epochs):
        loss = contrastive_epoch(bundles, rng, generator, config.batch_size, step)
        if loss is None:
            break
        losses.append(loss)
    with torch.no_grad():
        adapted = adapter(inputs).numpy().astype(np.float32)
    return AdapterRun(adapted, losses)
