"""The policy service's Prometheus metrics, declared once (the registry is process-global)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import metric_name


class OutcomeKind(StrEnum):
    """Labels of ``bundlewise_policy_outcomes_total``: what the updater did with what it read."""

    IMPRESSION = "impression"  # one bundle shown in one impression, counted
    CLICK = "click"  # one click credited to a shown bundle within the join window
    PURCHASE = "purchase"  # one purchase (and its revenue) credited to a shown bundle within the window
    DUPLICATE = "duplicate"  # an impression, or an outcome of an (impression, bundle), seen before
    UNATTRIBUTED = "unattributed"  # an outcome without an impression id: no showing to credit it to
    ORPHAN = "orphan"  # an outcome whose impression never came within the window, or had closed
    EXPIRED = "expired"  # an outcome whose event time is outside its impression's window
    UNMATCHED = "unmatched"  # an outcome for a bundle its impression did not show
    OVER_ARM_LIMIT = "over_arm_limit"  # a new bundle in a catalog already at policy_max_arms
    ALREADY_COUNTED = "already_counted"  # re-read below the positions of the catalog's latest snapshot
    REJOINED = "rejoined"  # re-read on start to rebuild the join window; already counted, not learned again
    INVALID = "invalid"  # failed shared.events.parse_event; the ingestion service dead-letters it
    OTHER = "other"  # a valid event of a type the policy does not learn from


OUTCOMES = Counter(
    metric_name("policy", "outcomes_total"),
    "Events and bundle observations read from Kafka by the policy updater, by what became of them.",
    ["kind"],
)
LATE_OUTCOMES = Counter(
    metric_name("policy", "late_outcomes_total"),
    "Outcomes credited although they arrived after an event later than themselves (within the join window "
    "of their impression); each is also counted as a click or purchase in bundlewise_policy_outcomes_total.",
)
# Catalog ids are a small, operator-controlled set, so they are acceptable as a label.
PUBLISHED_VERSION = Gauge(
    metric_name("policy", "published_version"),
    "Version of the latest policy snapshot this process published or loaded, by catalog.",
    ["catalog"],
)
PUBLISH_DURATION = Histogram(
    metric_name("policy", "publish_duration_seconds"),
    "Time to publish one catalog's policy snapshot to the store.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PUBLISH_FAILURES = Counter(
    metric_name("policy", "publish_failures_total"),
    "Snapshot publishes that failed because the store was unavailable (retried later).",
)
GROUP_MEMBER = Gauge(
    metric_name("policy", "group_member"),
    "1 once the updater's Kafka consumer has joined its group and holds its assignment; 0 while it joins "
    "or rebalances. The updater is learning when this is 1; serving policies does not depend on it.",
)
CONSUMER_REPLACEMENTS = Counter(
    metric_name("policy", "consumer_replacements_total"),
    "Kafka consumers of the updater replaced because they stalled: out of their group, or events waiting "
    "and none consumed.",
)
# By catalog: contextual_bandit only (BUNDLEWISE_POLICY_KIND); counted when the impression's window closes.
BANDIT_IMPRESSIONS = Counter(
    metric_name("policy", "bandit_impressions_total"),
    "Closed impressions the contextual bandit took, by catalog and what became of them: learned, or "
    "over_arm_limit (a shown bundle beyond BUNDLEWISE_POLICY_MAX_ARMS in the bandit; not learned from).",
    ["catalog", "kind"],
)
IMPRESSIONS_WITHOUT_FEATURES = Counter(
    metric_name("policy", "impressions_without_features_total"),
    "Closed impressions the contextual bandit could not learn from because a shown bundle carried no policy "
    "features (or not as many as it learns from), by catalog; the click rates still learn from them.",
    ["catalog"],
)
