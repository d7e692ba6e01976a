"""Is any executor of the type alive? Asked of the server's executor list, cached briefly, so
a call to a type nobody serves is answered 503 at once instead of after maxwaittime."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Capacity:
    """``alive()``: executors seen alive (None: unknown, e.g. Colonies unreachable)."""

    def __init__(
        self,
        fetch: Callable[[], int] | None,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self.ttl, self._clock = fetch, ttl, clock
        self._lock = threading.Lock()
        self._value: int | None = None
        self._at = float("-inf")

    def alive(self, fresh: bool = False) -> int | None:
        if self._fetch is None:
            return None
        with self._lock:  # one lookup at a time; the others reuse its answer
            if fresh or self._clock() - self._at >= self.ttl:
                try:
                    self._value = self._fetch()
                except Exception:  # noqa: BLE001 - failing to ask means "unknown", not "none"
                    self._value = None
                self._at = self._clock()
            return self._value
