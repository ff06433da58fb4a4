"""The store protocol: where each process flushes its deltas and where every reader merges them.

A store holds one *window* of data at a time (from its start until ``reset``). Workers call
:meth:`Store.flush` with what they aggregated since their last flush; readers call
:meth:`Store.read` and get the sum over every process that flushed into the window.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from wsgiprof.model import EndpointProfile


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
        for name, profile in delta.items():
            current = self.endpoints.get(name)
            if current is None:
                self.endpoints[name] = profile.copy()
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
