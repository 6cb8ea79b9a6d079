"""``python -m services.policy.ope``: off-policy evaluation of a candidate policy over logged impressions.

Reads bundle impressions and their clicks and purchases, either from a JSON-lines file of events
(``--events FILE``, one event of ``shared/events.py`` per line) or from a Kafka topic by replay
(``--topic T [--from TIME] [--to TIME]``: a plain reader with no group, as ``bundlewise replay``
reads, so nobody's offsets move). Outcomes are joined to their impressions by impression id within
``--window-s`` (:mod:`services.policy.join`), rewards weighted by ``--click-weight``,
``--purchase-weight`` and ``--revenue-weight``.

The candidate is the policy that ran in *shadow* beside the logging policy: for each impression, its
probability of putting each shown bundle at its position is logged in the impression's ``context``:

- ``shadow_policy``: the candidate's name and version, e.g. ``contextual_bandit:v12``;
- ``shadow_propensities``: comma-separated probabilities, one per shown position, in position order;
- optionally ``shadow_predictions`` (the candidate's reward model for each shown position, same
  layout) and ``shadow_value`` (that model's expected reward of the candidate's own list), which enable
  the doubly robust estimator.

Impressions without these entries (or for another ``--shadow-policy``) are left out and counted. The
report (JSON on stdout) holds, per estimator (:mod:`services.policy.ope_estimators`), the candidate's
estimated reward per impression with a 95% normal (CLT) interval, the logging policy's observed
reward with its interval, and the paired difference (candidate − logging) with its interval. The
pseudo-inverse factor is the slot-factorised one (exact for loggers that choose positions
independently, an approximation otherwise; the simulator checks the exact form).

Example::

    python -m services.policy.ope --events logged.jsonl --window-s 1800 --purchase-weight 5
    python -m services.policy.ope --topic bundlewise.events.v1 --from 2026-11-01T00:00:00Z --catalog amazon
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from services.policy.join import ImpressionJoin, JoinCounts, JoinedImpression, RewardWeights
from services.policy.ope_estimators import (
    Estimate,
    LoggedSlates,
    estimate_all,
    factorised_pi_weights,
    mean_estimate,
)
from shared.events import (
    SHADOW_POLICY_CONTEXT_KEY,
    SHADOW_PROPENSITIES_CONTEXT_KEY,
    BundleImpressionEvent,
    BundleOutcomeEvent,
    InvalidEvent,
    parse_event,
)
from shared.kafka_replay import make_reader, offset_ranges, parse_time, read_ranges
from shared.settings import KafkaSettings, load_settings

SHADOW_POLICY = SHADOW_POLICY_CONTEXT_KEY
SHADOW_PROPENSITIES = SHADOW_PROPENSITIES_CONTEXT_KEY
SHADOW_PREDICTIONS = "shadow_predictions"
SHADOW_VALUE = "shadow_value"


@dataclass(frozen=True)
class Selection:
    """Which impressions the evaluation keeps."""

    catalog_id: str | None = None
    shadow_policy: str | None = None


@dataclass
class EvaluationInput:
    data: LoggedSlates | None
    kept: int
    without_shadow: int
    counts: JoinCounts
    invalid_events: int


def _floats(text: str, size: int) -> list[float] | None:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        return None
    return values if len(values) == size else None


def logged_slates(
    impressions: Iterable[JoinedImpression], selection: Selection
) -> tuple[LoggedSlates | None, int, int]:
    """The estimators' input from joined impressions that carry the shadow candidate's propensities;
    returns it (None when no impression qualifies), how many were kept, and how many lacked them."""
    rows: list[tuple[JoinedImpression, list[float], list[float] | None, float | None]] = []
    skipped = 0
    for joined in impressions:
        if selection.catalog_id is not None and joined.catalog_id != selection.catalog_id:
            continue
        context = joined.context
        if selection.shadow_policy is not None and context.get(SHADOW_POLICY) != selection.shadow_policy:
            skipped += 1
            continue
        size = len(joined.shown)
        target = _floats(context.get(SHADOW_PROPENSITIES, ""), size)
        if target is None:
            skipped += 1
            continue
        predictions = _floats(context.get(SHADOW_PREDICTIONS, ""), size)
        model_value = _floats(context.get(SHADOW_VALUE, ""), 1)
        rows.append((joined, target, predictions, None if model_value is None else model_value[0]))
    if not rows:
        return None, 0, skipped
    n, k = len(rows), max(len(r[0].shown) for r in rows)
    rewards, logging_p, target_p = np.zeros((n, k)), np.ones((n, k)), np.zeros((n, k))
    shown = np.zeros((n, k), dtype=bool)
    predicted = np.zeros((n, k))
    model_values = np.zeros(n)
    with_model = all(r[2] is not None and r[3] is not None for r in rows)
    for i, (joined, target, predictions, value) in enumerate(rows):
        size = len(joined.shown)
        rewards[i, :size] = joined.rewards
        logging_p[i, :size] = [s.propensity for s in joined.shown]
        target_p[i, :size] = target
        shown[i, :size] = True
        if with_model and predictions is not None and value is not None:
            predicted[i, :size] = predictions
            model_values[i] = value
    data = LoggedSlates(rewards, logging_p, target_p, shown)
    data = LoggedSlates(
        rewards,
        logging_p,
        target_p,
        shown,
        pi_weights=factorised_pi_weights(data),
        predicted=predicted if with_model else None,
        target_model_value=model_values if with_model else None,
    )
    return data, n, skipped


def join_events(
    events: Iterable[BundleImpressionEvent | BundleOutcomeEvent], window: timedelta, weights: RewardWeights
) -> tuple[list[JoinedImpression], JoinCounts]:
    """Joins a finite set of events in event-time order (a replay reads partitions one after another,
    so arrival order says little); every impression is closed at the end."""
    join = ImpressionJoin(window, weights, allowed_lateness=window)
    joined: list[JoinedImpression] = []
    for event in sorted(events, key=lambda e: e.event_time):
        joined.extend(join.add(event).closed)
    joined.extend(join.flush())
    return joined, join.counts


def lift_over_logging(data: LoggedSlates) -> dict[str, Estimate]:
    """Candidate − logging per impression, paired, for the mean estimators (ips, pi, dr)."""
    logged = data.rewards.sum(axis=1)
    weights = data.weights()
    terms = {"ips": (data.rewards * weights).sum(axis=1)}
    if data.pi_weights is not None:
        terms["pi"] = logged * data.pi_weights
    if data.predicted is not None and data.target_model_value is not None:
        residuals = np.where(data.shown, data.rewards - data.predicted, 0.0)
        terms["dr"] = data.target_model_value + (weights * residuals).sum(axis=1)
    return {name: mean_estimate(name, values - logged) for name, values in terms.items()}


def report(data: LoggedSlates | None, kept: int, skipped: int, counts: JoinCounts, invalid: int) -> dict[str, Any]:
    """The JSON report of the module docstring."""
    result: dict[str, Any] = {
        "impressions_evaluated": kept,
        "impressions_without_shadow": skipped,
        "invalid_events": invalid,
        "join": vars(counts),
        "interval": "95% normal (CLT); self-normalised estimators by the delta method",
    }
    if data is None:
        result["estimates"] = {}
        return result
    estimates = estimate_all(data)
    result["logging"] = estimates.pop("logging").as_dict()
    result["estimates"] = {name: e.as_dict() for name, e in estimates.items()}
    result["difference_vs_logging"] = {name: e.as_dict() for name, e in lift_over_logging(data).items()}
    return result


def events_from_file(path: Path) -> tuple[list[BundleImpressionEvent | BundleOutcomeEvent], int]:
    """Bundle events of a JSON-lines file, and how many lines were not valid events."""
    return _bundle_events(line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _bundle_events(raw: Iterable[bytes]) -> tuple[list[BundleImpressionEvent | BundleOutcomeEvent], int]:
    events: list[BundleImpressionEvent | BundleOutcomeEvent] = []
    invalid = 0
    for value in raw:
        try:
            event = parse_event(value)
        except InvalidEvent:
            invalid += 1
            continue
        if isinstance(event, BundleImpressionEvent | BundleOutcomeEvent):
            events.append(event)
    return events, invalid


def events_from_kafka(
    bootstrap: str, topic: str, kafka_from: str | None, kafka_to: str | None
) -> tuple[list[BundleImpressionEvent | BundleOutcomeEvent], int]:
    """Bundle events of ``topic`` between two Kafka timestamps (ISO 8601), read by replay."""
    consumer = make_reader(bootstrap, "bundlewise-policy-ope")
    try:
        ranges = offset_ranges(
            consumer,
            topic,
            None if kafka_from is None else parse_time(kafka_from),
            None if kafka_to is None else parse_time(kafka_to),
        )

        def values() -> Iterator[bytes]:
            for chunk in read_ranges(consumer, ranges):
                for record in chunk:
                    yield record.value or b""

        return _bundle_events(values())
    finally:
        consumer.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.policy.ope", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=Path, help="JSON-lines file of events")
    source.add_argument("--topic", help="Kafka topic to read by replay ($BUNDLEWISE_KAFKA_BOOTSTRAP)")
    parser.add_argument("--from", dest="kafka_from", help="first Kafka timestamp (ISO 8601) of --topic")
    parser.add_argument("--to", dest="kafka_to", help="end Kafka timestamp (ISO 8601) of --topic")
    parser.add_argument("--catalog", help="evaluate this catalog only")
    parser.add_argument("--shadow-policy", help="only impressions whose shadow_policy is this")
    parser.add_argument("--window-s", type=float, default=1800.0, help="join window after an impression")
    parser.add_argument("--click-weight", type=float, default=1.0)
    parser.add_argument("--purchase-weight", type=float, default=0.0)
    parser.add_argument("--revenue-weight", type=float, default=0.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.events is not None:
        events, invalid = events_from_file(args.events)
    else:
        settings = load_settings(KafkaSettings)
        events, invalid = events_from_kafka(settings.kafka_bootstrap, args.topic, args.kafka_from, args.kafka_to)
    weights = RewardWeights(args.click_weight, args.purchase_weight, args.revenue_weight)
    joined, counts = join_events(events, timedelta(seconds=args.window_s), weights)
    data, kept, skipped = logged_slates(joined, Selection(args.catalog, args.shadow_policy))
    print(json.dumps(report(data, kept, skipped, counts, invalid), indent=2))
    return 0 if data is not None else 1


if __name__ == "__main__":
    sys.exit(main())
