"""``python -m services.ingestion``: consume events until SIGTERM, then finish the batch and stop."""

from __future__ import annotations

import logging
import signal
import sys

from services.ingestion.settings import IngestionSettings
from services.ingestion.wiring import build_loop
from shared.entrypoint import settings_and_logging
from shared.metrics import serve_metrics
from shared.store.migrate import upgrade_to_head


def main() -> int:
    settings = settings_and_logging("ingestion", IngestionSettings)
    upgrade_to_head(settings.postgres_url, settings.namespace)
    loop = build_loop(settings)
    port = serve_metrics(settings.metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    logging.getLogger(__name__).info(
        "consuming %s as group %s; metrics on :%d", settings.events_topic, settings.group_id(), port
    )
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
