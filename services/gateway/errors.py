"""Errors only the HTTP edge raises; each is a project error, so the one problem handler maps it.

An error may carry response ``headers`` (``WWW-Authenticate``, ``Retry-After``); the handler sends them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import grpc

from shared.errors import BundlewiseError, InvalidArgument, ResourceExhausted, Unavailable


class MalformedJson(InvalidArgument):
    """The request body is not JSON at all (400)."""


class PayloadTooLarge(InvalidArgument):
    """The request body is larger than the gateway accepts (413)."""

    http_status = 413


class UnprocessableRequest(InvalidArgument):
    """The body is JSON but not of the documented shape (422)."""

    http_status = 422


class Unauthenticated(BundlewiseError):
    """No API key, or one the gateway does not know or that was revoked (401)."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="bundlewise"'}


class PermissionDenied(BundlewiseError):
    """A valid API key without the scope the route needs (403)."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class RateLimited(ResourceExhausted):
    """The key spent its token bucket (429); ``retry_after_s`` says when a request will pass."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class SearchNotReady(Unavailable):
    """The catalog's bundles are not embedded for search, not yet or not by the encoder running now (503)."""


class SearchNotConfigured(BundlewiseError):
    """Bundle search is not available behind this gateway (no ranker, or a ranker that cannot search) (501)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501
