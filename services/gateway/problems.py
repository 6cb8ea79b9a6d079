"""Every error answer is an RFC 9457 problem (``application/problem+json``), made here.

:func:`install_problem_handlers` maps project errors by their ``http_status``, request validation to
422, HTTP errors raised by routing (404, 405) to their status, and anything else to a generic 500
whose traceback is logged, never shown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.gateway.metrics import route_template
from services.gateway.schemas import Problem
from shared.errors import BundlewiseError, Unavailable

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
RETRY_AFTER_S = 5


def problem_response(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json answer; ``extensions`` are extra members (RFC 9457 section 3.2)."""
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    if extensions:
        body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def describe_request_errors(error: RequestValidationError) -> str:
    """One ``location: problem`` per invalid part, e.g. ``query.k: Input should be ... 100``."""
    parts = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem.get("loc", ())) or "request"
        parts.append(f"{location}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)


def _headers(request: Request, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``extra`` plus the request id, when the route set one (``request.state.request_id``)."""
    headers = dict(extra or {})
    request_id = getattr(request.state, "request_id", None)
    if isinstance(request_id, str):
        headers[REQUEST_ID_HEADER] = request_id
    return headers


async def _project_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BundlewiseError)
    status = exc.http_status
    extra = dict(getattr(exc, "headers", None) or {})
    if isinstance(exc, Unavailable):
        extra["Retry-After"] = str(RETRY_AFTER_S)
    if status >= 500:
        log.warning("%s %s answered %d: %s", request.method, route_template(request.scope), status, exc)
    return problem_response(status, str(exc) or HTTPStatus(status).phrase, headers=_headers(request, extra))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, describe_request_errors(exc), headers=_headers(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, str(exc.detail), headers=_headers(request, exc.headers))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, route_template(request.scope), exc_info=exc)
    return problem_response(500, "internal error", headers=_headers(request))


def install_problem_handlers(app: FastAPI) -> None:
    """Registers the handlers on ``app``; called once by ``create_app``."""
    app.add_exception_handler(BundlewiseError, _project_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for a problem answer."""
    return {"description": description, "model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}


def access_responses() -> dict[int | str, dict[str, Any]]:
    """The answers every key-protected route may give before it runs."""
    return {
        401: problem_doc("No API key, or not a valid one; `detail` says how to send one."),
        403: problem_doc("The API key lacks the scope this route needs; `detail` names it."),
        413: problem_doc("The body is larger than the gateway accepts."),
        429: problem_doc("The API key is over its rate limit; retry after Retry-After seconds."),
        503: problem_doc("A dependency is unavailable; retry after Retry-After seconds."),
    }
