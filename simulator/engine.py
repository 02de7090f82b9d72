"""A minimal discrete-event core: virtual time in integer nanoseconds, a heap of timed calls.

Ties break on a sequence number, so a run is a pure function of its inputs and seed. Nothing
here reads the wall clock. Cancelling is lazy: callers keep a generation counter and ignore
events whose generation is stale, which keeps the heap operations O(log n) and allocation-light.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

Handler = Callable[..., None]


class Engine:
    """Virtual clock plus event heap. ``after_event`` runs after every event (deferred work)."""

    __slots__ = ("_heap", "_seq", "after_event", "deferred", "now")

    def __init__(self) -> None:
        self.now = 0
        self._seq = 0
        self._heap: list[tuple[int, int, Handler, tuple[Any, ...]]] = []
        #: Called after an event whenever ``deferred`` is non-empty (work the event queued).
        self.after_event: Callable[[], None] | None = None
        self.deferred: list[Any] = []

    def at(self, time_ns: int, handler: Handler, *args: Any) -> None:
        """Call ``handler(*args)`` at virtual time ``time_ns`` (never in the past)."""
        self._seq += 1
        time_ns = max(time_ns, self.now)
        heapq.heappush(self._heap, (time_ns, self._seq, handler, args))

    def run_until(self, end_ns: int) -> None:
        """Process every event due at or before ``end_ns``, then set the clock to ``end_ns``."""
        heap = self._heap
        pop = heapq.heappop
        after = self.after_event
        deferred = self.deferred
        while heap and heap[0][0] <= end_ns:
            time_ns, _, handler, args = pop(heap)
            self.now = time_ns
            handler(*args)
            if deferred and after is not None:
                after()
        self.now = max(self.now, end_ns)
