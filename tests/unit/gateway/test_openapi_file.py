"""docs/openapi.json is the document the gateway serves: regenerate it when the API changes."""

from __future__ import annotations

from services.gateway.openapi_document import DEFAULT_PATH, openapi_document, render


def test_docs_openapi_json_is_current() -> None:
    assert DEFAULT_PATH.read_text() == render(openapi_document()), (
        "docs/openapi.json is stale: run `PYTHONPATH=.:shared/generated python -m services.gateway.openapi_document`"
    )
