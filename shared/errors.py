"""The project's error base: each error knows its gRPC code and HTTP status.

One gRPC interceptor (shared.grpc_server) and one FastAPI handler (the gateway) map these; anything
else becomes INTERNAL / 500 with a generic message and a logged traceback.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import grpc
import grpc.aio

log = logging.getLogger(__name__)


class BundlewiseError(Exception):
    """Base of every error that may cross a service boundary. The message is shown to callers."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500


class InvalidArgument(BundlewiseError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(BundlewiseError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class ResourceExhausted(BundlewiseError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(BundlewiseError):
    """A dependency is down or slow; the caller may retry later."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


_BY_GRPC_CODE: dict[grpc.StatusCode, type[BundlewiseError]] = {
    cls.grpc_code: cls for cls in (InvalidArgument, NotFound, ResourceExhausted, Unavailable)
}


def from_rpc_error(error: grpc.RpcError, service: str) -> BundlewiseError:
    """Turns a failed client call (sync or asyncio) into the matching project error.

    The server's reason is kept for the codes a caller can act on; an UNAVAILABLE reason names
    internal addresses, so it is logged for operators and not passed on.
    """
    has_status = isinstance(error, grpc.Call | grpc.aio.AioRpcError)
    code = error.code() if has_status else grpc.StatusCode.UNKNOWN
    details = error.details() if has_status else str(error)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"{service} did not answer in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        log.warning("%s unavailable: %s", service, details)
        return Unavailable(f"{service} is unavailable")
    return _BY_GRPC_CODE.get(code, BundlewiseError)(f"{service}: {details}")
