"""``python -m services.gateway``: serve the gateway's HTTP API until SIGTERM."""

from __future__ import annotations

import signal
import sys

import uvicorn

from services.gateway.settings import GatewaySettings
from services.gateway.wiring import build_app
from shared.entrypoint import settings_and_logging


def main() -> None:
    settings = settings_and_logging("gateway", GatewaySettings)
    unsafe = settings.unsafe_configuration()
    if unsafe is not None:
        print(f"gateway: {unsafe}", file=sys.stderr)
        raise SystemExit(2)
    # uvicorn re-raises the stop signal to the handler that was installed before it once it has shut
    # down; a no-op handler there lets a graceful stop end with exit status 0 like every service.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (bounded below), then runs
    # the lifespan shutdown. Its access log is off: it would log raw paths, which hold user ids.
    uvicorn.run(
        build_app(settings),
        host="0.0.0.0",
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
    )


if __name__ == "__main__":
    main()
