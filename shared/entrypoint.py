"""What every service's ``__main__`` does first: read its settings once, then set up logging."""

from __future__ import annotations

import sys
from typing import TypeVar

from shared.log import configure_logging
from shared.settings import BaseServiceSettings, SettingsError, load_settings

ServiceSettingsT = TypeVar("ServiceSettingsT", bound=BaseServiceSettings)


def settings_and_logging(service: str, settings_class: type[ServiceSettingsT]) -> ServiceSettingsT:
    """Reads ``settings_class`` from the environment and configures JSON logging for ``service``.

    Exits the process with status 2 and a message naming every missing or invalid variable, before
    anything connects.
    """
    try:
        settings = load_settings(settings_class)
    except SettingsError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service, settings.log_level)
    return settings
