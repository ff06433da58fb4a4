"""The engine protocol: how the middleware starts and stops profiling one request.

An engine is built once per process. ``start()`` runs on the request's thread just before the
application is called and returns an :class:`ActiveProfile`; ``stop()`` on that profile, on the same
thread, ends it and returns a :class:`Capture`. An engine that cannot profile this request (another
profiler already owns the thread) raises :class:`EngineUnavailableError`, and the request is served
unprofiled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from wsgiprof.model import Stack, Weight


class EngineUnavailableError(RuntimeError):
    """The engine cannot profile this request; the request goes on unprofiled."""


@dataclass(slots=True)
class Capture:
    """What an engine measured for one request: thread CPU seconds, wall seconds, weighted stacks.

    The CPU weights of ``stacks`` add up to ``cpu``; the wall weights to ``wall``.
    """

    cpu: float
    wall: float
    stacks: dict[Stack, Weight] = field(default_factory=dict)


class ActiveProfile(Protocol):
    """A profile in progress for one request on one thread."""

    def stop(self) -> Capture | None:
        """End profiling. Returns None when the result can't be trusted (stopped on another
        thread than the one that started it); the profiler is still released."""


class Engine(Protocol):
    """A profiling engine (pyinstrument, yappi)."""

    name: str

    def start(self) -> ActiveProfile:
        """Begin profiling the current thread for one request, or raise EngineUnavailableError."""

    def close(self) -> None:
        """Release process-wide resources (threads, hooks)."""
