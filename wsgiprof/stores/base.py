"""The store protocol: where each process flushes its deltas and where every reader merges them.

A store holds one *window* of data at a time (from its start until ``reset``). Workers call
:meth:`Store.flush` with what they aggregated since their last flush; readers call
:meth:`Store.read` and get the sum over every process that flushed into the window.

A store also keeps *saved runs*: :meth:`Store.save_run` closes the current window under a label
(a load run: "baseline", "after the cache") as an immutable merged snapshot and starts a new
window, so two runs can be compared later (:mod:`wsgiprof.diff`), even after the application was
restarted with a change. And it keeps the most recent *request rows* of the window (one line per
profiled request, for ``requests.csv``), at most :data:`REQUEST_ROWS_PER_PROCESS` per process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsgiprof.model import EndpointProfile

_log = logging.getLogger("wsgiprof")


@dataclass(slots=True)
class ProcessInfo:
    """Readings of one worker process, sent with each flush."""

    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    threads: int | None = None
    last_seen: float = field(default_factory=time.time)
    profiler_on_seconds: float | None = None
    """Seconds a windowed engine (yappi) traced this process; None for other engines."""
    profiler_seconds: float | None = None
    """Seconds since that engine started in this process (the duty cycle's denominator)."""

    @property
    def key(self) -> str:
        return f"{self.host}:{self.pid}"


REQUEST_ROWS_PER_PROCESS = 10_000
"""Most request rows a store keeps per worker process and window (the newest win)."""

MAX_RUNS = 100
"""Most saved runs a store keeps per application; saving more is refused until some are deleted."""

MAX_LABEL_LENGTH = 100


class UnknownRunError(LookupError):
    """No saved run has this id (never saved, or deleted)."""


class RunLimitError(RuntimeError):
    """The store already holds :data:`MAX_RUNS` runs of this application."""


def check_label(label: str) -> str:
    """A run label, stripped; raises :class:`ValueError` for an empty or overlong label or one
    holding control characters (labels are shown in terminals and pages)."""
    text = label.strip()
    if not text:
        raise ValueError("a run label must not be empty")
    if len(text) > MAX_LABEL_LENGTH:
        raise ValueError(f"a run label has at most {MAX_LABEL_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("a run label must not hold control characters")
    return text


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a list of saved runs shows about one run: its id (opaque text, unique per store and
    application), its label, the window it covers, when it was saved and its totals.

    Example::

        info = store.save_run("baseline")
        print(info.id, info.label, info.requests, info.cpu_seconds)
    """

    id: str
    label: str
    window_start: float
    window_end: float
    saved_at: float
    endpoints: int
    requests: int
    sampled: int
    cpu_seconds: float

    @classmethod
    def of(cls, run_id: str, label: str, snapshot: Snapshot, saved_at: float) -> RunInfo:
        """The info of ``snapshot`` saved as run ``run_id``."""
        profiles = snapshot.endpoints.values()
        return cls(
            id=run_id,
            label=label,
            window_start=snapshot.window_start,
            window_end=snapshot.window_end,
            saved_at=saved_at,
            endpoints=len(snapshot.endpoints),
            requests=sum(p.requests for p in profiles),
            sampled=sum(p.sampled for p in profiles),
            cpu_seconds=sum(p.cpu for p in profiles),
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (the entries of ``GET /api/runs``)."""
        return {
            "id": self.id,
            "label": self.label,
            "window": {"start": self.window_start, "end": self.window_end},
            "saved_at": self.saved_at,
            "endpoints": self.endpoints,
            "requests": self.requests,
            "sampled": self.sampled,
            "cpu_seconds": round(self.cpu_seconds, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RunInfo:
        """The inverse of :meth:`to_dict`; raises :class:`ValueError` for a malformed entry."""
        try:
            window = data["window"]
            if not isinstance(window, Mapping):
                raise ValueError("window is not an object")
            return cls(
                id=str(data["id"]),
                label=str(data["label"]),
                window_start=_number(window["start"]),
                window_end=_number(window["end"]),
                saved_at=_number(data["saved_at"]),
                endpoints=int(_number(data["endpoints"])),
                requests=int(_number(data["requests"])),
                sampled=int(_number(data["sampled"])),
                cpu_seconds=_number(data["cpu_seconds"]),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a run entry: {exc!r}") from None


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise ValueError(f"not a number: {value!r}")


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One profiled request, as a line of ``requests.csv``: when it started (epoch seconds), its
    endpoint, HTTP status, thread CPU and wall milliseconds, and the worker that served it.

    Example::

        row = RequestRow(1764230400.25, "GET /report", 200, 41.5, 44.0, 4242, "web-1")
    """

    timestamp: float
    endpoint: str
    status: int
    cpu_ms: float
    wall_ms: float
    pid: int
    host: str

    def to_list(self) -> list[object]:
        """A compact JSON-ready form (the order of the fields)."""
        return [
            self.timestamp,
            self.endpoint,
            self.status,
            self.cpu_ms,
            self.wall_ms,
            self.pid,
            self.host,
        ]

    @classmethod
    def from_list(cls, values: Sequence[object]) -> RequestRow:
        """The inverse of :meth:`to_list`; raises :class:`ValueError` for a malformed row."""
        if len(values) != 7:
            raise ValueError(f"not a request row: {values!r}")
        timestamp, endpoint, status, cpu_ms, wall_ms, pid, host = values
        return cls(
            _number(timestamp),
            str(endpoint),
            int(_number(status)),
            _number(cpu_ms),
            _number(wall_ms),
            int(_number(pid)),
            str(host),
        )


@dataclass(slots=True)
class Snapshot:
    """Everything in a store's current window, merged over all processes."""

    window_start: float
    window_end: float
    endpoints: dict[str, EndpointProfile] = field(default_factory=dict)
    processes: list[ProcessInfo] = field(default_factory=list)
    lost_flushes: int = 0

    def merge_delta(self, delta: Mapping[str, EndpointProfile]) -> None:
        """Add a process's unflushed delta to this snapshot (a private copy)."""
        merge_into(self.endpoints, delta)


def merge_into(endpoints: dict[str, EndpointProfile], delta: Mapping[str, EndpointProfile]) -> None:
    """Add ``delta`` to ``endpoints`` by name; profiles of ``delta`` are copied, never shared."""
    for name, profile in delta.items():
        current = endpoints.get(name)
        if current is None:
            endpoints[name] = profile.copy()
        else:
            current.merge(profile)


class Store(Protocol):
    """Where aggregated deltas go, shared by all processes (and hosts) of one application."""

    def flush(self, delta: Mapping[str, EndpointProfile], process: ProcessInfo) -> None:
        """Add one process's delta to the current window. Must not raise for transient trouble
        (a lock, a lost connection); it counts the loss instead."""

    def read(self) -> Snapshot:
        """The current window merged over all processes. The caller owns the result."""

    def reset(self) -> float:
        """Start a new, empty window for every process; returns its start time."""

    def window_start(self) -> float:
        """Start time of the current window."""

    def close(self) -> None:
        """Release connections and files."""

    def save_run(self, label: str) -> RunInfo:
        """Close the current window as a saved run named ``label`` (an immutable merged
        snapshot) and start a new, empty window. Raises :class:`ValueError` for a bad label and
        :class:`RunLimitError` when :data:`MAX_RUNS` runs are saved already."""

    def list_runs(self) -> list[RunInfo]:
        """The saved runs of this application, oldest first."""

    def load_run(self, run_id: str) -> Snapshot:
        """The snapshot of a saved run; raises :class:`UnknownRunError` when there is none."""

    def delete_run(self, run_id: str) -> bool:
        """Forget a saved run; False when there was none with that id."""

    def flush_requests(self, rows: Sequence[RequestRow]) -> None:
        """Add one process's newest request rows to the current window, keeping at most
        :data:`REQUEST_ROWS_PER_PROCESS` per process. Never raises for transient trouble."""

    def read_requests(self) -> list[RequestRow]:
        """The request rows of the current window over every process, oldest first."""


def warn_once(lock: threading.Lock, warned: set[str], key: str, message: str, *args: Any) -> None:
    """Log a store failure the first time ``key`` fails in this process (``warned`` holds the keys
    already logged); later failures of the same kind are counted by the caller, not logged."""
    with lock:
        if key in warned:
            return
        warned.add(key)
    _log.warning(message + " (further such failures are not logged)", *args)
