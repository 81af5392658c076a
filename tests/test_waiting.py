"""The test helpers that stand in for time (tests/waiting.py) do what the tests rely on."""

from __future__ import annotations

import threading

import pytest

from tests.waiting import ClockedEvent, FakeClock, wait_until, wait_value


def test_wait_until_says_whether_the_condition_came():
    assert wait_until(lambda: True, timeout=0.0)
    assert not wait_until(lambda: False, timeout=0.05)
    answers = iter([None, None, "ready"])
    assert wait_value(lambda: next(answers)) == "ready"


def test_a_timed_wait_on_the_fake_clock_ends_when_the_fake_time_is_due():
    clock = FakeClock(start=10.0)
    event = ClockedEvent(clock)
    woke: list[tuple[float, bool]] = []

    def sleeper() -> None:
        for timeout in (0.5, 0.25, 5.0):
            ended = event.wait(timeout)
            woke.append((clock(), ended))

    thread = threading.Thread(target=sleeper, daemon=True)
    thread.start()
    clock.settle()
    assert woke == []  # real time passes, fake time does not: it still waits
    clock.run(0.6)  # stops at 10.5, where the first wait ends, then goes on to 10.6
    assert woke == [(10.5, False)] and clock() == 10.6
    clock.run(0.2)
    assert woke == [(10.5, False), (10.75, False)]
    event.set()  # a wake ends a wait at once, without time passing
    thread.join(5.0)
    assert woke[-1] == (pytest.approx(10.8), True) and not thread.is_alive()
