"""Overall deadlines for HTTP transfers.

Socket timeouts bound only idle time: a server that sends one byte every few seconds keeps a
read alive forever. A ``Watchdog`` runs one thread for every transfer of a backend: a transfer
arms a deadline with the action that ends it (shutting its socket down, which wakes the blocked
read), and disarms it when it finishes. The transfer then asks ``Deadline.fired`` to tell a
deadline from any other short read.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Deadline:
    __slots__ = ("when", "action", "fired", "cancelled")

    def __init__(self, when: float, action: Callable[[], None]) -> None:
        self.when = when
        self.action = action
        self.fired = False
        self.cancelled = False


class Watchdog:
    """Fires ``action`` of each armed deadline once its monotonic time has passed, unless disarmed."""

    def __init__(self, name: str = "cas-deadlines") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, seconds: float, action: Callable[[], None]) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, action)
        with self._cond:
            heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return deadline

    def disarm(self, deadline: Deadline) -> None:
        with self._cond:
            deadline.cancelled = True  # left in the heap; skipped when its time comes

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._closed:
                    return
                deadline = heapq.heappop(self._heap)[2]
                deadline.fired = True
            try:
                deadline.action()
            except Exception:  # noqa: BLE001 - the transfer may have ended meanwhile
                pass
