"""The policy service's settings, read once from ``BUNDLEWISE_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.policy.contextual import MAX_EPSILON, BanditConfig
from services.policy.domain import CONTEXTUAL_BANDIT, EPSILON_MIXTURE
from services.policy.join import RewardWeights
from shared.settings import BaseServiceSettings, KafkaSettings, PostgresSettings


class PolicySettings(BaseServiceSettings, PostgresSettings, KafkaSettings):
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535, description="HTTP port of /metrics.")
    policy_publish_every_s: float = Field(
        default=2.0, gt=0, description="Publish changed catalogs at least this often (seconds)."
    )
    policy_publish_every_outcomes: int = Field(
        default=1000, ge=1, description="... or as soon as this many bundle events were learned from."
    )
    policy_temperature: float = Field(default=0.1, ge=0, description="Ranker softmax temperature; 0 greedy.")
    policy_ctr_weight: float = Field(default=1.0, ge=0, description="Weight of E[click rate] in ranking.")
    policy_prior_alpha: float = Field(default=1.0, gt=0, description="Beta prior: pseudo-clicks.")
    policy_prior_beta: float = Field(default=20.0, gt=0, description="Beta prior: pseudo-non-clicks.")
    policy_max_arms: int = Field(default=100_000, ge=1, description="Bundles learned per catalog at most.")
    policy_dedup_window: int = Field(
        default=200_000,
        ge=1,
        description="Recent (impression, bundle) pairs, and recent outcome event ids, remembered to ignore "
        "repeated events.",
    )
    policy_click_weight: float = Field(
        default=1.0, ge=0, description="Reward of a click on a shown bundle (see policy_purchase_weight)."
    )
    policy_purchase_weight: float = Field(
        default=0.0,
        ge=0,
        description="Reward of a purchase of a shown bundle, added to its click's; a showing's reward is "
        "capped at 1 (one success of its Beta arm).",
    )
    policy_revenue_weight: float = Field(
        default=0.0, ge=0, description="Reward per unit of a purchase's revenue (the catalog's currency)."
    )
    policy_join_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="Outcomes are credited to their impression only this long after it (event time, seconds).",
    )
    policy_join_lateness_s: float = Field(
        default=1800.0,
        ge=0,
        description="How long after the latest event time an impression's window stays open for outcomes "
        "that arrive late (seconds); past it, they are orphans.",
    )
    policy_exploration: Literal["softmax", "epsilon_mixture"] = Field(
        default="softmax",
        description="How the ranker explores: softmax (conditional propensities) or epsilon_mixture (exact "
        "marginal propensities, what off-policy evaluation needs).",
    )
    policy_epsilon: float = Field(
        default=0.05,
        ge=0,
        le=MAX_EPSILON,
        description="Share of uniformly random lists under epsilon_mixture (at most 0.3, the contextual "
        "bandit's most exploration).",
    )
    policy_kind: Literal["click_rates", "contextual_bandit"] = Field(
        default="contextual_bandit",
        description="What the updater publishes: click_rates (each bundle's Beta click rate, added to the ranker's "
        "score) or contextual_bandit (also a bandit over the shopper's features of each candidate, which the "
        "ranker then serves with epsilon_mixture exploration; docs/policy.md).",
    )
    policy_bandit_ridge: float = Field(
        default=BanditConfig.ridge, gt=0, description="Contextual bandit: prior precision of the shared weights."
    )
    policy_bandit_bundle_ridge: float = Field(
        default=BanditConfig.bundle_ridge, gt=0, description="Contextual bandit: prior precision of each bundle's bias."
    )
    policy_bandit_positions: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Contextual bandit: how many positions of an impression are learned from (deeper ones are not).",
    )
    policy_bandit_max_step: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Guard rail: the share of the way from the approved bandit weights and biases to the learned "
        "ones that one refresh may move.",
    )
    policy_max_rate_change: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Guard rail: how far one refresh may move any bundle's expected click rate.",
    )
    stall_after_s: float = Field(
        default=30.0,
        ge=5,
        le=3600,
        description="The updater's Kafka consumer, out of its group or not consuming while events wait this "
        "long, is replaced.",
    )

    @model_validator(mode="after")
    def _some_reward(self) -> PolicySettings:
        if self.policy_click_weight + self.policy_purchase_weight + self.policy_revenue_weight <= 0:
            raise ValueError(
                "the policy learns nothing with every reward weight at 0: set BUNDLEWISE_POLICY_CLICK_WEIGHT, "
                "BUNDLEWISE_POLICY_PURCHASE_WEIGHT or BUNDLEWISE_POLICY_REVENUE_WEIGHT above 0"
            )
        return self

    @model_validator(mode="after")
    def _bandit_explores_by_epsilon_mixture(self) -> PolicySettings:
        if (
            self.policy_kind == CONTEXTUAL_BANDIT
            and "policy_exploration" in self.model_fields_set
            and self.policy_exploration != EPSILON_MIXTURE
        ):
            raise ValueError(
                "BUNDLEWISE_POLICY_KIND=contextual_bandit explores by epsilon_mixture only: unset "
                "BUNDLEWISE_POLICY_EXPLORATION or set it to epsilon_mixture (BUNDLEWISE_POLICY_EPSILON is the share "
                "of random lists)"
            )
        return self

    @property
    def policy_served_exploration(self) -> str:
        """How the published policies explore: epsilon_mixture for a contextual bandit, else the setting."""
        return EPSILON_MIXTURE if self.policy_kind == CONTEXTUAL_BANDIT else self.policy_exploration

    @property
    def policy_bandit_config(self) -> BanditConfig:
        """The contextual bandit's learning settings (its ``alpha`` is not served)."""
        return BanditConfig(
            slate_size=self.policy_bandit_positions,
            epsilon=self.policy_epsilon,
            ridge=self.policy_bandit_ridge,
            bundle_ridge=self.policy_bandit_bundle_ridge,
        )

    @property
    def policy_reward_weights(self) -> RewardWeights:
        """The reward weights above, as the join takes them."""
        return RewardWeights(self.policy_click_weight, self.policy_purchase_weight, self.policy_revenue_weight)
