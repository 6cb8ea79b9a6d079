"""BUNDLEWISE_POLICY_KIND and the contextual bandit's settings: defaults, and refusals at start."""

from __future__ import annotations

import os

import pytest

from services.policy.contextual import BanditConfig
from services.policy.settings import PolicySettings
from shared.settings import SettingsError, load_settings
from tests.unit.policy.policy_testkit import KAFKA_BOOTSTRAP, POSTGRES_URL


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with only the settings the policy service requires."""
    for variable in [v for v in os.environ if v.startswith("BUNDLEWISE_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("BUNDLEWISE_POSTGRES_URL", POSTGRES_URL)
    monkeypatch.setenv("BUNDLEWISE_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP)
    monkeypatch.setenv("BUNDLEWISE_METRICS_PORT", "0")
    return monkeypatch


def test_the_default_kind_is_the_contextual_bandit_explored_by_the_epsilon_mixture(
    environment: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(PolicySettings)

    assert (settings.policy_kind, settings.policy_served_exploration) == ("contextual_bandit", "epsilon_mixture")
    assert settings.policy_epsilon == 0.05


def test_the_click_rates_kind_publishes_click_rates_explored_as_configured(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BUNDLEWISE_POLICY_KIND", "click_rates")
    environment.setenv("BUNDLEWISE_POLICY_EXPLORATION", "softmax")

    settings = load_settings(PolicySettings)

    assert (settings.policy_kind, settings.policy_served_exploration) == ("click_rates", "softmax")


def test_the_contextual_bandit_explores_by_the_epsilon_mixture_with_its_learning_settings(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("BUNDLEWISE_POLICY_KIND", "contextual_bandit")
    environment.setenv("BUNDLEWISE_POLICY_EPSILON", "0.1")
    environment.setenv("BUNDLEWISE_POLICY_BANDIT_POSITIONS", "4")

    settings = load_settings(PolicySettings)

    assert settings.policy_served_exploration == "epsilon_mixture"
    assert settings.policy_bandit_config == BanditConfig(slate_size=4, epsilon=0.1, ridge=1.0, bundle_ridge=5.0)
    assert settings.policy_bandit_max_step == 0.25


def test_more_exploration_than_the_bandit_allows_is_refused_at_start_naming_the_setting(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("BUNDLEWISE_POLICY_KIND", "contextual_bandit")
    environment.setenv("BUNDLEWISE_POLICY_EPSILON", "0.35")

    with pytest.raises(SettingsError, match=r"BUNDLEWISE_POLICY_EPSILON is invalid: .*less than or equal to 0\.3"):
        load_settings(PolicySettings)


def test_softmax_exploration_with_the_contextual_bandit_is_refused_at_start(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BUNDLEWISE_POLICY_KIND", "contextual_bandit")
    environment.setenv("BUNDLEWISE_POLICY_EXPLORATION", "softmax")

    with pytest.raises(SettingsError, match="contextual_bandit explores by epsilon_mixture only"):
        load_settings(PolicySettings)
