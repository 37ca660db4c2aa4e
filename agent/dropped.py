"""Warnings about dropped items (SSH keys, attributes, key lines), summarised.

The platform decides how many items there are: 200,000 invalid key lines must not become
200,000 journal lines. The first ``SHOWN`` warnings are kept as they are (each names its item by
position or name, never its value), then one line says how many more were dropped.
"""

from __future__ import annotations

import logging
from typing import List

SHOWN = 5


class DroppedItems:
    """Collects the warnings for one kind of item; ``what`` names the kind in the summary line
    (``ssh keys`` → ``... and 7 more ssh keys dropped``)."""

    def __init__(self, what: str, shown: int = SHOWN):
        self.what = what
        self.shown = shown
        self.count = 0
        self._first: List[str] = []

    def add(self, warning: str) -> None:
        self.count += 1
        if len(self._first) < self.shown:
            self._first.append(warning)

    def lines(self) -> List[str]:
        """The first ``shown`` warnings, then the summary line when there were more."""
        more = self.count - len(self._first)
        return self._first + ([f"... and {more} more {self.what} dropped"] if more else [])

    def log(self, logger: logging.Logger) -> None:
        for line in self.lines():
            logger.warning("%s", line)
