"""Fixtures: the fakes of gateway_fakes and a TestClient over an app built with them.

``client`` sends a key holding every scope, as a storefront would; tests of the checks themselves
use ``gateway`` and ``anonymous`` to choose the key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.unit.gateway.gateway_fakes import (
    TWO_BUNDLES,
    GatewayUnderTest,
    RecordingPublisher,
    ScriptedBundleSource,
    make_gateway,
)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def bundle_source() -> ScriptedBundleSource:
    return ScriptedBundleSource(recommendation=TWO_BUNDLES)


@pytest.fixture
def gateway(publisher: RecordingPublisher, bundle_source: ScriptedBundleSource) -> GatewayUnderTest:
    return make_gateway(publisher, bundle_source)


@pytest.fixture
def anonymous(gateway: GatewayUnderTest) -> Iterator[TestClient]:
    """A client that sends no key."""
    with TestClient(gateway.app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def client(gateway: GatewayUnderTest) -> Iterator[TestClient]:
    """A client whose every request carries a key with every scope."""
    key = gateway.keys.add()
    with TestClient(
        gateway.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}
    ) as test_client:
        yield test_client
