"""Polling helpers: the system is asynchronous (Kafka in the middle), so tests wait for effects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T], until: Callable[[T], bool], timeout_s: float = 30.0, what: str = "") -> T:
    """Calls ``probe`` until ``until(value)`` holds; returns that value or fails with the last one."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or 'condition'}; last: {value!r}")
        time.sleep(0.2)
        value = probe()
    return value
