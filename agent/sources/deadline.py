"""One wall-clock budget for the whole run, shared by every fetch, wait and retry."""

from __future__ import annotations

import time

DEFAULT_TIMEOUT = 60.0  # seconds for the whole run; the unit's TimeoutStartSec sits above it


class Deadline:
    """A monotonic point in time; ``remaining()`` never goes below zero."""

    def __init__(self, seconds: float = DEFAULT_TIMEOUT, *, clock=time.monotonic):
        self._clock = clock
        self.total = float(seconds)
        self._end = clock() + self.total

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def cap(self, seconds: float) -> float:
        """``seconds``, shortened to what is left of the budget."""
        return min(seconds, self.remaining())
