"""``python -m services.ranker.offline.train_youshu``: train or fit one model on Youshu, select it on
tune, and write its tune and test metrics to ``<run dir>/result.json``.

Trained models checkpoint to the run folder after every epoch and resume from it when started
again with the same model and settings (``--epochs`` may grow). The run folder is ``--run-dir``, or
``$BUNDLEWISE_RUNS_DIR/youshu-<split>/<model>-seed<seed>`` (default ``var/runs``); the data folder
is ``--data-dir`` or ``$BUNDLEWISE_DATA_DIR``.

Examples::

    python -m services.ranker.offline.train_youshu --model popularity
    python -m services.ranker.offline.train_youshu --model crossview --epochs 100 --seed 0 --threads 1
    python -m services.ranker.offline.train_youshu --model mf_bpr --publish   # then rankers serve it

``--publish`` saves the trained model's vectors under ``$BUNDLEWISE_MODEL_DIR`` and records a new
version for the ``youshu`` catalog in PostgreSQL (``$BUNDLEWISE_POSTGRES_URL``, namespace
``$BUNDLEWISE_NAMESPACE``); every ranker then swaps to it within its refresh period.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import get_args

import torch
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from benchmarks.provenance import run_metadata
from services.ranker.offline.baselines import ItemScorer, ItemScorerConfig, PopularityScorer
from services.ranker.offline.beyond_accuracy import beyond_accuracy
from services.ranker.offline.data import BundleRecData, youshu_data
from services.ranker.offline.evaluation import EmbeddingScorer, RankingReport, evaluate
from services.ranker.offline.models import (
    BundleModel,
    CrossViewConfig,
    CrossViewModel,
    LightGCN,
    LightGCNConfig,
    MatrixFactorization,
    MatrixFactorizationConfig,
)
from services.ranker.offline.publish import publish_artifact, youshu_artifact
from services.ranker.offline.results import RunResult
from services.ranker.offline.training import SELECTION_METRIC, EpochRecord, TrainingConfig, TrainingOutcome, train
from shared.datasets import default_data_dir, load_youshu
from shared.datasets.youshu import YoushuSplitName
from shared.settings import ENV_PREFIX
from shared.store.migrate import make_engine

TRAINED_MODELS = ("mf_bpr", "lightgcn", "crossview")
POPULARITY_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""With ``--bundle-priors``, the weights of log(1 + training pairs of the bundle) tried on tune."""
NEW_BUNDLE_BOOSTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""With ``--bundle-priors``, the boosts of bundles without a training pair tried on tune."""
MEMBER_SEED_STRIDE = 1000
COLD_FIRST_BOOST = 1e4
"""Far above any score a trained model gives (one crossview member: -4.3 to 8.6 on Youshu)."""
"""Member ``m`` of seed ``s`` initialises and samples with seed ``s + 1000 m`` (member 0 is the single model)."""
FITTED_MODELS = ("popularity", "item_cooccurrence", "itemknn")

# The tune-selected grid of the item baselines: size normalisation and the weight of the items of
# the user's training bundles against the user's own items.
ITEM_GRID_SIZE_EXPONENTS = (0.0, 0.25, 0.5)
ITEM_GRID_BUNDLE_ITEM_WEIGHTS = (0.2, 1.0)
ITEMKNN_NEIGHBOURS = 50


class OfflineSettings(BaseSettings):
    """Where the datasets are read from and where run folders go (``BUNDLEWISE_*``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    runs_dir: Path = Path("var/runs")
    model_dir: Path = Path("var/models")
    postgres_url: str | None = None
    namespace: str = "live"


MODULE = "services.ranker.offline.train_youshu"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = OfflineSettings()
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or settings.data_dir
    run_dir = args.run_dir or settings.runs_dir / f"youshu-{args.split}" / f"{args.model}-seed{args.seed}"
    started = time.perf_counter()
    data = youshu_data(load_youshu(data_dir, args.split))
    _say(
        f"youshu/{args.split}: {data.n_users} users, {data.n_bundles} bundles, {data.n_items} items; "
        f"{data.train_pairs.shape[0]} train pairs; tune {data.tune.n_users} users, test {data.test.n_users} users "
        f"(loaded in {time.perf_counter() - started:.1f}s); run folder {run_dir}"
    )
    if args.publish and args.model not in TRAINED_MODELS:
        _say(f"--publish serves trained models ({', '.join(TRAINED_MODELS)}), not {args.model}")
        return 2
    if args.publish and settings.postgres_url is None:
        _say("--publish needs BUNDLEWISE_POSTGRES_URL: the model's version is recorded there")
        return 2
    result = _train_model(args, data, run_dir, settings) if args.model in TRAINED_MODELS else _fit_baseline(args, data)
    result = replace(result, provenance=run_metadata(MODULE, list(argv) if argv is not None else None))
    path = result.write(run_dir)
    _say(f"{args.model} seed {args.seed}: tune {_headline(result.tune)} | test {_headline(result.test)} -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.ranker.offline.train_youshu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, choices=TRAINED_MODELS + FITTED_MODELS)
    parser.add_argument(
        "--bundle-priors",
        action="store_true",
        help="after training, add w * log(1 + the bundle's training pairs) + a boost for bundles without any to "
        "scores, w and the boost chosen on tune",
    )
    parser.add_argument("--publish", action="store_true", help="serve the trained model (see the module help)")
    parser.add_argument("--split", default="standard", choices=get_args(YoushuSplitName))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="train this many copies from different seeds and score with the sum of their scores (default 1)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the cores are shared)")
    parser.add_argument("--run-dir", type=Path, help="checkpoints and result.json (default: see module help)")
    parser.add_argument("--data-dir", type=Path, help="folder holding Youshu/ (default $BUNDLEWISE_DATA_DIR)")
    training = TrainingConfig()
    parser.add_argument("--epochs", type=int, default=training.epochs)
    parser.add_argument("--patience", type=int, default=training.patience, help="0: train every epoch")
    parser.add_argument("--batch-size", type=int, default=training.batch_size)
    parser.add_argument("--lr", type=float, default=training.learning_rate)
    parser.add_argument("--l2", type=float, default=training.weight_decay, help="Adam weight decay")
    cross_view = CrossViewConfig()
    parser.add_argument("--dim", type=int, default=cross_view.dim)
    parser.add_argument("--layers", type=int, help="propagation layers (default: 1 crossview, 2 lightgcn)")
    parser.add_argument("--contrastive-weight", type=float, default=cross_view.contrastive_weight)
    parser.add_argument("--temperature", type=float, default=cross_view.temperature)
    parser.add_argument("--edge-dropout", type=float, help="default: 0.2 crossview, 0 lightgcn")
    parser.add_argument("--combination", choices=("mean", "normalized_sum"), help="how propagated layers combine")
    return parser


def build_model(args: argparse.Namespace, data: BundleRecData, init_seed: int) -> BundleModel:
    torch.manual_seed(init_seed)
    if args.model == "mf_bpr":
        return MatrixFactorization(data, MatrixFactorizationConfig(dim=args.dim))
    if args.model == "lightgcn":
        defaults = LightGCNConfig()
        return LightGCN(
            data,
            LightGCNConfig(
                dim=args.dim,
                layers=args.layers if args.layers is not None else defaults.layers,
                edge_dropout=args.edge_dropout if args.edge_dropout is not None else defaults.edge_dropout,
                combination=args.combination or defaults.combination,
            ),
        )
    defaults_cv = CrossViewConfig()
    return CrossViewModel(
        data,
        CrossViewConfig(
            dim=args.dim,
            layers=args.layers if args.layers is not None else defaults_cv.layers,
            contrastive_weight=args.contrastive_weight,
            temperature=args.temperature,
            edge_dropout=args.edge_dropout if args.edge_dropout is not None else defaults_cv.edge_dropout,
            combination=args.combination or defaults_cv.combination,
        ),
    )


def _train_model(args: argparse.Namespace, data: BundleRecData, run_dir: Path, settings: OfflineSettings) -> RunResult:
    """Trains ``args.members`` models (one per sub-folder ``member<m>`` when more than one), each
    selected on tune on its own, and scores with the sum of their scores."""
    if args.members < 1:
        raise SystemExit(f"--members must be at least 1, not {args.members}")
    config = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.l2,
        seed=args.seed,
        patience=args.patience,
    )

    def progress(record: EpochRecord) -> None:
        _say(
            f"epoch {record.epoch:3d}/{config.epochs}: loss {record.loss:.4f} (bpr {record.bpr:.4f}, "
            f"contrastive {record.contrastive:.4f}) | tune {_headline(record.tune)} | "
            f"{record.train_seconds:.1f}s train + {record.eval_seconds:.1f}s eval"
        )

    scorers: list[EmbeddingScorer] = []
    outcomes: list[TrainingOutcome] = []
    for member in range(args.members):
        member_seed = args.seed + MEMBER_SEED_STRIDE * member
        model = build_model(args, data, member_seed)
        member_dir = run_dir if args.members == 1 else run_dir / f"member{member}"
        if args.members > 1:
            _say(f"member {member + 1} of {args.members} (seed {member_seed}) in {member_dir}")
        outcome = train(model, data, replace(config, seed=member_seed), member_dir, progress, _tune_view(args, data))
        if outcome.resumed_after_epoch:
            _say(f"resumed after epoch {outcome.resumed_after_epoch} from {member_dir}")
        _say(f"best tune {SELECTION_METRIC} at epoch {outcome.best_epoch} of {outcome.epochs_trained}")
        scorers.append(model.scorer())
        outcomes.append(outcome)
    scorer = EmbeddingScorer.summed(scorers)
    selected: dict[str, object] = {}
    if args.bundle_priors:
        scorer, chosen = _with_bundle_priors(scorer, data)
        selected.update(chosen)
    tune = evaluate(scorer, data.tune)
    test = evaluate(scorer, data.test)
    test_metrics = {**test.metrics, **beyond_accuracy(scorer, data, data.test)}
    if args.members > 1 or args.bundle_priors:
        _say(f"final scorer {selected}: tune {tune.headline()} | test {test.headline()}")
    if args.publish:
        assert settings.postgres_url is not None
        engine = make_engine(settings.postgres_url, settings.namespace, pool_size=1)
        try:
            metrics = {f"test_{name}": value for name, value in test.metrics.items()}
            artifact = youshu_artifact(scorer, args.model, metrics)
            version, path = publish_artifact(artifact, settings.model_dir, engine)
        finally:
            engine.dispose()
        _say(f"published {args.model} as version {version} of catalog youshu: {path}")
    training = {name: value for name, value in asdict(config).items() if name != "seed"}
    return RunResult(
        dataset="youshu",
        split=args.split,
        model=args.model,
        seed=args.seed,
        hyperparameters={
            **model.describe(),
            "members": args.members,
            "bundle_priors": args.bundle_priors,
            **training,
        },
        tune=tune.metrics,
        test=test_metrics,
        seconds=sum(outcome.seconds for outcome in outcomes),
        threads=args.threads,
        device="cpu",
        best_epoch=max(outcome.best_epoch for outcome in outcomes),
        epochs_trained=min(outcome.epochs_trained for outcome in outcomes),
        epochs_planned=config.epochs,
        stopped_early=all(outcome.stopped_early for outcome in outcomes),
        history=[
            {"member": member, **asdict(record)}
            for member, outcome in enumerate(outcomes)
            for record in outcome.history
        ],
        selected_on_tune=selected,
    )


def _tune_view(args: argparse.Namespace, data: BundleRecData) -> Callable[[EmbeddingScorer], EmbeddingScorer] | None:
    """How epochs are selected on tune: as the model scores, except on the cold split with
    ``--bundle-priors``, where every tune positive is a bundle never trained on and raw scores rank
    all of those below the warm ones (selection would pick noise). There the new-bundle prior is at
    its limit: bundles without a training pair rank first, in the model's order. The boost served is
    still chosen on tune after training."""
    if not (args.bundle_priors and args.split == "cold"):
        return None
    new_first = (data.training_pairs_per_bundle() == 0).to(torch.float32) * COLD_FIRST_BOOST
    return lambda scorer: scorer.with_bundle_prior(new_first, 1.0)


def _with_bundle_priors(scorer: EmbeddingScorer, data: BundleRecData) -> tuple[EmbeddingScorer, dict[str, object]]:
    """The scorer plus ``w * log(1 + training pairs of the bundle) + boost * (bundle has none)``.

    ``w`` from ``POPULARITY_WEIGHTS`` and ``boost`` from ``NEW_BUNDLE_BOOSTS``, the pair with the best
    tune Recall@20 (a tie keeps the smaller values). The popularity term restores a prior that BPR
    with uniform negatives leaves out; the boost is how far a shop lifts new bundles, which the
    model cannot learn: no shopper has seen them.
    """
    popularity, new = data.popularity_prior(), (data.training_pairs_per_bundle() == 0).to(torch.float32)
    best: tuple[float, float, float] | None = None
    for weight, boost in itertools.product(POPULARITY_WEIGHTS, NEW_BUNDLE_BOOSTS):
        report = evaluate(scorer.with_bundle_prior(weight * popularity + boost * new, 1.0), data.tune)
        if best is None or report.metrics[SELECTION_METRIC] > best[2]:
            best = (weight, boost, report.metrics[SELECTION_METRIC])
            _say(f"bundle priors: popularity weight {weight}, new-bundle boost {boost}: tune {report.headline()}")
    assert best is not None
    weight, boost, _ = best
    chosen: dict[str, object] = {"popularity_weight": weight, "new_bundle_boost": boost}
    return scorer.with_bundle_prior(weight * popularity + boost * new, 1.0), chosen


def _fit_baseline(args: argparse.Namespace, data: BundleRecData) -> RunResult:
    """Fits the untrained baseline, choosing its settings on tune; ``seed`` only names the run."""
    started = time.perf_counter()
    history: list[dict[str, object]] = []
    if args.model == "popularity":
        scorer: PopularityScorer | ItemScorer = PopularityScorer(data)
        chosen: dict[str, object] = {"model": "popularity"}
        best_tune = evaluate(scorer, data.tune)
    else:
        neighbours = ITEMKNN_NEIGHBOURS if args.model == "itemknn" else 0
        best: tuple[RankingReport, ItemScorer] | None = None
        for exponent, weight in itertools.product(ITEM_GRID_SIZE_EXPONENTS, ITEM_GRID_BUNDLE_ITEM_WEIGHTS):
            config = ItemScorerConfig(neighbours=neighbours, size_exponent=exponent, bundle_item_weight=weight)
            candidate = ItemScorer(data, config)
            report = evaluate(candidate, data.tune)
            history.append({**asdict(config), "tune": report.metrics})
            _say(f"{args.model} {asdict(config)}: tune {report.headline()}")
            if best is None or report.metrics[SELECTION_METRIC] > best[0].metrics[SELECTION_METRIC]:
                best = (report, candidate)
        assert best is not None
        best_tune, scorer = best
        chosen = {"model": args.model, **asdict(best[1].config)}
    test = evaluate(scorer, data.test)
    return RunResult(
        dataset="youshu",
        split=args.split,
        model=args.model,
        seed=args.seed,
        hyperparameters=chosen,
        tune=best_tune.metrics,
        test={**test.metrics, **beyond_accuracy(scorer, data, data.test)},
        seconds=time.perf_counter() - started,
        threads=args.threads,
        device="cpu",
        history=history,
    )


def _headline(metrics: dict[str, float]) -> str:
    return f"recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f}"


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
