"""Fixtures: the fakes of gateway_fakes and a TestClient over an app built with them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from tests.unit.gateway.gateway_fakes import TWO_BUNDLES, RecordingPublisher, ScriptedBundleSource, make_settings


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def bundle_source() -> ScriptedBundleSource:
    return ScriptedBundleSource(recommendation=TWO_BUNDLES)


@pytest.fixture
def client(publisher: RecordingPublisher, bundle_source: ScriptedBundleSource) -> Iterator[TestClient]:
    app = create_app(make_settings(), publisher, bundle_source)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
