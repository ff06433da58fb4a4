"""The in-memory store: one process, no sharing. Right for a single-process threaded server and
for tests; multi-process servers need a shared store, or each worker shows only its own requests.

Example::

    store = MemoryStore()
    store.flush(aggregator.drain(), ProcessInfo())
    snapshot = store.read()
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping, Sequence

from wsgiprof.model import EndpointProfile
from wsgiprof.stores.base import (
    MAX_RUNS,
    REQUEST_ROWS_PER_PROCESS,
    ProcessInfo,
    RequestRow,
    RunInfo,
    RunLimitError,
    Snapshot,
    UnknownRunError,
    check_label,
    merge_into,
)
from wsgiprof.stores.runs import decode_run, encode_run


class MemoryStore:
    """A :class:`~wsgiprof.stores.base.Store` that keeps the window in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.time()
        self._endpoints: dict[str, EndpointProfile] = {}
        self._processes: dict[str, ProcessInfo] = {}

    def flush(self, delta: Mapping[str, EndpointProfile], process: ProcessInfo) -> None:
        with self._lock:
            merge_into(self._endpoints, delta)
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

    # -- saved runs and request rows (state created on first use) -----------------------------

    _extra: _RunsAndRows | None = None

    def _state(self) -> _RunsAndRows:
        with self._lock:
            if self._extra is None:
                self._extra = _RunsAndRows()
            return self._extra

    def save_run(self, label: str) -> RunInfo:
        """Close the current window as run ``label`` and start a new window."""
        label = check_label(label)
        state = self._state()
        with state.lock:
            if len(state.runs) >= MAX_RUNS:
                raise RunLimitError(f"{MAX_RUNS} runs are saved already; delete some first")
            snapshot = self.read()
            self.reset()
            state.next_id += 1
            info = RunInfo.of(str(state.next_id), label, snapshot, time.time())
            state.runs[info.id] = (info, encode_run(snapshot))
            state.rows.clear()
            return info

    def list_runs(self) -> list[RunInfo]:
        state = self._state()
        with state.lock:
            return [info for info, _ in state.runs.values()]

    def load_run(self, run_id: str) -> Snapshot:
        state = self._state()
        with state.lock:
            saved = state.runs.get(run_id)
        if saved is None:
            raise UnknownRunError(run_id)
        return decode_run(saved[1])

    def delete_run(self, run_id: str) -> bool:
        state = self._state()
        with state.lock:
            return state.runs.pop(run_id, None) is not None

    def flush_requests(self, rows: Sequence[RequestRow]) -> None:
        state = self._state()
        with state.lock:
            state.rows.extend(rows)

    def read_requests(self) -> list[RequestRow]:
        """Rows of requests that started in the current window (a reset leaves older rows in
        the ring; they are filtered out here)."""
        start = self._start
        state = self._state()
        with state.lock:
            rows = [row for row in state.rows if row.timestamp >= start]
        return sorted(rows, key=lambda row: row.timestamp)


class _RunsAndRows:
    """The saved runs (encoded like a shared store's) and the request rows of a MemoryStore."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, tuple[RunInfo, bytes]] = {}
        self.next_id = 0
        self.rows: collections.deque[RequestRow] = collections.deque(
            maxlen=REQUEST_ROWS_PER_PROCESS
        )
