"""Ranker metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
