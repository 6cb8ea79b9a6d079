"""BPR training with per-epoch tune evaluation, best-epoch selection, checkpoints and resume.

An epoch visits every training user-bundle pair once in a shuffled order, in batches, each pair
with one negative bundle drawn uniformly from the bundles the user has no training pair with.
After each epoch the model is evaluated on tune; the epoch with the highest tune ``recall@20``
(ties keep the earlier one) is the selected model.

Checkpoints, in ``run_dir``: ``last.pt`` after every epoch (weights, optimizer, the sampling
generator, history) and ``best.pt`` (weights of the selected epoch). Training into a folder that
holds ``last.pt`` resumes after its epoch; the run is then bit-identical to an uninterrupted one
(single-threaded CPU), because every random draw comes from one saved generator.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from services.ranker.offline.data import BundleRecData
from services.ranker.offline.evaluation import BundleScorer, EmbeddingScorer, evaluate
from services.ranker.offline.models import BundleModel

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CHECKPOINT_FORMAT = 1
SELECTION_METRIC = "recall@20"


class CheckpointMismatchError(ValueError):
    """``run_dir`` holds a checkpoint of a different model or training configuration."""


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. ``epochs`` and ``patience`` may change between resumes; the rest may not."""

    epochs: int = 100
    batch_size: int = 2048
    learning_rate: float = 1e-3
    weight_decay: float = 4e-5
    """Adam's L2 penalty on every parameter (CrossCBR's ``l2_reg``)."""
    seed: int = 0
    """Seeds shuffling, negatives and edge dropout; the caller seeds the model's initialisation."""
    patience: int = 0
    """Stop after this many epochs without a better tune score; 0 trains every epoch."""
    eval_chunk_size: int = 512


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean batch losses, tune metrics, and seconds spent training and evaluating."""

    epoch: int
    loss: float
    bpr: float
    contrastive: float
    tune: dict[str, float]
    train_seconds: float
    eval_seconds: float


@dataclass
class TrainingOutcome:
    """What a (possibly resumed) training run ended with; the model holds the best epoch's weights."""

    best_epoch: int
    best_tune: dict[str, float]
    epochs_trained: int
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of every epoch, training and tune evaluation, summed over resumes."""
    stopped_early: bool = False
    resumed_after_epoch: int = 0


class NegativeSampler:
    """Draws, for each user, a bundle uniformly among those without a training pair with the user."""

    MAX_ROUNDS = 100

    def __init__(self, train_pairs: torch.Tensor, n_bundles: int) -> None:
        self.n_bundles = n_bundles
        self._keys = torch.sort(train_pairs[:, 0] * n_bundles + train_pairs[:, 1]).values

    def is_training_pair(self, users: torch.Tensor, bundles: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_bundles + bundles
        if self._keys.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        position = torch.searchsorted(self._keys, keys).clamp(max=self._keys.numel() - 1)
        return self._keys[position] == keys

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """int64 [len(users)] negatives; rejection sampling, so a user with a training pair to almost
        every bundle may keep a positive after ``MAX_ROUNDS`` (not the case in any real dataset)."""
        negatives = torch.randint(self.n_bundles, users.shape, generator=generator)
        for _ in range(self.MAX_ROUNDS):
            clash = self.is_training_pair(users, negatives)
            count = int(clash.sum())
            if count == 0:
                break
            negatives[clash] = torch.randint(self.n_bundles, (count,), generator=generator)
        return negatives


def train(
    model: BundleModel,
    data: BundleRecData,
    config: TrainingConfig,
    run_dir: Path | None = None,
    progress: Callable[[EpochRecord], None] | None = None,
    tune_view: Callable[[EmbeddingScorer], BundleScorer] | None = None,
) -> TrainingOutcome:
    """Trains ``model`` for ``config.epochs`` epochs (or until ``patience``) and loads the best one.

    With ``run_dir``, checkpoints there after every epoch and first resumes from its ``last.pt``.
    ``progress`` is called after every epoch. ``tune_view``, when given, turns the model's scorer into
    the one evaluated on tune for selection (for a prior the caller adds after training).

    Raises:
        CheckpointMismatchError: ``run_dir`` holds a checkpoint of another model or configuration.
    """
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    fingerprint = _fingerprint(model, config)
    outcome = TrainingOutcome(best_epoch=0, best_tune={}, epochs_trained=0)
    best_state = _copy_state(model)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / LAST_CHECKPOINT).is_file():
            outcome, best_state = _resume(run_dir, fingerprint, model, optimizer, generator)

    sampler = NegativeSampler(data.train_pairs, data.n_bundles)
    best_score = outcome.best_tune.get(SELECTION_METRIC, -math.inf)
    for epoch in range(outcome.epochs_trained + 1, config.epochs + 1):
        if config.patience and outcome.best_epoch and epoch - 1 - outcome.best_epoch >= config.patience:
            outcome.stopped_early = True
            break
        started = time.perf_counter()
        model.train()
        sums = {"loss": 0.0, "bpr": 0.0, "contrastive": 0.0}
        order = torch.randperm(data.train_pairs.shape[0], generator=generator)
        for start in range(0, order.numel(), config.batch_size):
            batch = data.train_pairs[order[start : start + config.batch_size]]
            users, positives = batch[:, 0], batch[:, 1]
            terms = model.training_loss(users, positives, sampler.sample(users, generator), generator)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(terms.total)
            optimizer.step()
            weight = users.numel() / order.numel()
            sums["loss"] += float(terms.total.detach()) * weight
            sums["bpr"] += float(terms.bpr.detach()) * weight
            sums["contrastive"] += float(terms.contrastive.detach()) * weight
        trained = time.perf_counter()
        model.eval()
        scorer = model.scorer() if tune_view is None else tune_view(model.scorer())
        tune = evaluate(scorer, data.tune, chunk_size=config.eval_chunk_size).metrics
        record = EpochRecord(
            epoch=epoch,
            loss=sums["loss"],
            bpr=sums["bpr"],
            contrastive=sums["contrastive"],
            tune=tune,
            train_seconds=trained - started,
            eval_seconds=time.perf_counter() - trained,
        )
        outcome.history.append(record)
        outcome.epochs_trained = epoch
        outcome.seconds += record.train_seconds + record.eval_seconds
        if tune[SELECTION_METRIC] > best_score:
            best_score = tune[SELECTION_METRIC]
            outcome.best_epoch, outcome.best_tune = epoch, tune
            best_state = _copy_state(model)
            if run_dir is not None:
                _save_atomically(
                    {"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": best_state}, run_dir / BEST_CHECKPOINT
                )
        if run_dir is not None:
            _save_atomically(
                {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "outcome": _outcome_to_plain(outcome),
                },
                run_dir / LAST_CHECKPOINT,
            )
        if progress is not None:
            progress(record)
    model.load_state_dict(best_state)
    model.eval()
    return outcome


def load_best(model: BundleModel, run_dir: Path) -> int:
    """Loads ``run_dir/best.pt`` into ``model`` and returns its epoch."""
    checkpoint = torch.load(run_dir / BEST_CHECKPOINT, weights_only=True)
    model.load_state_dict(checkpoint["model"])
    return int(checkpoint["epoch"])


def _fingerprint(model: BundleModel, config: TrainingConfig) -> dict[str, Any]:
    training = {name: value for name, value in asdict(config).items() if name not in {"epochs", "patience"}}
    return {"model": model.describe(), "training": training}


def _resume(
    run_dir: Path,
    fingerprint: dict[str, Any],
    model: BundleModel,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[TrainingOutcome, dict[str, torch.Tensor]]:
    checkpoint = torch.load(run_dir / LAST_CHECKPOINT, weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT or checkpoint["fingerprint"] != fingerprint:
        raise CheckpointMismatchError(
            f"{run_dir / LAST_CHECKPOINT} was written for {checkpoint.get('fingerprint')}, not {fingerprint}: "
            "use another run folder or delete this one"
        )
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    generator.set_state(checkpoint["generator"])
    outcome = _outcome_from_plain(checkpoint["outcome"])
    outcome.resumed_after_epoch = int(checkpoint["epoch"])
    best_state = (
        torch.load(run_dir / BEST_CHECKPOINT, weights_only=True)["model"]
        if (run_dir / BEST_CHECKPOINT).is_file()
        else _copy_state(model)
    )
    return outcome, best_state


def _copy_state(model: BundleModel) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    """Writes beside ``path`` and renames, so a crash never leaves a torn checkpoint."""
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _outcome_to_plain(outcome: TrainingOutcome) -> dict[str, Any]:
    plain = asdict(outcome)
    plain["history"] = [asdict(record) for record in outcome.history]
    return plain


def _outcome_from_plain(plain: dict[str, Any]) -> TrainingOutcome:
    history = [EpochRecord(**record) for record in plain["history"]]
    return TrainingOutcome(**{**plain, "history": history})
