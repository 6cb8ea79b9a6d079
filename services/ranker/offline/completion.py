"""Complete-the-bundle evaluation of one domain over several split seeds: baselines and main method.

For each seed (:func:`evaluate_seed`): split the bundles (:func:`~.completion_data.split_bundles`),
build every signal from the training split only, choose each method's weights on the tune queries
by Recall@10, and score the test queries. Methods:

- ``popularity``: training-bundle counts;
- ``cooccurrence``: co-occurrence with the given items in training bundles plus ``session_weight``
  times in training sessions (the weight chosen on tune), popularity breaking ties;
- ``text_knn``: mean cosine of frozen title vectors (the baseline encoder) with the given items;
- ``cooc_text_mix``: scaled co-occurrence + λ · ``text_knn`` (λ chosen on tune);
- ``main``: the learned reranker of :mod:`~.completion_reranker`: a classifier trained on fold
  queries of the training bundles reorders a shortlist of the main encoder's cosine plus
  co-occurrence; nothing is chosen on tune;
- ``main_linear`` (ablation, the main method until the reranker): mean cosine of the frozen vectors
  of title + category text (the main encoder) plus, weighted, the same cosine over the **adapted**
  vectors (a :class:`~.completion_adapter.LowRankAdapter` trained on the training bundles; the
  weight 0 is in the grid, so tune may switch it off), scaled co-occurrence, scaled popularity,
  cosine with the owner's earlier training bundles and category transitions
  (:class:`~.completion_scoring.CategoryTransitions`), weights chosen on tune;
- ``main_frozen`` (ablation): ``main_linear`` with the adapter's weight fixed at 0, so frozen and
  adapted compare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.ranker.offline.completion_adapter import AdapterConfig, train_adapter
from services.ranker.offline.completion_data import CompletionDomain, CompletionQuery, split_bundles
from services.ranker.offline.completion_metrics import (
    BEYOND_K,
    DoubleArray,
    FloatArray,
    beyond_accuracy,
    per_query_metrics,
    top_items,
)
from services.ranker.offline.completion_reranker import Reranker, RerankerConfig, TrainingSignals, fold_examples
from services.ranker.offline.completion_scoring import (
    CategoryTransitions,
    CooccurrenceCounts,
    DomainVectors,
    fuse,
    mean_cosine,
    scaled_per_query,
    select_weights,
    with_popularity_tie_break,
)

SELECTION_METRIC = "recall@10"
BASELINES = ("popularity", "cooccurrence", "text_knn", "cooc_text_mix")
MAIN = "main"
LINEAR = "main_linear"
ABLATIONS = (LINEAR, "main_frozen")
SESSION_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
MIX_TEXT_WEIGHTS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)
MAIN_GRID: dict[str, tuple[float, ...]] = {
    "text": (1.0,),
    "adapted": (0.0, 0.5, 1.0, 2.0),
    "cooccurrence": (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
    "popularity": (0.0, 0.02, 0.05, 0.1),
    "history": (0.0, 0.3),
    "category": (0.0, 0.1, 0.3, 1.0),
}


@dataclass
class SeedResult:
    """One split seed: per-query test metrics and mean tune/test metrics of every method, the chosen
    weights, beyond-accuracy figures of the test top-20, the adapter's losses, split sizes, and the
    reranker's training queries and rows."""

    seed: int
    per_query: dict[str, dict[str, DoubleArray]] = field(default_factory=dict)
    tune: dict[str, dict[str, float]] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    beyond: dict[str, dict[str, float]] = field(default_factory=dict)
    adapter_losses: list[float] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    reranker: dict[str, int] = field(default_factory=dict)


class _Signals:
    """Every signal of one set of queries (tune or test), computed once."""

    def __init__(
        self,
        queries: Sequence[CompletionQuery],
        cooc: CooccurrenceCounts,
        category: CategoryTransitions,
        popularity: FloatArray,
        vectors: DomainVectors,
        adapted: FloatArray,
    ) -> None:
        self.queries = queries
        self.popularity = popularity
        self.cooc_bundles = cooc.scores(queries, session_weight=0.0)
        self.cooc_sessions = cooc.scores(queries, session_weight=1.0) - self.cooc_bundles
        self.category = category.scores(queries)
        self.title_text = mean_cosine(vectors.baseline_titles, queries)
        self.frozen_text = mean_cosine(vectors.main_texts, queries)
        self.adapted_text = mean_cosine(adapted, queries)
        self.frozen_history = mean_cosine(vectors.main_texts, queries, items="history")
        scaled_popularity = popularity / popularity.max() if popularity.max() > 0 else popularity
        self.scaled_popularity = np.broadcast_to(scaled_popularity, self.title_text.shape)

    def cooccurrence(self, session_weight: float) -> FloatArray:
        return self.cooc_bundles + session_weight * self.cooc_sessions

    def method_scores(self, method: str, weights: Mapping[str, float]) -> FloatArray:
        """Scores of ``method`` under ``weights`` (the names its grid uses)."""
        if method == "popularity":
            return np.broadcast_to(self.popularity, self.title_text.shape).astype(np.float32)
        if method == "text_knn":
            return self.title_text
        cooc = self.cooccurrence(weights.get("session_weight", 0.0))
        if method == "cooccurrence":
            return with_popularity_tie_break(cooc, self.popularity)
        if method == "cooc_text_mix":
            signals = {"cooccurrence": scaled_per_query(cooc), "text": self.title_text}
            mixed = fuse(signals, {"cooccurrence": 1.0, "text": weights["text"]})
            return with_popularity_tie_break(mixed, self.popularity)
        signals = {
            "text": self.frozen_text,
            "adapted": self.adapted_text,
            "cooccurrence": scaled_per_query(cooc),
            "popularity": self.scaled_popularity,
            "history": self.frozen_history,
            "category": self.category,
        }
        return fuse(signals, {name: weights[name] for name in MAIN_GRID})


def _mean(per_query: Mapping[str, DoubleArray]) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in per_query.items()}


def evaluate_seed(
    domain: CompletionDomain,
    vectors: DomainVectors,
    seed: int,
    adapter_config: AdapterConfig,
    drop_session_mates: bool = False,
    reranker_config: RerankerConfig | None = None,
) -> SeedResult:
    """Every method on the split of ``seed``: weights chosen on tune Recall@10 (the reranker learns
    from the training split alone), test figures reported.

    ``drop_session_mates``: see :func:`~.completion_data.split_bundles`.

    Raises:
        ValueError: the split has no tune or no test query.
    """
    split = split_bundles(domain, seed, drop_session_mates)
    if not split.tune or not split.test:
        raise ValueError(f"{domain.name}: seed {seed} gives no tune or no test query")
    signals = TrainingSignals.of(split.train_bundles, split.train_sessions, domain)
    popularity = signals.popularity
    run = train_adapter(vectors.main_texts, split.train_bundles, adapter_config, seed)
    tune = _Signals(split.tune, signals.cooccurrence, signals.category, popularity, vectors, run.vectors)
    test = _Signals(split.test, signals.cooccurrence, signals.category, popularity, vectors, run.vectors)

    def tune_value(method: str) -> Callable[[dict[str, float]], float]:
        def value(weights: dict[str, float]) -> float:
            return float(per_query_metrics(tune.method_scores(method, weights), split.tune)[SELECTION_METRIC].mean())

        return value

    session = select_weights({"session_weight": SESSION_WEIGHTS}, tune_value("cooccurrence"))
    session_weight = session.weights["session_weight"]
    grids: dict[str, dict[str, Sequence[float]]] = {
        "popularity": {},
        "cooccurrence": {"session_weight": SESSION_WEIGHTS},
        "text_knn": {},
        "cooc_text_mix": {"session_weight": (session_weight,), "text": MIX_TEXT_WEIGHTS},
        "main_frozen": {"session_weight": (session_weight,), **MAIN_GRID, "adapted": (0.0,)},
        LINEAR: {"session_weight": (session_weight,), **MAIN_GRID},
    }
    result = SeedResult(
        seed=seed,
        adapter_losses=run.losses,
        sizes={
            "train_bundles": len(split.train_bundles),
            "tune_bundles": len(split.tune),
            "test_bundles": len(split.test),
            "train_sessions": len(split.train_sessions),
            "left_out_sessions": split.left_out_sessions,
            "candidates": domain.n_items,
        },
    )
    scored: dict[str, tuple[dict[str, float], FloatArray, FloatArray]] = {}
    for method, grid in grids.items():
        weights = select_weights(grid, tune_value(method)).weights if grid else {}
        scored[method] = (weights, tune.method_scores(method, weights), test.method_scores(method, weights))
    reranker_config = reranker_config or RerankerConfig()
    examples = fold_examples(domain, split, vectors, session_weight, seed, reranker_config)
    reranker = Reranker(examples, seed, reranker_config)
    scored[MAIN] = (
        {"session_weight": session_weight},
        reranker.scores(split.tune, signals, vectors, session_weight),
        reranker.scores(split.test, signals, vectors, session_weight),
    )
    result.reranker = {"training_queries": examples.queries, "training_rows": int(examples.labels.size)}
    for method, (weights, tune_scores, test_scores) in scored.items():
        result.weights[method] = weights
        result.tune[method] = _mean(per_query_metrics(tune_scores, split.tune))
        result.per_query[method] = per_query_metrics(test_scores, split.test)
        result.test[method] = _mean(result.per_query[method])
        top = top_items(test_scores, split.test, BEYOND_K)
        result.beyond[method] = beyond_accuracy(top, vectors.baseline_titles, domain.categories, popularity)
    return result
