"""Policy benchmark: the contextual bandit in the Youshu simulator, off-policy evaluation against the
simulated truth, and the policy updater on the real Kafka and PostgreSQL.

``python -m benchmarks.policy`` (``make bench`` runs it) measures:

- ``reward_lift``: in the simulator (:mod:`services.policy.simulator`), the contextual bandit's
  expected clicks over ``impressions`` impressions relative to the non-adaptive ranker's, averaged over
  ``seeds`` shopper streams (0.10 = +10%). The ranker is MF-BPR trained on Youshu's training split
  (``--epochs`` epochs at lr 1e-2, best tune epoch; about 30 s on one thread); random and oracle lists
  and the regret to the oracle are reported beside it, and the bandit and the neural policy without
  their shopper-feedback features as ablations. Cumulative reward over the stream is drawn to
  ``docs/policy-cumulative-reward.svg``.
- ``neural_reward_lift``: the same for the neural policy (:mod:`services.policy.neural`), the deep
  option behind the same interface, on the same streams.
- ``ope_coverage``: the share of ``--ope-runs`` logged datasets (``--ope-impressions`` impressions each,
  the ranker explored with ε = 0.3) in which each estimator's 95% interval covers the exact value of a
  candidate policy, averaged over five candidates from near the logging policy to far from it; per
  candidate and estimator in ``details``, with mean and absolute errors.
- ``outcomes_per_s``: the policy service as wired for production (real PostgreSQL and Kafka, a topic of
  its own) learning from a backlog of bundle impressions and clicks: bundle events learned per second,
  from the first to the last, publishing along the way.
- ``refresh_lag_s``: with the service running at its default publish settings, the worst time from a
  click acknowledged by Kafka to a published policy version that counts it (``refresh_lag_p50_s``
  too), over ``--lag-samples`` clicks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kafka.admin import KafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy import text

from benchmarks.provenance import REPO_ROOT, run_metadata
from services.policy.contextual import BanditConfig
from services.policy.neural import NeuralConfig
from services.policy.settings import PolicySettings
from services.policy.simulator import (
    BanditPolicy,
    FloatArray,
    IntArray,
    LearningPolicy,
    NeuralPolicy,
    Run,
    ShopperModel,
    World,
    ope_coverage,
    simulate,
    standard_policies,
    youshu_world,
)
from services.policy.wiring import build_policy_service
from services.ranker.offline.data import youshu_data
from services.ranker.offline.evaluation import evaluate
from services.ranker.offline.models import MatrixFactorization, MatrixFactorizationConfig
from services.ranker.offline.training import TrainingConfig, train
from shared.datasets import default_data_dir, load_youshu
from shared.events import BundleImpressionEvent, BundleOutcomeEvent, ShownBundle, encode_event, partition_key
from shared.kafka import ensure_topics, make_producer
from shared.settings import KafkaSettings, PostgresSettings, load_settings
from shared.store.migrate import make_engine, upgrade_to_head

NAME = "policy"
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "policy.json"
PLOT_FILE = REPO_ROOT / "docs" / "policy-cumulative-reward.svg"
GOALS = {"reward_lift": 0.10, "ope_coverage": [0.9, 0.99], "refresh_lag_s": 10.0}
CATALOG = "bench"


class BenchSettings(PostgresSettings, KafkaSettings):
    """Where the servers are: the usual ``BUNDLEWISE_*`` variables (config/local.env)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.policy", description=__doc__.split("\n")[0])
    parser.add_argument("--impressions", type=int, default=100_000, help="simulated impressions per seed")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="impressions between two policy refreshes")
    parser.add_argument("--epochs", type=int, default=30, help="MF-BPR epochs (the ranker)")
    parser.add_argument("--ope-runs", type=int, default=100)
    parser.add_argument("--ope-impressions", type=int, default=5000)
    parser.add_argument("--kafka-impressions", type=int, default=100_000, help="impressions in the updater backlog")
    parser.add_argument("--lag-samples", type=int, default=10)
    parser.add_argument("--skip-servers", action="store_true", help="simulator and OPE only")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--plot", type=Path, default=PLOT_FILE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    world, ranker_quality = build_world(args.epochs)
    say(f"world: {world.n_users} shoppers, ranker test recall@20 {ranker_quality:.4f}")
    simulation, runs = simulate_policies(world, args.impressions, args.batch, args.seeds)
    say(
        f"lift over the ranker: bandit {simulation['reward_lift']:+.3f}, neural {simulation['neural_reward_lift']:+.3f}"
    )
    satiated = simulate_satiation(world, args.impressions, args.batch, args.seeds)
    say(
        f"with satiation 1: lift bandit {satiated['bandit_lift_over_ranker']:+.3f}, "
        f"neural {satiated['neural_lift_over_ranker']:+.3f}"
    )
    args.plot.write_text(cumulative_reward_svg(runs, args.batch))
    coverage = ope_coverage(world, runs=args.ope_runs, impressions=args.ope_impressions, seed=20171204)
    ope_mean = float(np.mean([c.coverage for c in coverage]))
    say(f"OPE coverage {ope_mean:.3f}")
    servers: dict[str, Any] = {}
    if not args.skip_servers:
        servers = measure_updater(load_settings(BenchSettings), args.kafka_impressions, args.lag_samples)
        say(f"updater {servers['outcomes_per_s']:.0f} events/s, refresh lag max {servers['refresh_lag_s']:.2f}s")
    results = {
        "benchmark": NAME,
        "impressions": args.impressions,
        "reward_lift": round(simulation["reward_lift"], 4),
        "neural_reward_lift": round(simulation["neural_reward_lift"], 4),
        "seeds": args.seeds,
        "ope_coverage": round(ope_mean, 4),
        "outcomes_per_s": servers.get("outcomes_per_s"),
        "refresh_lag_s": servers.get("refresh_lag_s"),
        "refresh_lag_p50_s": servers.get("refresh_lag_p50_s"),
        "goals": GOALS,
        "details": {
            "shopper_model": asdict(world.model),
            "bandit": asdict(BanditConfig()),
            "neural": asdict(NeuralConfig()),
            "ranker": {
                "model": "mf_bpr",
                "epochs": args.epochs,
                "learning_rate": 1e-2,
                "test_recall@20": ranker_quality,
            },
            "batch": args.batch,
            "simulation": simulation,
            "simulation_with_satiation": satiated,
            "ope": {
                "runs": args.ope_runs,
                "impressions": args.ope_impressions,
                "logging_policy": "ranker lists, epsilon 0.3",
                "interval": "95% normal (CLT); delta method for the self-normalised estimators",
                "by_target": [asdict(c) for c in coverage],
            },
            "updater": servers,
            "seconds": round(time.monotonic() - started, 1),
        },
        "run": run_metadata("benchmarks.policy", argv),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "details"}, indent=2), flush=True)
    return 0


def say(line: str) -> None:
    print(f"[bench policy {time.strftime('%H:%M:%S')}] {line}", flush=True)


# --- simulator ------------------------------------------------------------------------------------


def build_world(epochs: int) -> tuple[World, float]:
    """Youshu with MF-BPR (trained on the training split, best tune epoch) as the non-adaptive ranker."""
    data = youshu_data(load_youshu(default_data_dir()))
    torch.manual_seed(0)
    model = MatrixFactorization(data, MatrixFactorizationConfig(dim=64))
    train(model, data, TrainingConfig(epochs=epochs, learning_rate=1e-2, patience=10, seed=0))
    scorer = model.scorer()
    quality = evaluate(scorer, data.test).metrics["recall@20"]
    return youshu_world(data, scorer.score_users, ShopperModel()), quality


class _WithoutShopperFeedback(LearningPolicy):
    """The ablation: a learning policy blind to each shopper's own looks and clicks."""

    def _features(self, users: IntArray) -> FloatArray:
        features = super()._features(users)
        features[:, :, 4:] = 0.0
        return features


class _BanditWithoutShopperFeedback(_WithoutShopperFeedback, BanditPolicy):
    name = "bandit_without_shopper_feedback"


class _NeuralWithoutShopperFeedback(_WithoutShopperFeedback, NeuralPolicy):
    name = "neural_without_shopper_feedback"


def simulate_policies(world: World, impressions: int, batch: int, seeds: int) -> tuple[dict[str, Any], list[Run]]:
    """Every policy over ``seeds`` streams; the figures, and the runs of the first seed (for the plot)."""
    totals: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    first_runs: list[Run] = []
    for seed in range(seeds):
        policies = [
            *standard_policies(world, BanditConfig(), NeuralConfig()),
            _BanditWithoutShopperFeedback(world, BanditConfig()),
            _NeuralWithoutShopperFeedback(world, NeuralConfig()),
        ]
        for policy in policies:
            started = time.monotonic()
            run = simulate(world, policy, impressions, batch, seed)
            seconds.setdefault(run.policy, []).append(time.monotonic() - started)
            totals.setdefault(run.policy, []).append(run.total_expected)
            if seed == 0:
                first_runs.append(run)
        say(f"seed {seed}: " + ", ".join(f"{name} {values[-1] / impressions:.4f}" for name, values in totals.items()))
    ranker = np.array(totals["ranker"])
    oracle = np.array(totals["oracle"])
    lifts = np.array(totals["contextual_bandit"]) / ranker - 1.0
    neural_lifts = np.array(totals["neural"]) / ranker - 1.0
    per_policy = {
        name: {
            "clicks_per_impression": round(float(np.mean(values)) / impressions, 5),
            "lift_over_ranker": round(float(np.mean(np.array(values) / ranker - 1.0)), 4),
            "regret_to_oracle_per_impression": round(float(np.mean(oracle - np.array(values))) / impressions, 5),
            "seconds_per_run": round(float(np.mean(seconds[name])), 2),
        }
        for name, values in totals.items()
    }
    return {
        "reward_lift": float(lifts.mean()),
        "reward_lift_by_seed": [round(float(x), 4) for x in lifts],
        "reward_lift_std": float(lifts.std(ddof=1)) if seeds > 1 else 0.0,
        "neural_reward_lift": float(neural_lifts.mean()),
        "neural_reward_lift_by_seed": [round(float(x), 4) for x in neural_lifts],
        "neural_reward_lift_std": float(neural_lifts.std(ddof=1)) if seeds > 1 else 0.0,
        "neural_minus_bandit_by_seed": [round(float(x), 4) for x in neural_lifts - lifts],
        "policies": per_policy,
        "reward": "expected clicks of the shown lists (exact under the click model; lower noise than sampled clicks)",
    }, first_runs


def simulate_satiation(world: World, impressions: int, batch: int, seeds: int) -> dict[str, Any]:
    """The ranker, random lists, the bandit and the neural policy when a clicked bundle never draws a
    click again."""
    satiated = replace(world, model=replace(world.model, satiation=1.0))
    totals: dict[str, list[float]] = {}
    for seed in range(seeds):
        for policy in standard_policies(satiated, BanditConfig(), NeuralConfig()):
            if policy.name == "oracle":  # its fixed lists ignore satiation: not an upper bound here
                continue
            totals.setdefault(policy.name, []).append(
                simulate(satiated, policy, impressions, batch, seed).total_expected
            )
    ranker = np.array(totals["ranker"])
    return {
        "satiation": 1.0,
        "clicks_per_impression": {name: round(float(np.mean(v)) / impressions, 5) for name, v in totals.items()},
        "bandit_lift_over_ranker": round(float(np.mean(np.array(totals["contextual_bandit"]) / ranker - 1.0)), 4),
        "neural_lift_over_ranker": round(float(np.mean(np.array(totals["neural"]) / ranker - 1.0)), 4),
        "random_lift_over_ranker": round(float(np.mean(np.array(totals["random"]) / ranker - 1.0)), 4),
    }


def cumulative_reward_svg(runs: Sequence[Run], batch: int, width: int = 800, height: int = 420) -> str:
    """A line chart of cumulative expected clicks against impressions, one line per run (SVG text)."""
    colours = ["#1f77b4", "#7f7f7f", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b"]
    left, right, top, bottom = 70, 250, 30, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    series = [(run.policy, run.cumulative_expected()) for run in runs]
    x_max = max(len(values) for _, values in series) * batch
    y_max = max(float(values[-1]) for _, values in series) * 1.05

    def point(index: int, value: float) -> str:
        x = left + plot_w * ((index + 1) * batch) / x_max
        y = top + plot_h * (1 - value / y_max)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="14">Cumulative expected clicks, Youshu simulator (seed 0)</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
    ]
    for tick in range(6):
        x = left + plot_w * tick / 5
        y = top + plot_h * (1 - tick / 5)
        parts.append(f'<text x="{x:.0f}" y="{top + plot_h + 18}" text-anchor="middle">{x_max * tick / 5:,.0f}</text>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{y_max * tick / 5:,.0f}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eeeeee"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">impressions</text>')
    for index, (name, values) in enumerate(series):
        colour = colours[index % len(colours)]
        step = max(1, len(values) // 200)
        points = " ".join(point(i, float(v)) for i, v in enumerate(values) if i % step == 0 or i == len(values) - 1)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        y = top + 20 * index + 10
        parts.append(f'<line x1="{left + plot_w + 15}" y1="{y}" x2="{left + plot_w + 35}" y2="{y}" '
                     f'stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        parts.append(f'<text x="{left + plot_w + 40}" y="{y + 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --- the updater on the real servers ----------------------------------------------------------------


def _events(count: int, run_id: str, rng: np.random.Generator) -> list[BundleImpressionEvent | BundleOutcomeEvent]:
    """``count`` impressions of 5 of 500 bundles for 2,000 shoppers, each followed by a click on one
    shown bundle with probability 0.3."""
    moment = datetime.now(UTC)
    events: list[BundleImpressionEvent | BundleOutcomeEvent] = []
    for n in range(count):
        user = f"u{rng.integers(2000)}"
        bundles = [f"b{b}" for b in rng.choice(500, size=5, replace=False)]
        impression_id = f"{run_id}-i{n}"
        events.append(
            BundleImpressionEvent(
                type="bundle_impression",
                event_id=f"{run_id}-e{n}-imp",
                catalog_id=CATALOG,
                user_id=user,
                event_time=moment,
                impression_id=impression_id,
                bundles=[ShownBundle(bundle_id=b, position=i, propensity=0.2) for i, b in enumerate(bundles)],
            )
        )
        if rng.random() < 0.3:
            events.append(
                BundleOutcomeEvent(
                    type="bundle_click",
                    event_id=f"{run_id}-e{n}-click",
                    catalog_id=CATALOG,
                    user_id=user,
                    event_time=moment + timedelta(seconds=1),
                    bundle_id=bundles[int(rng.integers(5))],
                    impression_id=impression_id,
                )
            )
    return events


def _observed() -> float:
    return sum(
        REGISTRY.get_sample_value("bundlewise_policy_outcomes_total", {"kind": kind}) or 0.0
        for kind in ("impression", "click")
    )


def measure_updater(settings: BenchSettings, impressions: int, lag_samples: int) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    namespace = f"bench_policy_{run_id}"
    topic = f"bench-{run_id}.policy.v1"
    upgrade_to_head(settings.postgres_url, namespace)
    ensure_topics(settings.kafka_bootstrap, {topic: 6})
    producer = make_producer(settings.kafka_bootstrap, f"bench-policy-{run_id}")
    policy_settings = PolicySettings(
        postgres_url=settings.postgres_url,
        namespace=namespace,
        kafka_bootstrap=settings.kafka_bootstrap,
        events_topic=topic,
        metrics_port=0,
        log_level="WARNING",
    )
    service = None
    try:
        events = _events(impressions, run_id, np.random.default_rng(7))
        for event in events:
            producer.send(topic, value=encode_event(event), key=partition_key(event))
        producer.flush(timeout=120)
        clicks = sum(isinstance(e, BundleOutcomeEvent) for e in events)
        expected = _observed() + 5 * impressions + clicks
        say(f"produced {len(events)} bundle events")
        service = build_policy_service(policy_settings)
        before = _observed()
        service.updater.start()
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            seen = _observed()
            if first is None and seen > before:
                first = time.monotonic()
            if seen >= expected:
                last = time.monotonic()
                break
            time.sleep(0.01)
        if first is None or last is None:
            raise RuntimeError("the updater did not learn the backlog within 10 minutes")
        learned_s = max(last - first, 1e-3)
        lags = _refresh_lags(service.store, producer, topic, run_id, lag_samples)
        return {
            "outcomes_per_s": round(len(events) / learned_s),
            "refresh_lag_s": round(max(lags), 3),
            "refresh_lag_p50_s": round(float(np.median(lags)), 3),
            "backlog_events": len(events),
            "backlog_impressions": impressions,
            "backlog_clicks": clicks,
            "learn_s": round(learned_s, 2),
            "lags_s": [round(x, 3) for x in lags],
            "publish_every_s": policy_settings.policy_publish_every_s,
            "publish_every_outcomes": policy_settings.policy_publish_every_outcomes,
            "partitions": 6,
        }
    finally:
        if service is not None:
            service.close()
        producer.close()
        engine = make_engine(settings.postgres_url, namespace)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE'))
        engine.dispose()
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","), client_id="bench-policy")
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


def _refresh_lags(store: Any, producer: Any, topic: str, run_id: str, samples: int) -> list[float]:
    """Seconds from a click acknowledged by Kafka to the first published version that counts it."""
    rng = np.random.default_rng(11)
    lags = []
    for n in range(samples):
        time.sleep(float(rng.uniform(0.0, 2.0)))  # not in step with the publish timer
        bundle = f"lag-{n}"
        shown = _events(1, f"{run_id}-lag{n}", rng)[0]
        assert isinstance(shown, BundleImpressionEvent)
        shown = shown.model_copy(
            update={
                "bundles": [ShownBundle(bundle_id=bundle, position=0, propensity=1.0)],
                "event_time": datetime.now(UTC),
            }
        )
        clicked = BundleOutcomeEvent(
            type="bundle_click",
            event_id=f"{run_id}-lag{n}-click",
            catalog_id=CATALOG,
            user_id=shown.user_id,
            event_time=datetime.now(UTC),
            bundle_id=bundle,
            impression_id=shown.impression_id,
        )
        for event in (shown, clicked):
            producer.send(topic, value=encode_event(event), key=partition_key(event)).get(timeout=30)
        acknowledged = time.monotonic()
        while True:
            latest = store.latest(CATALOG)
            arms = {} if latest is None else {a.bundle_id: a for a in latest.params.arms}
            if bundle in arms and arms[bundle].clicks >= 1:
                lags.append(time.monotonic() - acknowledged)
                break
            if time.monotonic() - acknowledged > 120:
                raise RuntimeError(f"click {n} was not published within 120 s")
            time.sleep(0.02)
    return lags


# --- docs/benchmarks.md -----------------------------------------------------------------------------


def markdown(results: Mapping[str, Any]) -> str:
    """This benchmark's section of docs/benchmarks.md."""
    details, run, goal = results["details"], results["run"], results["goals"]
    simulation = details["simulation"]
    satiated = details["simulation_with_satiation"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    low, high = goal["ope_coverage"]
    lag = results.get("refresh_lag_s")
    rows = [
        ("reward_lift", f"{results['reward_lift']:+.3f} (± {simulation['reward_lift_std']:.3f} over seeds)",
         f"≥ {goal['reward_lift']}", verdict(results["reward_lift"] >= goal["reward_lift"])),
        ("neural_reward_lift", f"{results['neural_reward_lift']:+.3f} (± {simulation['neural_reward_lift_std']:.3f} "
         "over seeds)", "", ""),
        ("reward_lift, clicked bundles lose all appeal",
         f"bandit {satiated['bandit_lift_over_ranker']:+.3f}, neural {satiated['neural_lift_over_ranker']:+.3f} "
         f"(random lists {satiated['random_lift_over_ranker']:+.3f})", "", ""),
        ("ope_coverage", f"{results['ope_coverage']:.3f}", f"{low} to {high}",
         verdict(low <= results["ope_coverage"] <= high)),
        ("outcomes_per_s", "–" if results.get("outcomes_per_s") is None else f"{results['outcomes_per_s']:,}", "", ""),
        ("refresh_lag_s (max)", "–" if lag is None else f"{lag:.2f}", f"≤ {goal['refresh_lag_s']}",
         "" if lag is None else verdict(lag <= goal["refresh_lag_s"])),
    ]  # fmt: skip
    table = "\n".join(f"| `{name}` | {value} | {target} | {state} |" for name, value, target, state in rows)
    policies = "\n".join(
        f"| {name} | {p['clicks_per_impression']:.4f} | {p['lift_over_ranker']:+.3f} | "
        f"{p['regret_to_oracle_per_impression']:.4f} | {p['seconds_per_run']:.1f} |"
        for name, p in simulation["policies"].items()
    )
    machine = run["machine"]
    dirty = " (with uncommitted changes)" if run["dirty"] else ""
    return "\n".join(
        [
            "## Policy (`benchmarks/policy.py`)",
            "",
            f"Youshu simulator ({results['impressions']:,} impressions per seed, {results['seeds']} seeds, refresh "
            f"every {details['batch']} impressions; ranker MF-BPR, test recall@20 "
            f"{details['ranker']['test_recall@20']:.4f}); OPE over {details['ope']['runs']} logged datasets of "
            f"{details['ope']['impressions']:,} impressions; the updater on the real Kafka and PostgreSQL. "
            "Design and settings: `docs/policy.md`.",
            "",
            "| figure | measured | goal | |",
            "|---|---|---|---|",
            table,
            "",
            "| policy | expected clicks per impression | lift over the ranker | regret to the oracle per impression "
            "| seconds per run |",
            "|---|---:|---:|---:|---:|",
            policies,
            "",
            f"{machine['cpu_model']}, {machine['cores']} cores shared with other work (load average "
            f"{', '.join(map(str, machine['load_average_at_end']))} at the end); commit `{run['commit'][:12]}`{dirty}, "
            f"{run['date']}; `{run['command']}`. Figures in `benchmarks/results/policy.json`, plot in "
            "`docs/policy-cumulative-reward.svg`.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
