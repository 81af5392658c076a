"""A one-slot mailbox: the newest item wins, nothing ever queues.

Used between a source's reader thread and its consumers, and between the GUI and the inference
worker, so a slow consumer always gets the newest frame and memory stays flat.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._seq = 0  # how many items were ever put
        self._taken_seq = 0
        self.replaced = 0  # items overwritten before anyone took them (dropped)
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None and self._taken_seq < self._seq:
                self.replaced += 1
            self._item = item
            self._seq += 1
            self._cond.notify_all()

    def peek(self) -> T | None:
        """Newest item, whether or not it was taken; never blocks."""
        with self._cond:
            return self._item

    def take(self, timeout: float | None = None) -> T | None:
        """Wait for an item not yet taken and return it; None on timeout or close."""
        with self._cond:
            ready = self._cond.wait_for(lambda: self._closed or self._taken_seq < self._seq,
                                        timeout)
            if not ready:
                return None
            if self._closed and self._taken_seq >= self._seq:
                return None
            self._taken_seq = self._seq
            return self._item

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def wait_newer(self, seq: int, timeout: float | None = None) -> tuple[int, T | None]:
        """Block until more than `seq` items were put (for readers that do not consume)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq > seq, timeout)
            return self._seq, self._item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
