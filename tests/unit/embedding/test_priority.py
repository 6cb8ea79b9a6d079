"""Lowering one thread's priority: the thread itself, by the setting, and never the rest of the process."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from services.embedding.priority import HANDLER_NICENESS, lower_this_threads_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="only Linux gives each thread its own priority")


def niceness_of_a_thread_that_lowered_itself(by: int | None = None) -> int:
    seen: list[int] = []

    def lower_then_look() -> None:
        if by is None:
            lower_this_threads_priority()
        else:
            lower_this_threads_priority(by)
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=lower_then_look)
    thread.start()
    thread.join()
    return seen[0]


def test_a_thread_lowers_its_own_priority_by_the_handler_niceness_and_no_other_threads() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)

    lowered = niceness_of_a_thread_that_lowered_itself()

    assert lowered == min(19, before + HANDLER_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_the_lowest_priority_is_the_limit() -> None:
    assert niceness_of_a_thread_that_lowered_itself(by=100) == 19
