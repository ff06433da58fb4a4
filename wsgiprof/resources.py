"""Process and host readings (CPU, memory, threads, load), taken with psutil.

CPU percent is measured over the current window (CPU seconds gained since the window started,
divided by the wall seconds elapsed), so it answers "how busy was this worker during the load run",
not "how busy is it this instant".

Example::

    monitor = ProcessMonitor()
    ...
    info = monitor.reading()      # ProcessInfo(pid=..., cpu_percent=96.0, rss_bytes=..., threads=8)
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from wsgiprof.stores.base import ProcessInfo


class ProcessMonitor:
    """Readings of the current process since the start of the window."""

    def __init__(self) -> None:
        self._pid = -1
        self._process: psutil.Process | None = None
        self.reset()

    def _current(self) -> psutil.Process:
        if self._process is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._process = psutil.Process(self._pid)
        return self._process

    def reset(self) -> None:
        """Start measuring CPU from now (a new window, or a freshly forked worker)."""
        times = self._current().cpu_times()
        self._cpu_start = times.user + times.system
        self._wall_start = time.monotonic()

    def reading(self) -> ProcessInfo:
        process = self._current()
        with process.oneshot():
            times = process.cpu_times()
            rss = process.memory_info().rss
            threads = process.num_threads()
        elapsed = time.monotonic() - self._wall_start
        used = times.user + times.system - self._cpu_start
        percent = 100.0 * used / elapsed if elapsed > 0 else 0.0
        return ProcessInfo(
            pid=self._pid, cpu_percent=round(percent, 1), rss_bytes=rss, threads=threads
        )


def host_reading() -> dict[str, Any]:
    """CPU use of the whole host since the previous call, load averages and core count."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load": [round(value, 2) for value in load],
        "cores": psutil.cpu_count() or 1,
        "memory_percent": psutil.virtual_memory().percent,
    }
