"""The hook-free engine: pyroscope-io's stack sampler on per-thread CPU timers (CPython 3.12+).

No hook runs in the profiled code. The sampler of pyroscope-io (the echion stack unwinder, in its
``Stack`` implementation) arms a timer on each thread's own CPU clock: it fires only while the
thread runs on a CPU, GIL or no GIL, so a sample lands on the code that burns CPU and never on a
wait (a sleep, a socket, a database driver inside C, the GIL, the run queue). How the candidates
were measured and why this one: ``docs/hook-free-engine.md``.

How a sample finds its request: the middleware calls the application, and each step of the
body's iteration, through :meth:`PyroscopeProfile.run`, a trampoline whose code object has a name
of its own (``wsgiprof_request_<engine>_<slot>``). That frame is in every stack the request's
thread takes while serving it; the sampler carries no per-thread labels, so the frame is the tag.
Samples without it (unprofiled requests, the server, background threads) are not charged. The
sampler caches what it read of a code object by the object's address, so trampolines are never
freed (a new object at a freed address would be read under the old name): they form a pool of
slots, and a slot is reused only :data:`SLOT_QUARANTINE` seconds after its request ended, when
every sample of that request has been pushed.

The agent pushes what it sampled once a second over HTTP to a loopback port of this process, with
a random secret header; :class:`_Agent` receives and decodes the pushes and hands each sample to
the engine that issued its request. Stacks therefore reach the aggregator about a second after
their request ended, through the sink given to :meth:`PyroscopeEngine.attach`, once the
middleware has named the request's endpoint with :meth:`PyroscopeEngine.resolve`.

One agent per process: the first profiled request of a process starts it (so never a pre-fork
master), every engine of the process shares it, and the last :meth:`PyroscopeEngine.close` stops
it. With CPU timers it cannot be started again in that process, nor in a child forked after it
ran: engines there serve requests unprofiled (:class:`EngineUnavailableError`).
"""

from __future__ import annotations

import atexit
import collections
import http.server
import importlib
import itertools
import logging
import os
import secrets
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import wsgiprof
from wsgiprof.background import start_daemon
from wsgiprof.engines.base import Capture, EngineUnavailableError, StackSink
from wsgiprof.engines.ledger import Delivery, RequestLedger
from wsgiprof.engines.pushreader import PushFormatError, SampleFrame, pprof_samples, push_profiles
from wsgiprof.engines.sourcenames import first_lines
from wsgiprof.model import NOT_ON_CPU, OUTSIDE_APP, Frame, Stack, Weight

T = TypeVar("T")
logger = logging.getLogger("wsgiprof")

REQUEST_PREFIX = "wsgiprof_request_"
"""Name prefix of the trampoline frame that marks a profiled request in every sample."""
SECRET_HEADER = "X-Wsgiprof-Secret"  # noqa: S105 (a header name, its value is random)
UPLOAD_INTERVAL = 1
"""Seconds between the agent's pushes (pyroscope-io's minimum, an int)."""
MAX_FRAMES = 512
"""Frames the sampler copies per stack. Deeper stacks are cut at the root, losing the request's
frame: their samples are not charged to any request."""
SLOT_QUARANTINE = 10.0
"""Seconds before a request's trampoline serves another request (pushes come every second)."""
MAX_SLOTS = 100_000
"""Trampolines at most: requests in flight or ended less than :data:`SLOT_QUARANTINE` ago."""
RESOLVED_TTL = 30.0
"""Seconds a finished request's samples are still accepted (a push comes about every second)."""
MAX_PUSH_BYTES = 256 * 1024 * 1024
FRESH_THREAD_WARNING = (
    "most profiled requests run on a thread that served none before (a thread per request, as "
    "werkzeug's development server does): the pyroscope engine samples a thread only after it "
    "has used one interval of CPU, so such requests are sampled too little, their first "
    "milliseconds least. Serve with a thread pool (gunicorn gthread, uWSGI, waitress) or use "
    "WSGIPROF_ENGINE=pyinstrument"
)
_FRESH_CHECK_AFTER = 50
_KNOWN_THREADS_LIMIT = 10_000
_PACKAGE_DIR = os.path.dirname(os.path.abspath(wsgiprof.__file__)) + os.sep
_CACHE_LIMIT = 50_000
_FILE_CACHE_LIMIT = 5_000

_ENGINE_IDS = itertools.count(1)


def unavailable_reason() -> str | None:
    """Why this engine cannot run here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "it needs Linux (per-thread CPU timers)"
    version: tuple[int, ...] = tuple(sys.version_info[:2])
    if sys.implementation.name != "cpython" or version < (3, 12):
        return (
            "it needs CPython 3.12 or later: before 3.12 pyroscope-io samples wall time and "
            "charges CPU to the wrong code (docs/hook-free-engine.md)"
        )
    if "uwsgi" in sys.modules:
        return (
            "under uWSGI, pyroscope-io's sampler crashed every worker as it exited (a segfault "
            "in its native thread while the worker shut down); use pyinstrument there"
        )
    try:
        importlib.import_module("pyroscope")
    except ImportError:
        return "pyroscope-io is not installed: pip install 'wsgiprof[pyroscope]'"
    return None


def _trampoline(function: Callable[..., T], *args: Any) -> T:
    return function(*args)


def _rooted(name: str) -> Callable[..., Any]:
    """A copy of :func:`_trampoline` whose frame is named ``name`` in every sampled stack."""
    names: dict[str, Any] = {"co_name": name, "co_qualname": name}
    code = _trampoline.__code__.replace(**names)
    return types.FunctionType(code, _trampoline.__globals__, name)


class StackConverter:
    """Turns a sample's frames into (engine, request, :data:`Stack`), cached.

    The stack starts below the deepest request frame; wsgiprof's own frames are left out. A frame
    is identified by qualified name, file and the function's first line, read from the source
    (pprof gives only the line being run); a file that cannot be read gives line 0.
    """

    def __init__(self) -> None:
        self._stacks: dict[tuple[SampleFrame, ...], Stack] = {}
        self._files: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def convert(self, frames: tuple[SampleFrame, ...]) -> tuple[int, int, Stack] | None:
        """(engine, slot, stack); None when no request frame is in the sample (or its name is
        not one of ours)."""
        for index in range(len(frames) - 1, -1, -1):
            name = frames[index].name
            if name.startswith(REQUEST_PREFIX):
                engine, _, slot = name[len(REQUEST_PREFIX) :].partition("_")
                if not (engine.isdigit() and slot.isdigit()):
                    return None
                return int(engine), int(slot), self.stack(frames[index + 1 :])
        return None

    def stack(self, frames: tuple[SampleFrame, ...]) -> Stack:
        with self._lock:
            stack = self._stacks.get(frames)
            if stack is None:
                kept = (f for f in frames if not f.file.startswith(_PACKAGE_DIR))
                stack = tuple(self._frame(f) for f in kept) or (OUTSIDE_APP,)
                if len(self._stacks) >= _CACHE_LIMIT:
                    self._stacks.clear()
                self._stacks[frames] = stack
            return stack

    def _frame(self, frame: SampleFrame) -> Frame:
        lines = self._files.get(frame.file)
        if lines is None:
            lines = first_lines(frame.file) if frame.file.endswith(".py") else {}
            if len(self._files) >= _FILE_CACHE_LIMIT:
                self._files.clear()
            self._files[frame.file] = lines
        return Frame(frame.name, frame.file, lines.get(frame.name, 0))


class _Slots:
    """The pool of trampolines that mark requests in samples (see the module docstring).

    Not thread-safe: the engine calls it under its own lock.
    """

    def __init__(self, engine: int, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._roots: list[Callable[..., Any]] = []
        self._free: collections.deque[tuple[float, int]] = collections.deque()
        self._users: dict[int, int] = {}

    def take(self, request: int) -> tuple[int, Callable[..., Any]]:
        """A slot for ``request`` and its trampoline: a quarantined one if its time is up."""
        if self._free and self._free[0][0] <= self._clock():
            _, slot = self._free.popleft()
        elif len(self._roots) < MAX_SLOTS:
            slot = len(self._roots)
            self._roots.append(_rooted(f"{REQUEST_PREFIX}{self._engine}_{slot}"))
        else:
            raise EngineUnavailableError(
                f"{MAX_SLOTS} requests profiled in the last {SLOT_QUARANTINE:g} s: no slot free"
            )
        self._users[slot] = request
        return slot, self._roots[slot]

    def give_back(self, slot: int) -> None:
        """The slot's request ended; its samples may still come for a while."""
        self._free.append((self._clock() + SLOT_QUARANTINE, slot))

    def user(self, slot: int) -> int | None:
        """The request that holds ``slot``, or held it last."""
        return self._users.get(slot)


class PyroscopeProfile:
    """One profiled request: its slot's trampoline, and the thread CPU and wall around it."""

    __slots__ = ("_cpu", "_engine", "_root", "_thread", "_wall", "request", "slot")

    def __init__(
        self, engine: PyroscopeEngine, request: int, slot: int, root: Callable[..., Any]
    ) -> None:
        self._engine = engine
        self.request = request
        self.slot = slot
        self._root = root
        self._thread = threading.get_ident()
        self._cpu = time.thread_time()
        self._wall = time.perf_counter()

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function(*args)`` under the request's frame, so that its samples are ours."""
        result: T = self._root(function, *args)
        return result

    def stop(self) -> Capture | None:
        """The request's measured CPU and wall, its time off CPU as one stack and its tag; its
        CPU stacks follow through the engine's sink. None if stopped on another thread."""
        cpu = time.thread_time() - self._cpu
        wall = time.perf_counter() - self._wall
        if not self._engine.finish(self):
            return None
        stacks: dict[Stack, Weight] = {}
        if wall > cpu:
            stacks[(NOT_ON_CPU,)] = Weight(0, wall - cpu, 0.0)
        return Capture(cpu=cpu, wall=wall, stacks=stacks, tag=self.request)

    @property
    def thread(self) -> int:
        return self._thread


class PyroscopeEngine:
    """Samples the threads serving profiled requests on their CPU clocks (see the module doc).

    ``interval`` is the CPU time between two samples of a thread (whole milliseconds, at least
    one; the kernel checks CPU timers at each scheduler tick, so a tick, often 4 ms, is the
    finest that takes effect). ``clock`` (monotonic seconds) ages finished requests.
    """

    name = "pyroscope"
    deferred = True

    def __init__(
        self, *, interval: float = 0.01, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.index = next(_ENGINE_IDS)
        self.interval_ms = max(1, round(interval * 1000))
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._threads: dict[int, PyroscopeProfile] = {}
        self._ledger = RequestLedger(keep=RESOLVED_TTL, clock=clock)
        self._slots = _Slots(self.index, clock)
        self._sink: StackSink | None = None
        self._agent: _Agent | None = None
        self._closed = False
        self._known_threads: set[int] = set()
        self.requests = 0
        self.fresh_thread_requests = 0
        """Profiled requests that ran on a thread no earlier profiled request ran on."""
        self._warned = False

    @property
    def lost_cpu(self) -> float:
        """CPU seconds of samples that could not be charged: their request was abandoned, never
        named, or ended more than :data:`RESOLVED_TTL` seconds before they arrived."""
        with self._lock:
            return self._ledger.lost_cpu

    # -- the Engine protocol ---------------------------------------------------------------------

    def start(self) -> PyroscopeProfile:
        thread = threading.get_ident()
        with self._lock:
            if self._closed:
                raise EngineUnavailableError("the engine is closed")
            if thread in self._threads:
                raise EngineUnavailableError("a request is already profiled on this thread")
        if self._agent is None or self._agent.pid != os.getpid():
            self._agent = _SLOT.acquire(self)
        # A thread started outside `threading` (uWSGI, mod_wsgi) gets its Thread object here,
        # which registers it with the sampler; uWSGI also blocks every signal in its threads,
        # the CPU timer's included, so the timer's signal is let through on this one.
        threading.current_thread()
        if self._agent.timer_signal_caught:
            _unblock_timer_signal()
        request = next(self._ids)
        native = threading.get_native_id()
        with self._lock:
            self._count_thread(native)
            slot, root = self._slots.take(request)
            profile = PyroscopeProfile(self, request, slot, root)
            self._threads[thread] = profile
            self._ledger.begin(request)
        return profile

    def _count_thread(self, native: int) -> None:
        self.requests += 1
        if native not in self._known_threads:
            self.fresh_thread_requests += 1
            if len(self._known_threads) >= _KNOWN_THREADS_LIMIT:
                self._known_threads.clear()
            self._known_threads.add(native)
        if (
            not self._warned
            and self.requests >= _FRESH_CHECK_AFTER
            and self.fresh_thread_requests * 2 > self.requests
        ):
            self._warned = True
            logger.warning(FRESH_THREAD_WARNING)

    def close(self) -> None:
        """Stop the agent if no other engine of this process uses it; stacks it still pushes
        are delivered first."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            agent, self._agent = self._agent, None
        if agent is not None and agent.pid == os.getpid():
            _SLOT.release(self, agent)

    # -- the deferred-engine protocol ------------------------------------------------------------

    def attach(self, sink: StackSink) -> None:
        """Deliver ``(endpoint, stacks)`` to ``sink`` as the samples of named requests arrive."""
        self._sink = sink

    def resolve(self, tag: int, endpoint: str) -> None:
        """Name the endpoint of request ``tag``; its samples so far are delivered now."""
        with self._lock:
            ready = self._ledger.name(tag, endpoint)
        self._deliver(ready)

    # -- called by profiles and by the agent -----------------------------------------------------

    def finish(self, profile: PyroscopeProfile) -> bool:
        """End ``profile``; False (its samples dropped) when stopped on another thread."""
        same_thread = threading.get_ident() == profile.thread
        with self._lock:
            if self._threads.get(profile.thread) is profile:
                del self._threads[profile.thread]
            if same_thread:
                self._ledger.end(profile.request)
            else:
                self._ledger.drop(profile.request)
            self._slots.give_back(profile.slot)
        return same_thread

    def receive(self, samples: Iterable[tuple[int, Stack, Weight]]) -> None:
        """Charge decoded samples ``(slot, stack, weight)`` to the requests holding the slots."""
        with self._lock:
            user = self._slots.user
            ready = self._ledger.add(
                (request, stack, weight)
                for slot, stack, weight in samples
                if (request := user(slot)) is not None
            )
        self._deliver(ready)

    def _deliver(self, ready: Delivery) -> None:
        sink = self._sink
        if sink is None:
            return
        for endpoint, stacks in ready.items():
            sink(endpoint, stacks)


# -- the process's agent -----------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Accepts the agent's pushes on the loopback port; anything without the secret is refused."""

    server: _PushServer

    def do_POST(self) -> None:
        agent = self.server.agent
        length = int(self.headers.get("Content-Length") or 0)
        if not secrets.compare_digest(self.headers.get(SECRET_HEADER, ""), agent.secret):
            self.send_response(403)
        elif not 0 < length <= MAX_PUSH_BYTES:
            self.send_response(413)
        else:
            body = self.rfile.read(length)
            self.send_response(200 if agent.receive(body) else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PushServer(http.server.HTTPServer):
    def __init__(self, agent: _Agent) -> None:
        self.agent = agent
        super().__init__(("127.0.0.1", 0), _Receiver)


class _Agent:
    """pyroscope-io's agent in this process and the loopback receiver its pushes go to."""

    def __init__(self, interval_ms: int) -> None:
        self.pid = os.getpid()
        self.secret = secrets.token_hex(16)
        self.engines: dict[int, PyroscopeEngine] = {}
        self.converter = StackConverter()
        self.interval_ms = interval_ms
        self.timer_signal_caught = False
        self._server = _PushServer(self)
        self._thread: threading.Thread | None = None
        self._module: Any = importlib.import_module("pyroscope")

    def start(self) -> None:
        self._thread = start_daemon(
            self._server.serve_forever, "wsgiprof-pyroscope-receiver", poll_interval=0.1
        )
        pyroscope = self._module
        pyroscope.configure_experimental_stack_profiler(
            max_nframe=MAX_FRAMES,
            max_threads=0,
            adaptive_sampling=False,
            cpu_timer_enabled=True,
            cpu_timer_interval_ms=self.interval_ms,
        )
        started = pyroscope.configure(
            application_name="wsgiprof",
            server_address=f"http://127.0.0.1:{self._server.server_port}",
            sample_rate=max(1, 1000 // self.interval_ms),
            oncpu=True,
            upload_interval=UPLOAD_INTERVAL,
            http_headers={SECRET_HEADER: self.secret},
            cpu_implementation=pyroscope.ProfilerImplementation.Stack,
        )
        if not started:
            self._stop_receiver()
            raise EngineUnavailableError("pyroscope-io refused to start its agent in this process")
        self.timer_signal_caught = _signal_caught(TIMER_SIGNAL)

    def stop(self) -> None:
        """Stop the agent (it pushes its last samples first), then the receiver."""
        try:
            self._module.shutdown()
        finally:
            self._stop_receiver()

    def _stop_receiver(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def receive(self, body: bytes) -> bool:
        """Decode one push and hand its samples to their engines; False if it is malformed."""
        converter = self.converter
        by_engine: dict[int, list[tuple[int, Stack, Weight]]] = {}
        period = self.interval_ms * 1_000_000
        try:
            for raw in push_profiles(body):
                for sample in pprof_samples(raw):
                    found = converter.convert(sample.frames)
                    if found is None:
                        continue  # outside any profiled request
                    engine, slot, stack = found
                    cpu = sample.value / 1e9
                    weight = Weight(max(1, round(sample.value / period)), cpu, cpu)
                    by_engine.setdefault(engine, []).append((slot, stack, weight))
        except PushFormatError:
            return False
        for index, samples in by_engine.items():
            target = self.engines.get(index)
            if target is not None:
                target.receive(samples)
        return True


TIMER_SIGNAL = signal.SIGPROF
"""The signal the sampler's per-thread CPU timers send (SIGEV_THREAD_ID)."""


def _signal_caught(number: int) -> bool:
    """Whether this process has a handler for signal ``number`` (``SigCgt`` in /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


def _unblock_timer_signal() -> None:
    """Let the CPU timer's signal reach the current thread if a server blocked it there (uWSGI
    blocks all signals in its worker threads). Only called once the sampler's handler is in
    place: unhandled, the signal would end the process."""
    if TIMER_SIGNAL in signal.pthread_sigmask(signal.SIG_BLOCK, ()):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {TIMER_SIGNAL})


class _AgentSlot:
    """Holds the process's one agent: started on first use, stopped by the last engine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agent: _Agent | None = None
        self._spent: set[int] = set()

    def acquire(self, engine: PyroscopeEngine) -> _Agent:
        """The process's agent, started on first use; raises EngineUnavailableError when it
        cannot be (stopped before in this process, or started in the parent before a fork)."""
        reason = unavailable_reason()
        if reason is not None:
            raise EngineUnavailableError(f"the pyroscope engine cannot run here: {reason}")
        pid = os.getpid()
        with self._lock:
            agent = self._agent
            if agent is not None and agent.pid != pid:
                raise EngineUnavailableError(
                    "the sampler was started in the parent process before fork; its CPU timers "
                    "cannot restart in a child (start the server without profiled requests in "
                    "the parent)"
                )
            if agent is None:
                if pid in self._spent:
                    raise EngineUnavailableError(
                        "the sampler was stopped in this process and cannot start again"
                    )
                self._spent.add(pid)
                agent = _Agent(engine.interval_ms)
                agent.start()
                self._agent = agent
                atexit.register(self.stop_at_exit, agent)
            agent.engines[engine.index] = engine
            return agent

    def stop_at_exit(self, agent: _Agent) -> None:
        """Stop the agent before the interpreter is torn down: its sampler thread reads the
        interpreter's memory and must not outlive it. Its last push still reaches the engines,
        before the middleware's last flush (atexit runs the later registration first)."""
        with self._lock:
            if self._agent is agent and agent.pid == os.getpid():
                self._stop(agent)

    def release(self, engine: PyroscopeEngine, agent: _Agent) -> None:
        """Unregister ``engine``; the last one stops the agent, after its final push arrived."""
        with self._lock:
            if self._agent is agent and agent.engines.keys() == {engine.index}:
                self._stop(agent)
            else:
                agent.engines.pop(engine.index, None)

    def _stop(self, agent: _Agent) -> None:
        """Stop ``agent``, the current one, with its engines still registered for its last
        push; called under the lock."""
        self._agent = None
        try:
            agent.stop()
        finally:
            agent.engines.clear()


_SLOT = _AgentSlot()
