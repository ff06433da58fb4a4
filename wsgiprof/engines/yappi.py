"""The yappi engine: exact CPU time and call counts per function, per endpoint, traced in windows.

yappi traces every call of every thread with each thread's own CPU clock, so it knows exactly how
much CPU each function used and how often it was called. That costs about x30 on call-heavy code,
on every thread at once, so it cannot be switched on for one request: it runs in **windows**. A
scheduler thread (``wsgiprof-yappi``) turns yappi on for ``window`` seconds, then off for
``window * (1 - rate) / rate`` seconds, so it is on about ``sample_rate`` of the time (the first
pause has a random length, so workers started together do not trace in step, and short runs
still get windows in proportion). The scheduler's clock, its waits and that random draw can be
injected (``clock``, ``wait``, ``random``), so tests drive the windows instead of racing them.

Attribution. Every request that *starts* while a window is open is profiled: it gets a fresh
integer tag in a :class:`~contextvars.ContextVar`, and yappi files every call under the tag its
thread carries (``yappi.set_tag_callback``). The endpoint's name is known only once the
application has returned, so the middleware names it with :meth:`YappiEngine.resolve`; at the
end of the window the stats are read in one pass, grouped by tag, merged per endpoint, handed to
the sink (the aggregator) and cleared. A request still running at the end of a window keeps its
data pending until it is named. Requests that start between windows are only counted.

What is exact and what is not:

- per function: self CPU (``tsub``), total CPU (``ttot``, recursion counted once), calls
  (``ncall``) and non-recursive calls (``nactualcall``); per caller → callee edge, the same four.
  C functions are not traced (``builtins=False``): their CPU is in their caller's self time.
- a window's edge cuts calls. yappi records a call when it returns, so a call still running when
  the window stops loses its own time (its completed callees keep theirs); such functions are
  counted in ``cut_calls`` (a lower bound: a function that also completed calls in the window
  cannot be told apart). Requests that outlive their window are counted in ``cut_requests``.
  Calls that began before a window opened are not on yappi's stack, so what they call appears as
  a root of the call graph.
- yappi keeps caller → callee edges, not stacks. The flamegraph is estimated from the call graph
  (each function's time spread top-down over its callees in proportion to each edge's share) and
  drawn under :data:`~wsgiprof.model.CALL_GRAPH_ROOT`, which says so. Those stacks carry CPU
  only: yappi's CPU clock measures no wall time per function.
- the per-request CPU and wall time are measured around the request as with every engine, and
  include yappi's own overhead; the summary shows the mean CPU of requests outside windows next to
  it, which is the cost of tracing.

Fork safety. yappi is started lazily by the first request of each process, never in a pre-fork
master. After ``fork()`` the child stops an inherited yappi and drops inherited stats. The tag
callback is ``ContextVar.get`` and the context-name callback ``str``, both C callables: yappi
counts threads inside its callbacks and ``yappi.clear_stats()`` spins until the count is zero, so a
fork taken while another thread was inside a *Python* callback leaves a child that hangs in
``clear_stats()`` forever. A C callable cannot be interrupted mid-call (it never releases the GIL),
so the count is zero whenever another thread runs, and stats are cleared with yappi's C-level
``clear_stats`` without that wait.

Example::

    engine = YappiEngine(sample_rate=0.05, window=2.0)
    engine.attach(aggregator.add_call_graph)
    if engine.window_open():            # first call starts the scheduler thread
        active = engine.start()
        handle_request()
        capture = active.stop()
        engine.resolve(capture.tag, "GET /report")
    engine.close()                      # ends an open window, delivers its data, stops yappi
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import random as _random
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yappi

import wsgiprof
from wsgiprof.background import start_daemon
from wsgiprof.engines.base import CallGraphSink, Capture, WindowFacts
from wsgiprof.flusher import Wait, wait_on_event
from wsgiprof.model import (
    CALL_GRAPH_ROOT,
    OVERFLOW,
    CallGraph,
    CallTotals,
    Edge,
    Frame,
    Stack,
    Weight,
)

__all__ = ["YappiEngine", "YappiRequest", "build_call_graph"]

logger = logging.getLogger("wsgiprof")

_TAG: contextvars.ContextVar[int] = contextvars.ContextVar("wsgiprof_yappi_tag", default=0)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(wsgiprof.__file__)) + os.sep
_YAPPI_C: Any = getattr(yappi, "_yappi", None)
_FRAME_CACHE_LIMIT = 50_000
_MAX_DEPTH = 128
_MIN_SHARE = 1e-4
_MAX_STACKS = 2000
_JOIN_TIMEOUT = 10.0


class _Ownership:
    """Which engine of this process drives yappi (one at a time: yappi is process-wide)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: YappiEngine | None = None

    def reset(self) -> None:
        """Forget the owner; a new lock, since a thread may have held the old one at fork."""
        self.lock = threading.Lock()
        self.owner = None


_ownership = _Ownership()
_engines: weakref.WeakSet[YappiEngine] = weakref.WeakSet()


def _clear_stats() -> None:
    """Drop yappi's stats without ``yappi.clear_stats()``'s wait for callbacks in progress
    (see the module docstring: with our C callbacks none can be in progress)."""
    if _YAPPI_C is not None and hasattr(_YAPPI_C, "clear_stats"):
        _YAPPI_C.clear_stats()
    else:  # pragma: no cover - a yappi without its C module cannot run at all
        yappi.clear_stats()


@dataclass(slots=True)
class _Raw:
    """Exact data of one tag (or one endpoint), before the call-graph stacks are derived."""

    functions: dict[Frame, CallTotals] = field(default_factory=dict)
    edges: dict[Edge, CallTotals] = field(default_factory=dict)
    cut_calls: int = 0

    def merge(self, other: _Raw) -> None:
        for frame, totals in other.functions.items():
            current = self.functions.get(frame)
            if current is None:
                self.functions[frame] = totals.copy()
            else:
                current.add(totals)
        for edge, totals in other.edges.items():
            current = self.edges.get(edge)
            if current is None:
                self.edges[edge] = totals.copy()
            else:
                current.add(totals)
        self.cut_calls += other.cut_calls


class YappiEngine:
    """Traces every thread with yappi during windows, and files exact function data per endpoint.

    :param sample_rate: fraction of time yappi is on (0 never, 1 always).
    :param window: seconds each window lasts.
    :param scheduled: when false, no scheduler thread runs: windows open and close only by
        :meth:`open_window` and :meth:`close_window` (for tests and tools).
    :param clock: monotonic seconds, for the time windows are on and the time elapsed
        (:meth:`facts`).
    :param wait: how the scheduler waits for the end of a pause or a window
        (``wait(stop_event, seconds)``, true once the engine closes; see
        :data:`wsgiprof.flusher.Wait`).
    :param random: a number in [0, 1): the first pause is that fraction of a full pause.

    ``clock``, ``wait`` and ``random`` exist so that tests drive the scheduler deterministically;
    the defaults are the real clock, :meth:`threading.Event.wait` and :func:`random.random`.

    See the module docstring for what is exact, what is estimated and how forks are handled.

    Example::

        engine = YappiEngine(sample_rate=1.0, scheduled=False)
        engine.attach(lambda endpoint, graph: print(endpoint, len(graph.functions)))
        engine.open_window()
        active = engine.start()
        handler()
        engine.resolve(active.stop().tag, "GET /x")
        engine.close_window()           # prints: GET /x 3
        engine.close()
    """

    name = "yappi"
    windowed = True

    def __init__(
        self,
        *,
        sample_rate: float = 0.05,
        window: float = 2.0,
        scheduled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wait: Wait = wait_on_event,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be from 0 to 1, not {sample_rate!r}")
        if not window > 0:
            raise ValueError(f"window must be positive, not {window!r}")
        self.sample_rate = sample_rate
        self.window = window
        self.pause = window * (1.0 - sample_rate) / sample_rate if sample_rate > 0 else 0.0
        self.scheduled = scheduled and sample_rate > 0
        self._clock = clock
        self._wait = wait
        self._random = random
        self._tags = itertools.count(1)
        self._sink: CallGraphSink | None = None
        self._frames: dict[tuple[str, str, int], Frame] = {}
        self._closed = False
        self._init_process_state()
        _engines.add(self)

    def _init_process_state(self) -> None:
        """State that belongs to one process: rebuilt in a forked child."""
        self._lock = threading.Lock()
        self._window_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._open = False
        self._generation = 0
        self._opened_at = 0.0
        self._started_at: float | None = None
        self._live: set[int] = set()
        self._names: dict[int, str] = {}
        self._pending: dict[int, _Raw] = {}
        self.on_seconds = 0.0
        self.read_seconds = 0.0
        self.windows = 0
        self.skipped_windows = 0
        self.discarded_tags = 0
        self._warned = False

    # -- the engine protocol -----------------------------------------------------------------

    def start(self) -> YappiRequest:
        """Tag the current request; its calls are traced while a window is open."""
        tag = next(self._tags)
        with self._lock:
            self._live.add(tag)
        return YappiRequest(self, tag, self._generation)

    def window_open(self) -> bool:
        if self._thread is None and self.scheduled and not self._closed:
            self._start_scheduler()
        return self._open

    def resolve(self, tag: int, endpoint: str) -> None:
        with self._lock:
            self._live.discard(tag)
            self._names[tag] = endpoint
            pending = self._pending.pop(tag, None)
        if pending is not None:
            self._deliver({endpoint: pending})

    def attach(self, sink: CallGraphSink) -> None:
        self._sink = sink

    def facts(self) -> WindowFacts:
        now = self._clock()
        on = self.on_seconds + (now - self._opened_at if self._open else 0.0)
        elapsed = now - self._started_at if self._started_at is not None else 0.0
        return WindowFacts(
            on_seconds=on,
            elapsed_seconds=max(elapsed, on),
            windows=self.windows,
            read_seconds=self.read_seconds,
        )

    def close(self) -> None:
        """Stop the scheduler, end an open window (its data is delivered) and leave yappi off."""
        self._closed = True
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT)
        self.close_window()
        with _ownership.lock:
            if _ownership.owner is self:
                _ownership.owner = None

    # -- windows -----------------------------------------------------------------------------

    def open_window(self) -> bool:
        """Turn yappi on for every thread. False when it cannot (closed, or yappi is already
        running for someone else)."""
        with self._window_lock:
            if self._open:
                return True
            if self._closed:
                return False
            with _ownership.lock:
                owner = _ownership.owner
                if (owner is not None and owner is not self) or yappi.is_running():
                    self.skipped_windows += 1
                    return False
                _ownership.owner = self
            _clear_stats()
            if yappi.get_clock_type() != "cpu":
                yappi.set_clock_type("cpu")
            yappi.set_tag_callback(_TAG.get)
            yappi.set_context_name_callback(str)
            if self._started_at is None:
                self._started_at = self._clock()
            self._generation += 1
            self._opened_at = self._clock()
            yappi.start(builtins=False, profile_threads=True)
            self._open = True
            return True

    def close_window(self) -> None:
        """Turn yappi off, read the window's stats, deliver them per endpoint and clear them."""
        with self._window_lock:
            if not self._open:
                return
            self._open = False
            yappi.stop()
            self.on_seconds += self._clock() - self._opened_at
            self.windows += 1
            began = time.perf_counter()
            try:
                by_tag = self._read()
            finally:
                _clear_stats()
            ready: dict[str, _Raw] = {}
            with self._lock:
                names, self._names = self._names, {}
                for tag, raw in by_tag.items():
                    name = names.get(tag)
                    if name is not None:
                        _merge_into(ready, name, raw)
                    elif tag in self._live:
                        _merge_into(self._pending, tag, raw)
                    else:
                        self.discarded_tags += 1
            self._deliver(ready)
            self.read_seconds += time.perf_counter() - began

    def _read(self) -> dict[int, _Raw]:
        """Every tagged function's stats of the window, in one pass over yappi's table."""
        tagged: list[Any] = []
        frames: dict[int, Frame] = {}

        def collect(stat: Any) -> bool:
            frames[stat.index] = self._frame(stat.name, stat.module, stat.lineno)
            if stat.tag:
                tagged.append(stat)
            return False  # keep nothing in yappi's own result list, which merges across tags

        yappi.get_func_stats(filter_callback=collect)
        by_tag: dict[int, _Raw] = {}
        for stat in tagged:
            raw = by_tag.get(stat.tag)
            if raw is None:
                raw = by_tag[stat.tag] = _Raw()
            frame = frames[stat.index]
            if stat.nactualcall == 0:
                # No call of this function returned in the window: yappi reports one call and
                # no time for a call still on the stack when tracing stopped.
                raw.cut_calls += 1
                totals = CallTotals(0, 0, stat.tsub, stat.ttot)
            else:
                totals = CallTotals(stat.ncall, stat.nactualcall, stat.tsub, stat.ttot)
            _add(raw.functions, frame, totals)
            # Raw child tuples (index, ncall, nactualcall, ttot, tsub): the filter sees them
            # before yappi converts them, and the indexes point into ``frames``.
            for index, ncall, nactualcall, ttot, tsub in stat.children:
                callee = frames.get(index)
                if callee is not None:
                    calls = 0 if nactualcall == 0 and ttot == 0 else ncall
                    _add(raw.edges, (frame, callee), CallTotals(calls, nactualcall, tsub, ttot))
        return by_tag

    def _frame(self, name: str, module: str, lineno: int) -> Frame:
        key = (name, module, lineno)
        frame = self._frames.get(key)
        if frame is None:
            if len(self._frames) >= _FRAME_CACHE_LIMIT:
                self._frames.clear()
            frame = self._frames[key] = Frame(name, module, lineno)
        return frame

    def _deliver(self, ready: dict[str, _Raw]) -> None:
        sink = self._sink
        if sink is None:
            return
        for endpoint, raw in ready.items():
            sink(endpoint, build_call_graph(raw.functions, raw.edges, cut_calls=raw.cut_calls))

    # -- the scheduler -----------------------------------------------------------------------

    def _start_scheduler(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            if self._started_at is None:
                self._started_at = self._clock()
            self._thread = start_daemon(self._run, "wsgiprof-yappi")

    def _run(self) -> None:
        stop, wait = self._stop_event, self._wait
        pause = self._random() * self.pause
        try:
            while not wait(stop, pause):
                pause = self.pause
                try:
                    self.open_window()
                except Exception:
                    self._warn("yappi window could not start")
                if wait(stop, self.window):
                    break
                try:
                    self.close_window()
                except Exception:
                    self._warn("yappi window could not be read")
        finally:
            try:
                self.close_window()
            except Exception:
                self._warn("yappi window could not be read")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("%s (further failures are not logged)", message, exc_info=True)

    def _after_fork_in_child(self) -> None:
        self._init_process_state()


def _add(table: dict[Any, CallTotals], key: Any, totals: CallTotals) -> None:
    current = table.get(key)
    if current is None:
        table[key] = totals
    else:
        current.add(totals)


def _merge_into(table: dict[Any, _Raw], key: Any, raw: _Raw) -> None:
    current = table.get(key)
    if current is None:
        table[key] = raw
    else:
        current.merge(raw)


class YappiRequest:
    """One request's tag; see :class:`YappiEngine`."""

    __slots__ = (
        "_cpu_start",
        "_engine",
        "_generation",
        "_stopped",
        "_tag",
        "_thread",
        "_token",
        "_wall_start",
    )

    def __init__(self, engine: YappiEngine, tag: int, generation: int) -> None:
        self._engine = engine
        self._tag = tag
        self._generation = generation
        self._stopped = False
        self._thread = threading.get_ident()
        self._token = _TAG.set(tag)
        self._cpu_start = time.thread_time()
        self._wall_start = time.perf_counter()

    def stop(self) -> Capture | None:
        if self._stopped:
            return None
        self._stopped = True
        cpu = time.thread_time() - self._cpu_start
        wall = time.perf_counter() - self._wall_start
        engine = self._engine
        if threading.get_ident() != self._thread:
            # The tag stays set in the starting thread's context: its later calls fall under a
            # tag nobody will name, and are discarded at the window's end.
            with engine._lock:
                engine._live.discard(self._tag)
            return None
        try:
            _TAG.reset(self._token)
        except ValueError:
            _TAG.set(0)
        cut = engine._generation != self._generation or not engine._open
        return Capture(cpu=cpu, wall=wall, tag=self._tag, cut=cut)


def build_call_graph(
    functions: dict[Frame, CallTotals],
    edges: dict[Edge, CallTotals],
    *,
    cut_calls: int = 0,
    max_stacks: int = _MAX_STACKS,
) -> CallGraph:
    """Exact data of one endpoint, without wsgiprof's own functions, and the stacks estimated
    from it.

    Roots are the functions no other (kept) function called: the application's entry (called by
    the middleware), and whatever ran under the request's tag without a traced caller (a server's
    ``write`` during the response, calls made by a function entered before the window opened).
    From each root its total time flows top-down: a function's share of a path is the flow into
    it over its total time, and it passes that share of each outgoing edge's total to the callee.
    Recursive edges are not followed (their time is already in the ancestor's totals); flows
    below a ten-thousandth of the total, or past ``max_stacks`` stacks or 128 levels, end in an
    :data:`~wsgiprof.model.OVERFLOW` leaf, so time is kept even where detail is not.
    """
    kept = {f: t for f, t in functions.items() if not f.file.startswith(_PACKAGE_DIR)}
    kept_edges = {e: t for e, t in edges.items() if e[0] in kept and e[1] in kept}
    children: dict[Frame, list[tuple[Frame, CallTotals]]] = {}
    called: set[Frame] = set()
    for (caller, callee), totals in kept_edges.items():
        if caller != callee:
            children.setdefault(caller, []).append((callee, totals))
            called.add(callee)
    for entries in children.values():
        entries.sort(key=lambda item: (-item[1].ttot, item[0]))
    inclusive = {
        frame: max(totals.ttot, totals.tsub + sum(t.ttot for _, t in children.get(frame, ())))
        for frame, totals in kept.items()
    }
    roots = sorted((f for f in kept if f not in called), key=lambda f: (-inclusive[f], f))
    total = sum(inclusive[f] for f in roots)
    minimum = total * _MIN_SHARE
    stacks: dict[Stack, Weight] = {}
    visited: set[Frame] = set()

    def put(stack: Stack, cpu: float, calls: float) -> None:
        weight = stacks.get(stack)
        if weight is None:
            weight = stacks[stack] = Weight()
        weight.cpu += cpu
        weight.samples += round(calls)

    def walk(path: Stack, frame: Frame, flow: float) -> None:
        visited.add(frame)
        totals = kept[frame]
        share = flow / inclusive[frame] if inclusive[frame] > 0 else 0.0
        cut = 0.0
        for callee, edge in children.get(frame, ()):
            child_flow = share * edge.ttot
            if child_flow <= 0 or callee in path:
                continue
            if child_flow < minimum or len(path) >= _MAX_DEPTH or len(stacks) >= max_stacks:
                cut += child_flow
            else:
                walk((*path, callee), callee, child_flow)
        put(path, share * totals.tsub, share * totals.ncall)
        if cut > 0:
            put((*path, OVERFLOW), cut, 0)

    for root in roots:
        walk((CALL_GRAPH_ROOT, root), root, inclusive[root])
    for frame in _unvisited(kept, visited):
        # Reached only through a cycle without an entry (e.g. mutual recursion entered before
        # the window): its self time still counts, directly under the root.
        put((CALL_GRAPH_ROOT, frame), kept[frame].tsub, kept[frame].ncall)
    stacks = {stack: weight for stack, weight in stacks.items() if weight.cpu > 0}
    return CallGraph(functions=kept, edges=kept_edges, stacks=stacks, cut_calls=cut_calls)


def _unvisited(functions: Iterable[Frame], visited: set[Frame]) -> list[Frame]:
    return sorted(frame for frame in functions if frame not in visited)


def _after_fork_in_child() -> None:
    """A forked child starts clean: an inherited running yappi is stopped (it would trace the
    child's only thread for a window nobody ends) and inherited stats are dropped without
    waiting on callbacks (see the module docstring)."""
    if yappi.is_running():
        yappi.stop()
    _clear_stats()
    _ownership.reset()
    for engine in list(_engines):
        engine._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
