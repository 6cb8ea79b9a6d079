"""API-key storage on the real PostgreSQL, and the operator's `bin/bundlewise api-key` commands."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from scripts.local_stack import REPO_ROOT
from shared.settings import SettingsError
from shared.store.api_keys import (
    PEPPER_VARIABLE,
    Scope,
    UnknownScope,
    find_key,
    issue_key,
    key_digest,
    list_keys,
    pepper_from_environment,
    revoke_key,
)
from shared.store.migrate import make_engine, upgrade_to_head
from tests.integration.servers import POSTGRES_URL

PEPPER = "integration-pepper-0123456789"


@pytest.fixture
def keys_namespace() -> Iterator[tuple[str, Engine]]:
    name = f"gwkeys_{uuid.uuid4().hex[:8]}"
    upgrade_to_head(POSTGRES_URL, name)
    engine = make_engine(POSTGRES_URL, name, pool_size=1)
    try:
        yield name, engine
    finally:
        engine.dispose()
        with create_engine(POSTGRES_URL).begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def test_an_issued_key_is_found_by_its_hmac_under_the_same_pepper_only(keys_namespace: tuple[str, Engine]) -> None:
    _, engine = keys_namespace
    key = issue_key(engine, "storefront", [Scope.EVENTS_WRITE, Scope.RECOMMENDATIONS_READ], pepper=PEPPER)

    found = find_key(engine, key_digest(PEPPER, key))

    assert key.startswith("bwk_")
    assert found is not None
    assert (found.key_id, found.name, found.scopes, found.revoked) == (
        key.split("_")[1],
        "storefront",
        frozenset({"events:write", "recommendations:read"}),
        False,
    )
    assert find_key(engine, key_digest("another-pepper-0123456789", key)) is None


def test_a_revoked_key_is_listed_as_revoked_and_revoking_twice_reports_nothing_to_do(
    keys_namespace: tuple[str, Engine],
) -> None:
    _, engine = keys_namespace
    key = issue_key(engine, "old", [Scope.CATALOG_ADMIN], pepper=PEPPER, rate_per_s=5, burst=10)
    key_id = key.split("_")[1]

    assert revoke_key(engine, key_id) is True
    assert revoke_key(engine, key_id) is False
    [listed] = list_keys(engine)
    assert (listed.key_id, listed.revoked, listed.rate_per_s, listed.burst) == (key_id, True, 5.0, 10)


def test_unknown_scopes_and_a_missing_pepper_are_refused(
    keys_namespace: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, engine = keys_namespace
    monkeypatch.delenv(PEPPER_VARIABLE, raising=False)

    with pytest.raises(UnknownScope, match="unknown scope"):
        issue_key(engine, "x", ["admin:everything"], pepper=PEPPER)
    with pytest.raises(SettingsError, match=f"{PEPPER_VARIABLE} is not set"):
        pepper_from_environment()
    assert list_keys(engine) == []


def test_the_cli_creates_a_key_shown_once_lists_it_and_revokes_it(keys_namespace: tuple[str, Engine]) -> None:
    namespace, engine = keys_namespace
    env = {**os.environ, "BUNDLEWISE_POSTGRES_URL": POSTGRES_URL, "BUNDLEWISE_NAMESPACE": namespace}
    env[PEPPER_VARIABLE] = PEPPER

    def bundlewise(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(REPO_ROOT / "bin" / "bundlewise"), "api-key", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = bundlewise("create", "--name", "storefront", "--scope", "recommendations:read")
    key = created.stdout.strip()
    listed = bundlewise("list")
    revoked = bundlewise("revoke", key.split("_")[1])

    assert created.returncode == 0, created.stderr
    assert "shown only once" in created.stderr
    assert find_key(engine, key_digest(PEPPER, key)) is not None
    assert listed.stdout.startswith(f"{key.split('_')[1]}\tstorefront\trecommendations:read\t")
    assert key not in listed.stdout
    assert revoked.returncode == 0
    assert "revoked" in bundlewise("list").stdout.split("\t")[-1]
