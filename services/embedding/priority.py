"""Request handling that yields the CPU to the forward passes.

On the CPU, a forward pass runs on every core (torch's OpenMP threads), and each of its hundreds
of operations ends at a barrier that waits for the slowest thread. The gRPC handler threads
(protobuf, image decoding, tokenising) at the same priority preempt one of those threads at a time
and stall the whole pass. At a lower priority they fill the gaps between passes instead. Measured
on 2 cores with 8 clients sending 16 JPEGs per call, two services alternating 8 times against each
other in one run: the one with lower-priority handlers embedded a median 12% more images per
second, ahead in 7 of the 8 rounds (an earlier run of the same comparison: 25%, 7 of 8). Lowering
only the decoding, on a separate pool, gained nothing (the median ratio of the two was 1.005).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

HANDLER_NICENESS = 10
"""How far below the service's priority its gRPC handler threads run on the CPU (Linux nice
values; 19 is the lowest)."""


def lower_this_threads_priority(niceness: int = HANDLER_NICENESS) -> None:
    """Raises the calling thread's nice value by ``niceness`` (at most to 19) on Linux, where any
    process may lower its own threads' priority. Does nothing elsewhere, where this call would
    lower the whole process, or where the system refuses."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + niceness))
