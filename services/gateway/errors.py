"""Errors only the HTTP edge raises; each is a project error, so the one problem handler maps it."""

from __future__ import annotations

from shared.errors import InvalidArgument


class MalformedJson(InvalidArgument):
    """The request body is not JSON at all (400)."""


class PayloadTooLarge(InvalidArgument):
    """The request body is larger than the gateway accepts (413)."""

    http_status = 413


class UnprocessableRequest(InvalidArgument):
    """The body is JSON but not of the documented shape (422)."""

    http_status = 422
