"""The flush thread: periodic flushes, a final flush on stop, failures counted, not raised."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from wsgiprof.flusher import Flusher


def test_flushes_periodically_once_started() -> None:
    calls: list[float] = []
    flusher = Flusher(lambda: calls.append(time.monotonic()), interval=0.02)
    time.sleep(0.06)
    assert calls == [], "nothing runs before the first request starts it"
    flusher.ensure_running()
    time.sleep(0.15)
    flusher.stop()
    assert len(calls) >= 4


def test_thread_is_named_and_started_once() -> None:
    flusher = Flusher(lambda: None, interval=10)
    flusher.ensure_running()
    flusher.ensure_running()
    names = [t.name for t in threading.enumerate() if t.name == "wsgiprof-flush"]
    flusher.stop()
    assert names == ["wsgiprof-flush"]
    assert not flusher.running


def test_stop_flushes_what_is_left() -> None:
    calls: list[int] = []
    flusher = Flusher(lambda: calls.append(1), interval=60)
    flusher.ensure_running()
    flusher.stop()
    assert calls == [1]


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
    flusher = Flusher(lambda: None, interval=0.01)
    assert not flusher.overdue()
    time.sleep(0.03)
    assert flusher.overdue()
    flusher.flush_now()
    assert not flusher.overdue()
