"""``python -m services.gateway.openapi_document [PATH]``: writes the gateway's OpenAPI document.

The document is what a running gateway serves at ``/openapi.json`` with default settings; the copy
in ``docs/openapi.json`` is written by this command and a unit test checks it is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.gateway.settings import GatewaySettings
from services.gateway.wiring import build_app

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

# Placeholders: building the app connects to nothing, and only limits (defaults) reach the document.
_DOCUMENT_SETTINGS = {
    "kafka_bootstrap": "kafka.invalid:9092",
    "ranker_addr": "ranker.invalid:50053",
    "postgres_url": "postgresql+psycopg://docs@postgres.invalid/bundlewise",
    "redis_url": "redis://redis.invalid:6379/0",
    "api_key_pepper": "placeholder-pepper-for-the-document",
}


def openapi_document() -> dict[str, Any]:
    """The document of a gateway with default settings."""
    return build_app(GatewaySettings(**_DOCUMENT_SETTINGS)).openapi()  # type: ignore[arg-type]


def render(document: dict[str, Any]) -> str:
    """The file's text: sorted keys, two-space indent, a final newline (stable diffs)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render(openapi_document()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
