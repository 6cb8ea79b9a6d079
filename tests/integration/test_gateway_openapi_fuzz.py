"""A property-based fuzz of the gateway's own OpenAPI document (schemathesis) against the running
gateway, ranker and feature store: no request it describes may get a 5xx, an undocumented status, or
an answer that breaks the document's schema for it. Bounded: a few dozen examples per operation, run
in a namespace of its own (the fuzz writes catalogs and deletes shoppers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.isolated_pipeline import IsolatedPipeline, isolated_pipeline

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedPipeline]:
    services = ("featurestore", "policy", "ranker", "gateway")
    with isolated_pipeline("gwfuzz", tmp_path_factory.mktemp("gateway-fuzz-logs"), services) as pipeline:
        yield pipeline


def fuzz(operation: APIOperation[Any, Any, Any, Any], headers: dict[str, str]) -> str | None:
    """Fuzzes one operation; the first failure found, as text, or None."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case[Any]) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    try:
        check()
    except FailureGroup as failures:  # what schemathesis found, shrunk by hypothesis, with a curl to replay
        return f"{operation.label}: {failures}"
    return None


def test_no_documented_request_gets_a_5xx_or_an_answer_outside_the_document(fuzzed: IsolatedPipeline) -> None:
    document = schemathesis.openapi.from_url(f"{fuzzed.stack.gateway_url}/openapi.json")
    operations = []
    for result in document.get_all_operations():
        assert isinstance(result, Ok), f"the gateway's document does not load: {result.err()}"
        # Spoken search needs the speech model, which this stack does not run (its own tests cover it).
        if result.ok().label != "POST /v1/bundles/search/spoken":
            operations.append(result.ok())

    failures = [failure for operation in operations if (failure := fuzz(operation, fuzzed.stack.auth_headers()))]

    assert len(operations) >= 11
    assert failures == []
