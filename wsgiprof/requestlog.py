"""The per-process ring of recent profiled requests, the source of ``GET /api/requests.csv``.

Each profiled request adds one :class:`~wsgiprof.stores.base.RequestRow`; a flush drains the rows
added since the last one and hands them to the store with the process's delta. The ring holds at
most ``capacity`` rows, so a store that cannot be reached costs bounded memory: the oldest rows go.

Example::

    log = RequestLog()
    log.add(profiled_request)
    store.flush_requests(log.drain())
"""

from __future__ import annotations

import collections
import os
import socket
import threading

from wsgiprof.model import ProfiledRequest
from wsgiprof.stores.base import REQUEST_ROWS_PER_PROCESS, RequestRow

_HOST = socket.gethostname()


class RequestLog:
    """A thread-safe, bounded ring of request rows not yet flushed."""

    def __init__(self, capacity: int = REQUEST_ROWS_PER_PROCESS) -> None:
        self._lock = threading.Lock()
        self._rows: collections.deque[RequestRow] = collections.deque(maxlen=capacity)

    def add(self, request: ProfiledRequest) -> None:
        """Record one profiled request of this process."""
        row = RequestRow(
            timestamp=request.start,
            endpoint=request.endpoint,
            status=request.status,
            cpu_ms=round(request.cpu * 1000, 3),
            wall_ms=round(request.wall * 1000, 3),
            pid=os.getpid(),
            host=_HOST,
        )
        with self._lock:
            self._rows.append(row)

    def drain(self) -> list[RequestRow]:
        """The rows added since the last drain, oldest first; the ring is then empty."""
        with self._lock:
            rows = list(self._rows)
            self._rows.clear()
        return rows

    def peek(self) -> list[RequestRow]:
        """The rows not yet drained, leaving them in place."""
        with self._lock:
            return list(self._rows)

    def reset(self) -> None:
        """Forget every row (a new window)."""
        with self._lock:
            self._rows.clear()
