"""The fault tests' servers: a private PostgreSQL, Redis and Kafka (see private_stack.py), up for the
whole session and removed at its end, so that stopping, pausing or flushing one never touches the
servers of `make up` that others share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.faults.private_stack import PrivateServers


@pytest.fixture(scope="session")
def private_servers() -> Iterator[PrivateServers]:
    servers = PrivateServers.allocate()
    try:
        servers.up()
        yield servers
    finally:
        try:
            servers.down()
        finally:
            servers.remove()
