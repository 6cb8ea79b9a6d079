"""Training the item fusion (:mod:`services.embedding.fusion`) so that items of one bundle are close.

The encoders stay frozen: items are encoded once and only the fusion's four small matrices are
trained, in seconds on a CPU. The loss is the completion adapter's (:func:`contrastive_loss`): from
each item of a training bundle, retrieve another item of that bundle among all items. At every
step each item's image is dropped with probability ``image_dropout``, so the text half alone is
trained too and an item without an image still lands in the same space.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from services.embedding.fusion import FusionMetadata, ItemFusion
from services.ranker.offline.completion_adapter import contrastive_epoch, contrastive_loss
from services.ranker.offline.completion_data import CompletionBundle

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FusionConfig:
    """Ranks of the text and image halves, contrastive temperature, Adam step size and weight
    decay, epochs (one anchor per bundle item each), anchors per batch, image dropout."""

    rank: int = 64
    image_rank: int = 64
    temperature: float = 0.05
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 8
    batch_size: int = 256
    image_dropout: float = 0.5


@dataclass
class FusionRun:
    """The chosen fusion, each epoch's mean training loss, and the selection: each epoch's tune
    score (index 0: before training) and the epoch chosen (the best; the first among equals)."""

    fusion: ItemFusion
    losses: list[float] = field(default_factory=list)
    tune_scores: list[float] = field(default_factory=list)
    chosen_epoch: int = 0


TuneScore = Callable[[ItemFusion], float]
"""How good a fusion is on held-out tune queries (higher is better)."""


class _FusionModule(torch.nn.Module):
    def __init__(self, text_dim: int, image_dim: int, config: FusionConfig) -> None:
        super().__init__()
        self.text_down = torch.nn.Linear(text_dim, config.rank, bias=False)
        self.text_up = torch.nn.Linear(config.rank, text_dim, bias=False)
        self.image_down = torch.nn.Linear(image_dim, config.image_rank, bias=False)
        self.image_up = torch.nn.Linear(config.image_rank, text_dim, bias=False)
        # Zero "up" halves: training starts from the frozen text vectors, images adding nothing.
        torch.nn.init.zeros_(self.text_up.weight)
        torch.nn.init.zeros_(self.image_up.weight)

    def forward(self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        fused = text + self.text_up(self.text_down(text))
        fused = fused + has_image.unsqueeze(1) * self.image_up(self.image_down(image))
        return torch.nn.functional.normalize(fused, dim=-1)

    def to_fusion(self, metadata: FusionMetadata) -> ItemFusion:
        def weight(layer: torch.nn.Linear) -> FloatArray:
            return layer.weight.detach().numpy().astype(np.float32)

        return ItemFusion(
            weight(self.text_down), weight(self.text_up), weight(self.image_down), weight(self.image_up), metadata
        )


def train_fusion(
    text: FloatArray,
    image: FloatArray,
    bundles: Sequence[CompletionBundle],
    config: FusionConfig,
    seed: int,
    metadata: FusionMetadata,
    tune_score: TuneScore | None = None,
) -> FusionRun:
    """Trains the fusion on ``bundles`` (training bundles only) over the items' L2-normalised
    ``text`` [n_items, text_dim] and ``image`` [n_items, image_dim] vectors.

    With ``tune_score``, the fusion is scored before training and after every epoch, and the best
    is returned: where training does not help on tune, the untrained fusion (the frozen text
    vectors) is what comes back. Without it, the last epoch's. The same seed gives the same weights
    (single-threaded CPU)."""
    if text.shape[0] != image.shape[0]:
        raise ValueError(f"{text.shape[0]} text vectors but {image.shape[0]} image vectors")
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _FusionModule(text.shape[1], image.shape[1], config)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    text_in = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32))
    image_in = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))

    def step(batch: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand(text_in.shape[0], generator=generator) >= config.image_dropout).float()
        loss = contrastive_loss(module(text_in, image_in, keep), batch[:, 0], batch[:, 1], config.temperature)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        return loss

    losses: list[float] = []
    best = module.to_fusion(metadata)
    scores = [tune_score(best)] if tune_score is not None else []
    chosen = 0
    for epoch in range(1, config.epochs + 1):
        loss = contrastive_epoch(bundles, rng, generator, config.batch_size, step)
        if loss is None:
            break
        losses.append(loss)
        fusion = module.to_fusion(metadata)
        if tune_score is None:
            best, chosen = fusion, epoch
            continue
        scores.append(tune_score(fusion))
        if scores[-1] > scores[chosen]:
            best, chosen = fusion, epoch
    return FusionRun(best, losses, scores, chosen)
