"""The WSGI middleware: routes its own dashboard, decides which requests to profile, profiles them.

Example::

    from wsgiprof import ProfilerMiddleware

    app.wsgi_app = ProfilerMiddleware(app.wsgi_app)   # Flask: endpoints named by route template

Inert unless ``WSGIPROF_ENABLED=1`` (or ``config=Config(enabled=True, ...)``): a disabled middleware
returns the application's own response untouched and does no work per request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from wsgiprof.config import Config
from wsgiprof.engines.base import (
    DeferredEngine,
    EngineUnavailableError,
    RootedProfile,
    WindowedEngine,
)
from wsgiprof.model import CallGraph, ProfiledRequest, Stack, Weight

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from wsgiprof.budget import Baselines, OverheadBudget
    from wsgiprof.dashboard import Dashboard
    from wsgiprof.engines.base import ActiveProfile, Engine
    from wsgiprof.flusher import Flusher
    from wsgiprof.stores.base import RequestRow, RunInfo, Snapshot, Store

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

logger = logging.getLogger("wsgiprof")


class ProfilerMiddleware:
    """Profile a fraction of requests and aggregate their CPU stacks per endpoint.

    :param app: the WSGI application to wrap (for Flask, ``app.wsgi_app``).
    :param config: settings; by default read once from the ``WSGIPROF_*`` environment variables.
    :param sampler: optional ``sampler(environ) -> bool`` deciding which requests to profile,
        instead of the sample rate.
    :param endpoint_key: optional ``endpoint_key(environ) -> str`` naming a request's endpoint,
        instead of route templates or normalised paths.

    Example::

        app.wsgi_app = ProfilerMiddleware(
            app.wsgi_app, config=Config(enabled=True, token="s3cret", sample_rate=0.2)
        )
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        config: Config | None = None,
        sampler: Callable[[WSGIEnvironment], bool] | None = None,
        endpoint_key: Callable[[WSGIEnvironment], str] | None = None,
    ) -> None:
        self.app = app
        self.config = config if config is not None else Config.from_env()
        self.enabled = self.config.enabled
        self.counters = {"engine_unavailable": 0, "engine_errors": 0, "abandoned": 0}
        self._counter_lock = threading.Lock()
        self._warned: set[str] = set()
        if not self.enabled:
            return
        # Imported here so that a disabled middleware loads neither the engine nor psutil.
        from wsgiprof.aggregate import Aggregator
        from wsgiprof.budget import Baselines, OverheadBudget
        from wsgiprof.endpoints import EndpointNamer
        from wsgiprof.engines import create_engine
        from wsgiprof.flusher import Flusher
        from wsgiprof.requestlog import RequestLog
        from wsgiprof.resources import ProcessMonitor
        from wsgiprof.sampling import Sampler
        from wsgiprof.stores import MemoryStore, open_store

        cfg = self.config
        self._sampler = Sampler(rate=cfg.sample_rate, predicate=sampler, token=cfg.token)
        self._namer = EndpointNamer(app, endpoint_key=endpoint_key)
        self._engine: Engine = create_engine(cfg)
        self._aggregator = Aggregator(max_endpoints=cfg.max_endpoints, stack_cap=cfg.stack_cap)
        self._requests = RequestLog()
        # A windowed engine (yappi) decides which requests are profiled (those starting in a
        # window) and delivers exact function data per endpoint when a window ends.
        self._windowed: WindowedEngine | None = None
        if isinstance(self._engine, WindowedEngine):
            self._windowed = self._engine
            self._windowed.attach(self._add_call_graph)
        # A deferred engine (pyroscope) delivers a request's stacks after the request.
        self._deferred: DeferredEngine | None = None
        if isinstance(self._engine, DeferredEngine):
            self._deferred = self._engine
            self._deferred.attach(self._aggregator_add_stacks)
        # With WSGIPROF_MAX_OVERHEAD: the budget sets the sample rate from the measured cost.
        self._budget: tuple[OverheadBudget, Baselines] | None = None
        if cfg.max_overhead > 0 and self._windowed is None:
            self._budget = (OverheadBudget(cfg.max_overhead, cfg.sample_rate), Baselines())
        self._store: Store = open_store(cfg.store, app_name=cfg.app_name)
        self._shared_store = not isinstance(self._store, MemoryStore)
        self._flusher: Flusher | None = None
        if self._shared_store:
            self._flusher = Flusher(self.flush, interval=cfg.flush_interval)
        # A child forked while another thread held the aggregator's lock needs its own.
        _register_process_hooks(self)
        self._monitor = ProcessMonitor()
        self._lock = threading.Lock()
        self._dashboard: Dashboard | None = None
        self._prefix = cfg.path
        self._prefix_slash = cfg.path + "/"
        if cfg.token is not None:
            from wsgiprof.dashboard import Dashboard

            self._dashboard = Dashboard(
                cfg,
                read=self.read,
                reset=self.reset,
                engine=cfg.engine,
                runs=self._store,
                save_run=self.save_run,
                read_requests=self.read_requests,
            )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.enabled:
            return self.app(environ, start_response)
        if self._dashboard is not None:
            path = environ.get("PATH_INFO", "")
            if path == self._prefix or path.startswith(self._prefix_slash):
                return self._dashboard(environ, start_response)
        if self._flusher is not None and not self._flusher.running:
            self._flusher.ensure_running()
        windowed = self._windowed
        if windowed is not None:
            sample = windowed.window_open() and (
                self._sampler.predicate is None or self._sampler.decide(environ)
            )
        else:
            if self._budget is not None:
                self._sampler.rate = self._budget[0].rate()
            sample = self._sampler.decide(environ)
        if sample:
            requested = time.perf_counter()
            active = self._start_engine()
            if active is not None:
                return self._profiled(environ, start_response, active, requested)
        if windowed is not None:
            return self._timed(environ, start_response)
        if self._budget is not None:
            return self._budgeted(environ, start_response, *self._budget)
        try:
            return self.app(environ, start_response)
        finally:
            self._aggregator.seen(self._namer.name(environ))

    def _budgeted(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        budget: OverheadBudget,
        baselines: Baselines,
    ) -> Iterable[bytes]:
        """An unprofiled request timed for the overhead budget (the time of all requests, and
        each endpoint's unprofiled baseline)."""
        started = time.perf_counter()
        try:
            return self.app(environ, start_response)
        finally:
            wall = time.perf_counter() - started
            name = self._namer.name(environ)
            self._aggregator.seen(name)
            budget.observe(wall)
            baselines.update(name, wall)

    def _timed(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """An unprofiled request whose thread CPU is measured (around the application call), so
        the summary can compare it with profiled requests: the cost of a windowed engine."""
        cpu = time.thread_time()
        try:
            return self.app(environ, start_response)
        finally:
            self._aggregator.seen(self._namer.name(environ), cpu=time.thread_time() - cpu)

    # -- profiled requests -------------------------------------------------------------------

    def _start_engine(self) -> ActiveProfile | None:
        try:
            return self._engine.start()
        except EngineUnavailableError as exc:
            self._count("engine_unavailable")
            self._warn_once("unavailable", "request served unprofiled: %s", exc)
        except Exception:
            self._count("engine_errors")
            self._warn_once(
                "start", "profiler failed to start; request served unprofiled", exc=True
            )
        return None

    def _profiled(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        active: ActiveProfile,
        requested: float,
    ) -> Iterable[bytes]:
        environ["wsgiprof.profiled"] = True
        started = time.time()
        status = [0]
        timing = [0.0, 0.0]  # wsgiprof's own time before the call, duration of the call

        def recording_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            status[0] = _status_code(status_line)
            return start_response(status_line, headers, exc_info)

        run = active.run if isinstance(active, RootedProfile) else None
        called = time.perf_counter()
        timing[0] = called - requested
        try:
            if run is not None:
                body = run(self.app, environ, recording_start_response)
            else:
                body = self.app(environ, recording_start_response)
        except BaseException:
            timing[1] = time.perf_counter() - called
            self._finish(active, environ, started, status[0] or 500, timing, error=True)
            raise
        timing[1] = time.perf_counter() - called
        return _ProfiledBody(
            body,
            lambda error: self._finish(active, environ, started, status[0], timing, error=error),
            run,
        )

    def _finish(
        self,
        active: ActiveProfile,
        environ: WSGIEnvironment,
        started: float,
        status: int,
        timing: list[float],
        *,
        error: bool,
    ) -> None:
        finishing = time.perf_counter()
        try:
            capture = active.stop()
            if capture is None:
                self._count("abandoned")
                return
            request = ProfiledRequest(
                endpoint=self._namer.name(environ),
                start=started,
                wall=capture.wall,
                cpu=capture.cpu,
                status=status,
                stacks=capture.stacks,
                error=error or status >= 500,
            )
            self._aggregator.add(request)
            self._requests.add(request)
            if capture.tag and self._windowed is not None:
                self._windowed.resolve(capture.tag, request.endpoint)
                if capture.cut:
                    self._aggregator.mark_cut(request.endpoint)
            elif capture.tag and self._deferred is not None:
                self._deferred.resolve(capture.tag, request.endpoint)
            if self._budget is not None:
                budget, baselines = self._budget
                own = timing[0] + time.perf_counter() - finishing
                cost = own + baselines.excess(request.endpoint, timing[1])
                budget.record(cost, own + timing[1])
            if self._flusher is not None and self._flusher.overdue():
                self._flusher.flush_now()
        except Exception:
            self._count("engine_errors")
            self._warn_once("finish", "profile of a request was lost", exc=True)

    # -- reading and resetting ---------------------------------------------------------------

    def flush(self) -> None:
        """Send this process's unflushed delta to the store."""
        delta = self._aggregator.drain()
        reading = self._monitor.reading()
        if self._windowed is not None:
            facts = self._windowed.facts()
            reading.profiler_on_seconds = facts.on_seconds
            reading.profiler_seconds = facts.elapsed_seconds
        self._store.flush(delta, reading)
        self._store.flush_requests(self._requests.drain())

    def _add_call_graph(self, endpoint: str, graph: CallGraph) -> None:
        self._aggregator.add_call_graph(endpoint, graph)

    def _aggregator_add_stacks(self, endpoint: str, stacks: Mapping[Stack, Weight]) -> None:
        self._aggregator.add_stacks(endpoint, stacks)

    def read(self) -> Snapshot:
        """The current window over every process that flushed into the store, with this
        process's unflushed delta merged in."""
        if not self._shared_store:
            self.flush()
            return self._store.read()
        snapshot = self._store.read()
        snapshot.merge_delta(self._aggregator.peek())
        return snapshot

    def reset(self) -> float:
        """Start a new window: forget everything aggregated so far, in every process."""
        with self._lock:
            start = self._store.reset()
            self._aggregator.reset()
            self._requests.reset()
            self._monitor.reset()
            return start

    def save_run(self, label: str) -> RunInfo:
        """Close the current window as a saved run named ``label`` (this process's unflushed
        data included) and start a new window in every process."""
        with self._lock:
            self.flush()
            info = self._store.save_run(label)
            self._monitor.reset()
            return info

    def read_requests(self) -> list[RequestRow]:
        """The request rows of the current window over every process, with this process's
        unflushed rows."""
        if not self._shared_store:
            self.flush()
            return self._store.read_requests()
        rows = self._store.read_requests() + self._requests.peek()
        return sorted(rows, key=lambda row: row.timestamp)

    def close(self) -> None:
        """Stop the flush thread, flush what is left and release the engine and the store."""
        if not self.enabled:
            return
        # First, so that the data of an open window reaches the aggregator before the last flush.
        self._engine.close()
        if self._flusher is not None:
            self._flusher.stop()
        else:
            self.flush()
        self._store.close()

    def _after_fork_in_child(self) -> None:
        """Per-process state starts afresh in a forked worker: what the parent aggregated stays
        the parent's, locks held by the parent's threads at fork time are replaced, and the
        flush thread (which did not survive the fork) will start on the first request."""
        from wsgiprof.aggregate import Aggregator
        from wsgiprof.flusher import Flusher
        from wsgiprof.requestlog import RequestLog

        cfg = self.config
        self._aggregator = Aggregator(max_endpoints=cfg.max_endpoints, stack_cap=cfg.stack_cap)
        self._requests = RequestLog()
        self._lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self.counters = dict.fromkeys(self.counters, 0)
        self._monitor.reset()
        if self._flusher is not None:
            self._flusher = Flusher(self.flush, interval=cfg.flush_interval)

    def _at_exit(self) -> None:
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self.counters[key] += 1

    def _warn_once(self, key: str, message: str, *args: Any, exc: bool = False) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(
            message + " (further occurrences are counted, not logged)", *args, exc_info=exc
        )


def _register_process_hooks(middleware: ProfilerMiddleware) -> None:
    """Rebuild per-process state after fork and flush at exit, without keeping the middleware
    alive (the hooks hold a weak reference)."""
    ref = weakref.ref(middleware)

    def after_fork_in_child() -> None:
        target = ref()
        if target is not None:
            target._after_fork_in_child()

    def at_exit() -> None:
        target = ref()
        if target is not None:
            target._at_exit()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork_in_child)
    atexit.register(at_exit)


class _ProfiledBody:
    """Wraps a profiled response: profiling ends when the body is exhausted or closed, whichever
    comes first, and the application's iterable is always closed. With ``run`` (a rooted
    profile's), each step of the iteration and the close run under the request's frame."""

    __slots__ = ("_body", "_done", "_error", "_finish", "_run")

    def __init__(
        self,
        body: Iterable[bytes],
        finish: Callable[[bool], None],
        run: Callable[..., Any] | None = None,
    ) -> None:
        self._body = body
        self._finish = finish
        self._run = run
        self._done = False
        self._error = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            run = self._run
            if run is None:
                yield from self._body
            else:
                iterator = run(iter, self._body)
                while True:
                    chunk = run(next, iterator, _END)
                    if chunk is _END:
                        break
                    yield chunk
        except BaseException:
            self._error = True
            raise
        finally:
            self._end()

    def _end(self) -> None:
        if not self._done:
            self._done = True
            self._finish(self._error)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                if self._run is not None:
                    self._run(close)
                else:
                    close()
        except BaseException:
            self._error = True
            raise
        finally:
            self._end()


_END: Any = object()


def _status_code(status_line: str) -> int:
    try:
        return int(status_line[:3])
    except ValueError:
        return 0
