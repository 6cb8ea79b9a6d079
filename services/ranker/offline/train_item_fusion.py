"""``python -m services.ranker.offline.train_item_fusion``: trains the embedding service's item fusion
on bundle co-occurrence, measures what it is worth, and writes the served artifact.

Data: the complete-the-bundle task's BundleRec_Amazon domains (electronic and clothing) and their
seeded 8:1:1 splits (:func:`split_bundles`). For each split seed, one fusion is trained on the
training bundles of both domains together (tune and test bundles never), then scored on each
domain's test queries, and on Steam's, which no fusion ever trains on. A query ranks every
candidate item by its mean cosine with the query's given items, in four spaces:

- ``text_frozen``: multilingual-e5 passage vectors of the items' documents, as the encoder gives them;
- ``fused_text``: the fusion of the text alone (every item as a cold item without an image);
- ``fused_text_card``: the fusion of text and the item's rendered product card (:mod:`product_cards`);
- ``card_frozen``: EfficientNet-Lite0 vectors of the cards alone.

The results file holds each space's mean and standard deviation over the seeds of Recall@K and
NDCG@K (K in 5, 10, 20) per domain, and paired bootstrap intervals for what the training adds
(``fused_text`` over ``text_frozen``) and what the cards add (``fused_text_card`` over ``fused_text``).

The served artifact (``--out``) is the seed-0 fusion: trained on the seed-0 training bundles only,
with its own test figures in its metadata. Training is single-threaded and seeded: the same command
on the same encoders writes the same bytes.

Example::

    nice -n 10 python -m services.ranker.offline.train_item_fusion --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from benchmarks.provenance import run_metadata
from services.embedding.device import DevicePlacement
from services.embedding.fusion import FusionMetadata, ItemFusion
from services.embedding.image_encoder import EfficientNetLiteImageEncoder
from services.embedding.settings import DEFAULT_FUSION_PATH
from services.ranker.offline.complete_bundles import load_domain
from services.ranker.offline.completion_data import CompletionBundle, CompletionDomain, CompletionSplit, split_bundles
from services.ranker.offline.completion_metrics import (
    COMPLETION_KS,
    DoubleArray,
    paired_bootstrap_relative_gain,
    per_query_metrics,
)
from services.ranker.offline.completion_scoring import mean_cosine
from services.ranker.offline.completion_text import CachedTextVectors, load_text_encoder, model_cache_root
from services.ranker.offline.item_fusion_training import FusionConfig, train_fusion
from services.ranker.offline.product_cards import CachedCardVectors
from shared.datasets import default_data_dir

log = logging.getLogger(__name__)

MODULE = "services.ranker.offline.train_item_fusion"
TRAIN_DOMAINS = ("electronic", "clothing")
EVAL_DOMAINS = ("electronic", "clothing", "steam")
SPACES = ("text_frozen", "fused_text", "fused_text_card", "card_frozen")
SERVED_SEED = 0
PROTOCOL = (
    "Complete-the-bundle splits of issue 5 (seeded 8:1:1 over bundles, one hidden item per test bundle, "
    "every titled item a candidate). Per split seed one fusion is trained on the training bundles of "
    "electronic and clothing together; every test query ranks all candidates by mean cosine with its given "
    "items in each space. Steam is never trained on. Recall@K and NDCG@K averaged over test bundles, then seeds."
)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DomainInputs:
    """One domain's items as the fusion sees them: text and card vectors, row ``i`` for item ``i``."""

    domain: CompletionDomain
    text: FloatArray
    card: FloatArray


def card_of(domain: CompletionDomain, item: int) -> tuple[str, str]:
    """What an item's card shows: its title and its coarse category."""
    return domain.titles[item], domain.categories[item]


def joint_training_bundles(splits: Sequence[CompletionSplit], sizes: Sequence[int]) -> list[CompletionBundle]:
    """The training bundles of several domains in one item numbering: domain ``d``'s items follow
    those of the domains before it."""
    bundles, offset = [], 0
    for split, size in zip(splits, sizes, strict=True):
        bundles += [
            CompletionBundle(b.bundle_id, tuple(offset + i for i in b.items), b.session, b.user, b.timestamp)
            for b in split.train_bundles
        ]
        offset += size
    return bundles


def space_vectors(fusion: ItemFusion, inputs: DomainInputs) -> dict[str, FloatArray]:
    return {
        "text_frozen": inputs.text,
        "fused_text": fusion.fuse(inputs.text),
        "fused_text_card": fusion.fuse(inputs.text, inputs.card),
        "card_frozen": inputs.card,
    }


def held_out_metrics(
    fusion: ItemFusion, inputs: DomainInputs, split: CompletionSplit
) -> dict[str, dict[str, DoubleArray]]:
    """Per space, the per-query Recall@K and NDCG@K of ``split``'s test queries."""
    return {
        space: per_query_metrics(mean_cosine(vectors, split.test), split.test)
        for space, vectors in space_vectors(fusion, inputs).items()
    }


def tune_recall(fusion: ItemFusion, domains: Sequence[DomainInputs], splits: Sequence[CompletionSplit]) -> float:
    """What the epoch is chosen by: tune Recall@10 of the fused text and of the fused text and card,
    averaged over both and over the training domains (the test queries are never looked at)."""
    recalls = []
    for inputs, split in zip(domains, splits, strict=True):
        for vectors in (fusion.fuse(inputs.text), fusion.fuse(inputs.text, inputs.card)):
            recalls.append(float(per_query_metrics(mean_cosine(vectors, split.tune), split.tune)["recall@10"].mean()))
    return float(np.mean(recalls))


def summarize(per_seed: Sequence[dict[str, dict[str, DoubleArray]]], resamples: int) -> dict[str, Any]:
    """A domain's entry: each space's mean (and std over seeds) of every metric, and the two gains."""
    spaces: dict[str, Any] = {}
    for space in SPACES:
        figures: dict[str, float | None] = {}
        for metric in per_seed[0][space]:
            values = [float(seed[space][metric].mean()) for seed in per_seed]
            figures[metric] = statistics.fmean(values)
            figures[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        spaces[space] = figures

    def gain(main: str, baseline: str) -> dict[str, float]:
        return paired_bootstrap_relative_gain(
            [seed[main]["recall@10"] for seed in per_seed],
            [seed[baseline]["recall@10"] for seed in per_seed],
            resamples=resamples,
        )

    return {
        "spaces": spaces,
        "training_gain_recall@10": gain("fused_text", "text_frozen"),
        "card_gain_recall@10": gain("fused_text_card", "fused_text"),
        "test_queries_per_seed": [int(seed["text_frozen"]["recall@10"].size) for seed in per_seed],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(1)
    started = time.monotonic()
    text_encoder = load_text_encoder(model_cache_root())
    if text_encoder.fallback is not None:
        log.error("%s; the served fusion must match the service's default text encoder", text_encoder.fallback)
        return 2
    image_encoder = EfficientNetLiteImageEncoder.from_package(DevicePlacement(torch.device("cpu"), torch.float32))
    texts = CachedTextVectors(text_encoder.encoder, args.cache_dir)
    cards = CachedCardVectors(image_encoder, args.cache_dir)
    inputs: dict[str, DomainInputs] = {}
    for name in EVAL_DOMAINS:
        domain = load_domain(name, args.data_dir)
        item_cards = [card_of(domain, item) for item in range(domain.n_items)]
        inputs[name] = DomainInputs(domain, texts.vectors(domain.texts), cards.vectors(item_cards))
    config = FusionConfig(epochs=args.epochs)
    per_domain: dict[str, list[dict[str, dict[str, DoubleArray]]]] = {name: [] for name in EVAL_DOMAINS}
    losses: dict[int, list[float]] = {}
    selection: dict[int, dict[str, Any]] = {}
    served: ItemFusion | None = None
    for seed in args.seeds:
        splits = {name: split_bundles(inputs[name].domain, seed) for name in EVAL_DOMAINS}
        train = [inputs[name] for name in TRAIN_DOMAINS]
        metadata = FusionMetadata(
            text_model_version=text_encoder.encoder.version,
            image_model_version=image_encoder.version,
            training={
                "data": f"BundleRec_Amazon {' + '.join(TRAIN_DOMAINS)}: training bundles of split seed {seed}",
                "split_seed": seed,
                "config": asdict(config),
                "item_text": "title | category paths (up to 2)",
                "item_image": "rendered product card (title and category)",
            },
        )
        run = train_fusion(
            np.concatenate([i.text for i in train]),
            np.concatenate([i.card for i in train]),
            joint_training_bundles([splits[name] for name in TRAIN_DOMAINS], [i.domain.n_items for i in train]),
            config,
            seed,
            metadata,
            tune_score=partial(tune_recall, domains=train, splits=[splits[name] for name in TRAIN_DOMAINS]),
        )
        losses[seed] = run.losses
        selection[seed] = {"tune_recall@10_per_epoch": run.tune_scores, "chosen_epoch": run.chosen_epoch}
        for name in EVAL_DOMAINS:
            per_domain[name].append(held_out_metrics(run.fusion, inputs[name], splits[name]))
            log.info(
                "seed %d %s: test recall@10 %s",
                seed,
                name,
                " ".join(f"{space}={per_domain[name][-1][space]['recall@10'].mean():.4f}" for space in SPACES),
            )
        if seed == SERVED_SEED:
            served = run.fusion
    document: dict[str, Any] = {name: summarize(per_domain[name], args.resamples) for name in EVAL_DOMAINS}
    if served is not None:
        served_run = list(args.seeds).index(SERVED_SEED)
        recall = {
            name: {space: float(per_domain[name][served_run][space]["recall@10"].mean()) for space in SPACES}
            for name in EVAL_DOMAINS
        }
        metadata = replace(served.metadata, metrics={"test_recall@10_split_seed_0": recall})
        served = ItemFusion(served.text_down, served.text_up, served.image_down, served.image_up, metadata)
        document["served_artifact"] = {"path": str(args.out), "version": served.save(args.out), "seed": SERVED_SEED}
        log.info("wrote the served fusion %s to %s", served.version, args.out)
    document.update(
        seeds=list(args.seeds),
        ks=list(COMPLETION_KS),
        spaces=list(SPACES),
        train_domains=list(TRAIN_DOMAINS),
        protocol=PROTOCOL,
        encoders={"text": text_encoder.encoder.version, "image": image_encoder.version},
        config=asdict(config),
        epoch_selection={str(seed): chosen for seed, chosen in selection.items()},
        loss_first_last_epoch={
            str(seed): [run_losses[0], run_losses[-1]] for seed, run_losses in losses.items() if run_losses
        },
        minutes=(time.monotonic() - started) / 60.0,
        provenance=run_metadata(MODULE, list(argv) if argv is not None else None),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.output)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=FusionConfig.epochs)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--cache-dir", type=Path, default=Path("var/completion/text-vectors"))
    parser.add_argument("--out", type=Path, default=DEFAULT_FUSION_PATH, help="where the served fusion is written")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/item_fusion.json"))
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    return parser


if __name__ == "__main__":
    sys.exit(main())
