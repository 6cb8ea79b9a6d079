"""Ranker metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import metric_name

RECOMMENDATIONS = Counter(
    metric_name("ranker", "recommendations_total"),
    "Answers given, by whether the shopper had usable history (warm) or not (cold).",
    ["kind"],
)
POLICY_VERSION = Gauge(
    metric_name("ranker", "policy_version"),
    "Version of the policy most recently applied, per catalog (a small, fixed set).",
    ["catalog"],
)
SEARCHES = Counter(
    metric_name("ranker", "searches_total"),
    "Typed searches answered, by whether any live bundle matched (found) or none did (empty).",
    ["outcome"],
)
SHADOW_ANSWERS = Counter(
    metric_name("ranker", "shadow_answers_total"),
    "Answers a shadow candidate policy also scored, per catalog and candidate (name:version).",
    ["catalog", "policy"],
)
SHADOW_PROPENSITY = Histogram(
    metric_name("ranker", "shadow_propensity"),
    "The shadow candidate's probability of each bundle served at its position: near 0 the candidate "
    "rarely makes the served choices, so off-policy estimates of it rest on few impressions.",
    ["catalog"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
)
