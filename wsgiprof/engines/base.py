"""The engine protocol: how the middleware starts and stops profiling one request.

An engine is built once per process. ``start()`` runs on the request's thread just before the
application is called and returns an :class:`ActiveProfile`; ``stop()`` on that profile, on the same
thread, ends it and returns a :class:`Capture`. An engine that cannot profile this request (another
profiler already owns the thread) raises :class:`EngineUnavailableError`, and the request is served
unprofiled.

A *deferred* engine (pyroscope) samples from outside the profiled code and learns which request a
sample belongs to from a frame at the root of its stack: its profiles implement
:class:`RootedProfile`, through whose :meth:`~RootedProfile.run` the middleware calls the
application and iterates its body. Its stacks arrive later, through the sink given to
:meth:`DeferredEngine.attach`, once the middleware has named the request's endpoint with
:meth:`DeferredEngine.resolve` (the capture's ``tag``).

A *windowed* engine (yappi) cannot profile one request alone: it traces every thread of the
process while a window is open. It implements :class:`WindowedEngine` on top: the middleware asks
:meth:`WindowedEngine.window_open` instead of its sampler, still calls ``start()``/``stop()``
around each request (measured CPU and wall, no stacks), names the request's endpoint with
:meth:`WindowedEngine.resolve`, and receives exact function data per endpoint through the sink
given to :meth:`WindowedEngine.attach` whenever the engine has read it (at each window's end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from wsgiprof.model import CallGraph, Stack, Weight
from wsgiprof.stores.base import ProcessInfo

T = TypeVar("T")


class EngineUnavailableError(RuntimeError):
    """The engine cannot profile this request; the request goes on unprofiled."""


@dataclass(slots=True)
class Capture:
    """What an engine measured for one request: thread CPU seconds, wall seconds, weighted stacks.

    The CPU weights of ``stacks`` add up to ``cpu``; the wall weights to ``wall``. A windowed
    engine returns no stacks, a deferred one only its time off CPU (its CPU stacks come later),
    and both a ``tag`` (non-zero) that identifies the request until the middleware names its
    endpoint with ``resolve``; ``cut`` says the request outlived the window it started in, so
    its exact data is partial.
    """

    cpu: float
    wall: float
    stacks: dict[Stack, Weight] = field(default_factory=dict)
    tag: int = 0
    cut: bool = False


class ActiveProfile(Protocol):
    """A profile in progress for one request on one thread."""

    def stop(self) -> Capture | None:
        """End profiling. Returns None when the result can't be trusted (stopped on another
        thread than the one that started it); the profiler is still released."""


@runtime_checkable
class RootedProfile(ActiveProfile, Protocol):
    """A profile that must see the application run under a frame of its own."""

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function(*args)`` under the profile's root frame and return its result."""


class Engine(Protocol):
    """A profiling engine (pyinstrument, yappi)."""

    name: str

    def start(self) -> ActiveProfile:
        """Begin profiling the current thread for one request, or raise EngineUnavailableError."""

    def close(self) -> None:
        """Release process-wide resources (threads, hooks)."""


CallGraphSink = Callable[[str, CallGraph], None]
"""Receives ``(endpoint name, call graph)`` from a windowed engine, on any thread."""

StackSink = Callable[[str, Mapping[Stack, Weight]], None]
"""Receives ``(endpoint name, CPU-weighted stacks)`` from a deferred engine, on any thread."""


@runtime_checkable
class DeferredEngine(Engine, Protocol):
    """An engine whose stacks arrive after the request (see the module docstring).

    Example::

        engine.attach(lambda endpoint, stacks: aggregator.add_stacks(endpoint, stacks))
        active = engine.start()
        body = active.run(app, environ, start_response)
        capture = active.stop()
        engine.resolve(capture.tag, "GET /users")
    """

    deferred: bool

    def resolve(self, tag: int, endpoint: str) -> None:
        """Name the endpoint of the request whose capture carried ``tag``."""

    def attach(self, sink: StackSink) -> None:
        """Deliver each named request's stacks to ``sink`` as they arrive."""


@dataclass(frozen=True, slots=True)
class WindowFacts:
    """What a windowed engine did in this process: seconds traced, seconds since it started,
    windows completed, requests profiled and the seconds spent reading stats."""

    on_seconds: float
    elapsed_seconds: float
    windows: int
    read_seconds: float


@runtime_checkable
class WindowedEngine(Engine, Protocol):
    """An engine that traces every thread during windows of time (see the module docstring).

    Example::

        engine.attach(lambda endpoint, graph: aggregator.add_call_graph(endpoint, graph))
        if engine.window_open():
            active = engine.start()
            ...
            capture = active.stop()
            engine.resolve(capture.tag, "GET /users")
    """

    windowed: bool

    def window_open(self) -> bool:
        """Whether a window is open now, so a request starting now is profiled. Cheap, any
        thread; the first call in a process starts the engine's scheduling (never before the
        first request, so never in a pre-fork master)."""

    def resolve(self, tag: int, endpoint: str) -> None:
        """Name the endpoint of the request whose capture carried ``tag``."""

    def attach(self, sink: CallGraphSink) -> None:
        """Deliver exact per-endpoint data to ``sink`` from now on."""

    def facts(self) -> WindowFacts:
        """Cumulative facts of this process, for the duty cycle shown in the summary."""


def window_summary(processes: Iterable[ProcessInfo]) -> dict[str, Any] | None:
    """The duty cycle that windowed engines achieved, summed over ``processes``: seconds traced,
    seconds elapsed and their ratio. None when no process ran a windowed engine."""
    readings = [p for p in processes if p.profiler_seconds is not None]
    if not readings:
        return None
    on = sum(p.profiler_on_seconds or 0.0 for p in readings)
    elapsed = sum(p.profiler_seconds or 0.0 for p in readings)
    return {
        "processes": len(readings),
        "on_seconds": round(on, 6),
        "elapsed_seconds": round(elapsed, 6),
        "duty_cycle": round(on / elapsed, 6) if elapsed > 0 else None,
    }
