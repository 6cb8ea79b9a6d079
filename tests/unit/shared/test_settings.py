"""Settings fail fast, naming each variable to set."""

from __future__ import annotations

import pytest

from shared.settings import KafkaSettings, PostgresSettings, SettingsError, load_settings


class Both(PostgresSettings, KafkaSettings):
    pass


def test_missing_settings_are_named_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUNDLEWISE_POSTGRES_URL", raising=False)
    monkeypatch.delenv("BUNDLEWISE_KAFKA_BOOTSTRAP", raising=False)

    with pytest.raises(SettingsError) as caught:
        load_settings(Both)

    assert "BUNDLEWISE_POSTGRES_URL is not set" in str(caught.value)
    assert "BUNDLEWISE_KAFKA_BOOTSTRAP is not set" in str(caught.value)


def test_an_unusable_value_is_named_with_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_POSTGRES_URL", "mysql://nope")
    monkeypatch.setenv("BUNDLEWISE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")

    with pytest.raises(SettingsError, match="BUNDLEWISE_POSTGRES_URL is invalid"):
        load_settings(Both)


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLEWISE_POSTGRES_URL", "postgresql+psycopg://u:p@h/db")
    monkeypatch.setenv("BUNDLEWISE_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("BUNDLEWISE_EVENTS_PARTITIONS", "12")

    settings = load_settings(Both)

    assert (settings.namespace, settings.events_partitions, settings.kafka_bootstrap) == ("live", 12, "k:9092")
