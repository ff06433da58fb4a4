"""The flush thread: periodic flushes, a final flush on stop, failures counted, not raised.

Time is driven, not slept through: the thread's wait is a :class:`SteppedWait` that the test
releases one interval at a time, and :meth:`Flusher.overdue` reads a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from wsgiprof.flusher import Flusher

#: Generous: only a broken flusher (or a frozen machine) takes this long to reach a state.
DEADLINE = 10.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.001)


def flush_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wsgiprof-flush"]


class SteppedWait:
    """A flusher's wait that ends only when the test calls :meth:`step` (one interval passed) or
    the flusher is stopping. ``requested`` records the seconds of every wait, in order."""

    def __init__(self) -> None:
        self.requested: list[float] = []
        self._steps = threading.Semaphore(0)

    def __call__(self, stopping: threading.Event, seconds: float) -> bool:
        self.requested.append(seconds)
        while not stopping.is_set():
            if self._steps.acquire(timeout=0.001):
                return False
        return True

    def step(self) -> None:
        self._steps.release()


def wait_for_waits(wait: SteppedWait, count: int) -> None:
    wait_until(lambda: len(wait.requested) == count, f"wait number {count} of the thread")


def test_flushes_once_per_interval_once_started() -> None:
    wait = SteppedWait()
    calls: list[int] = []
    flusher = Flusher(lambda: calls.append(1), interval=0.5, wait=wait)
    assert not flusher.running
    assert flush_threads() == [], "nothing runs before the first request starts it"
    assert wait.requested == []

    flusher.ensure_running()
    wait_for_waits(wait, 1)
    assert calls == [], "no flush before the first interval has passed"
    for n in range(1, 5):
        wait.step()
        # The thread waits again only after it flushed: a flush per interval, no more.
        wait_for_waits(wait, n + 1)
        assert len(calls) == n
    flusher.stop()

    assert len(calls) == 5, "four intervals, then the final flush of stop()"
    assert wait.requested == [0.5] * 5
    assert flush_threads() == []


def test_the_real_wait_flushes_on_its_own() -> None:
    calls: list[int] = []
    flusher = Flusher(lambda: calls.append(1), interval=0.01)
    flusher.ensure_running()
    try:
        wait_until(lambda: len(calls) >= 3, "three periodic flushes")
    finally:
        flusher.stop()
    assert flush_threads() == []


def test_thread_is_named_and_started_once() -> None:
    flusher = Flusher(lambda: None, interval=10)
    flusher.ensure_running()
    flusher.ensure_running()
    names = [t.name for t in flush_threads()]
    flusher.stop()
    assert names == ["wsgiprof-flush"]
    assert not flusher.running


def test_stop_wakes_the_thread_and_flushes_what_is_left() -> None:
    calls: list[int] = []
    flusher = Flusher(lambda: calls.append(1), interval=3600)
    flusher.ensure_running()
    (thread,) = flush_threads()
    flusher.stop(timeout=DEADLINE)
    assert not thread.is_alive(), "stop() ends the wait of a long interval at once"
    assert calls == [1]
    flusher.ensure_running()
    assert not flusher.running, "a stopped flusher does not start again"


def test_failing_flush_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("disk full")

    flusher = Flusher(broken, interval=60)
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        flusher.flush_now()
        flusher.flush_now()
    assert flusher.failures == 2
    assert len(caplog.records) == 1


def test_overdue_after_two_intervals_without_a_flush() -> None:
    now = [100.0]
    flusher = Flusher(lambda: None, interval=1.0, clock=lambda: now[0])
    assert not flusher.overdue()
    now[0] = 102.0
    assert not flusher.overdue(), "two intervals exactly are not overdue yet"
    now[0] = 102.001
    assert flusher.overdue()
    flusher.flush_now()
    assert not flusher.overdue()
    now[0] = 104.5
    assert flusher.overdue()


def test_a_failed_flush_also_restarts_the_overdue_clock() -> None:
    def broken() -> None:
        raise OSError("store unreachable")

    now = [0.0]
    flusher = Flusher(broken, interval=1.0, clock=lambda: now[0])
    now[0] = 5.0
    assert flusher.overdue()
    flusher.flush_now()
    assert not flusher.overdue(), "a failing store is retried every interval, not every request"
