"""The in-memory store: one process, no sharing. Right for a single-process threaded server and
for tests; multi-process servers need a shared store, or each worker shows only its own requests.

Example::

    store = MemoryStore()
    store.flush(aggregator.drain(), ProcessInfo())
    snapshot = store.read()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from wsgiprof.model import EndpointProfile
from wsgiprof.stores.base import ProcessInfo, Snapshot


class MemoryStore:
    """A :class:`~wsgiprof.stores.base.Store` that keeps the window in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.time()
        self._endpoints: dict[str, EndpointProfile] = {}
        self._processes: dict[str, ProcessInfo] = {}

    def flush(self, delta: Mapping[str, EndpointProfile], process: ProcessInfo) -> None:
        with self._lock:
            for name, profile in delta.items():
                current = self._endpoints.get(name)
                if current is None:
                    self._endpoints[name] = profile.copy()
                else:
                    current.merge(profile)
            self._processes[process.key] = process

    def read(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                window_start=self._start,
                window_end=time.time(),
                endpoints={name: profile.copy() for name, profile in self._endpoints.items()},
                processes=list(self._processes.values()),
            )

    def reset(self) -> float:
        with self._lock:
            self._start = time.time()
            self._endpoints = {}
            self._processes = {}
            return self._start

    def window_start(self) -> float:
        return self._start

    def close(self) -> None:
        """Nothing to release."""
