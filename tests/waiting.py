"""Waiting in tests without betting on how fast this machine is.

wait_until(predicate): the one way a test waits for another thread (Qt tests use
qtbot.waitUntil, which also runs the event loop). The timeout is generous on purpose: it only
decides how long a broken build takes to fail, never whether a working one passes.

FakeClock: time that moves only when the test moves it. A source put on it (`clock.drive`)
stamps and paces its frames on the fake clock, and its timed waits end when the fake time
reaches them, so frame gaps, holds and give-ups are exact and "nothing happened for a second"
is a fact, not a nap. The producer thread stays real: `settle()` waits until it has done
everything the present moment asks of it and is waiting for the clock again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

WAIT_S = 10.0  # how long to wait for something that should happen "soon"
WAIT_MS = int(WAIT_S * 1000)  # the same for qtbot.waitUntil

T = TypeVar("T")


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S,
               interval: float = 0.005) -> bool:
    """Poll `predicate` until it holds or `timeout` s pass; its last answer, as a bool."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
    return True


def wait_value(produce: Callable[[], T | None], timeout: float = WAIT_S) -> T | None:
    """The first value other than None that `produce()` returns within `timeout` s, else None."""
    got: list[T | None] = [None]

    def ready() -> bool:
        got[0] = produce()
        return got[0] is not None

    wait_until(ready, timeout)
    return got[0]


class FakeClock:
    """A monotonic clock for one source's producer thread; see the module docstring."""

    def __init__(self, start: float = 100.0) -> None:
        self._now = float(start)
        self._cond = threading.Condition()
        self._epoch = 0  # bumped on every change a sleeper must look at (time moved, a wake)
        self._sleepers: dict[object, tuple[float, int]] = {}  # -> (deadline, epoch it saw)

    def __call__(self) -> float:
        with self._cond:
            return self._now

    def drive(self, source: Any) -> Any:
        """Put a FrameSource (a FileSource and its kin: their waits are on `_wake`) on this
        clock, before it starts; returns it."""
        source._clock = self
        source._wake = ClockedEvent(self)
        return source

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._changed()

    def settle(self, sleepers: int = 1, timeout: float = WAIT_S) -> None:
        """Wait until `sleepers` threads wait on this clock, each having seen the present
        moment: whatever is due now has been done."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._settled(sleepers), timeout):
                raise AssertionError(f"no thread settled on the fake clock in {timeout} s: "
                                     f"{len(self._sleepers)} waiting")

    def run(self, seconds: float, sleepers: int = 1) -> None:
        """Let `seconds` of fake time pass, stopping at every deadline on the way so each
        timed wait ends exactly when due and its thread acts on it before time moves on."""
        with self._cond:
            end = self._now + seconds
        while True:
            self.settle(sleepers)
            with self._cond:
                due = min(deadline for deadline, _ in self._sleepers.values())
                if due > end:
                    self._now = end
                    self._changed()
                    break
                self._now = max(self._now, due)
                self._changed()
        self.settle(sleepers)

    # --- for ClockedEvent ----------------------------------------------------------------------
    def _changed(self) -> None:
        self._epoch += 1
        self._cond.notify_all()

    def _poke(self) -> None:
        with self._cond:
            self._changed()

    def _settled(self, sleepers: int) -> bool:
        return len(self._sleepers) >= sleepers and all(
            seen == self._epoch for _, seen in self._sleepers.values())

    def _sleep(self, event: threading.Event, timeout: float) -> bool:
        with self._cond:
            deadline = self._now + max(0.0, timeout)
            if timeout > 0 and deadline <= self._now:  # too small to move a float this big
                deadline = math.nextafter(self._now, math.inf)
            me = object()
            try:
                while not event.is_set() and self._now < deadline:
                    self._sleepers[me] = (deadline, self._epoch)
                    self._cond.notify_all()  # a settle() may be waiting for this
                    self._cond.wait()
                return event.is_set()
            finally:
                self._sleepers.pop(me, None)
                self._cond.notify_all()


class ClockedEvent(threading.Event):
    """A threading.Event whose timed waits run on a FakeClock (untimed ones as usual)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def set(self) -> None:
        super().set()
        self._clock._poke()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        return self._clock._sleep(self, timeout)
