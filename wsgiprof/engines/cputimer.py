"""The CPU-timer engine: hook-free sampling on each thread's own CPU clock, from a signal handler
on that thread (Linux, CPython 3.10-3.13).

No hook runs in the profiled code. When a request is profiled, its thread gets a POSIX timer on
its own CPU-time clock; every ``interval`` of CPU the thread uses, the kernel interrupts that very
thread with ``SIGPROF``, and a handler written in C (``wsgiprof._cpusampler``) copies the
addresses of its frames' code objects, as they are at that instant. So:

* a sample is taken only while the thread runs on a CPU: waiting for the GIL, for a core, for the
  database or a lock advances no CPU clock and takes no sample;
* C work that releases the GIL (password hashing, zlib) is on a CPU, and is charged to the Python
  line that called it;
* nothing reads the stack later, from another thread, when it has moved on (the lag that made
  pyroscope-io's samplers miss: ``docs/hook-free-engine.md``).

The handler takes no lock, allocates nothing and reads interpreter memory only through
``process_vm_readv`` on its own process, which fails instead of crashing on a stale pointer. Names
are read at the end of the request, on its thread, the same way, since a code object seen in a
sample may have been freed meanwhile; a cache keyed by address is checked with one such read.

How a sample finds its request: the middleware calls the application, and each step of the body's
iteration, through :meth:`CpuTimerProfile.run`, whose frame the handler stops at; samples taken
without it (the server, wsgiprof's own code) are charged to ``[outside the application]``. A stack
deeper than 512 frames keeps the 512 nearest its leaf.

Weights. The kernel checks CPU timers at its scheduler tick (HZ: often 250, so every 4 ms), so
with an interval at or below the tick a signal comes at each tick that finds the thread running:
ticks fall at times unrelated to the code, so each function gets signals in proportion to its
CPU. The expirations a signal carries are not: after a thread wakes up, the kernel delivers the
expirations of its first milliseconds late, in a single signal, which would move CPU from the
start of a request to its middle (measured: ``docs/hook-free-engine.md``). So every signal
weighs the same, the CPU per signal of this process so far (expirations over signals, times the
interval): an unbiased estimate, so a request's stack weights add up to its measured CPU on
average, not exactly, and a request shorter than a tick is sampled with a probability in
proportion to its CPU rather than never. The request's wall time beyond its CPU is
``[not on a CPU]``.

A thread's timer stays armed between its requests (the handler drops what it samples outside
one), so that a short request's last tick is sampled as often as any other; it is deleted when the
thread exits, or when the last engine of the process closes.

Example::

    engine = CpuTimerEngine(interval=0.001)
    active = engine.start()
    try:
        body = active.run(app, environ, start_response)
    finally:
        capture = active.stop()
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import wsgiprof
from wsgiprof.engines.base import Capture, EngineUnavailableError
from wsgiprof.engines.sourcenames import qualified_names
from wsgiprof.model import NOT_ON_CPU, OUTSIDE_APP, OVERFLOW, Frame, Stack, Weight

T = TypeVar("T")

FOUND_REQUEST = 1
"""Sample flag: the walk reached the request's frame (the sample is the application's)."""
_PACKAGE_DIR = os.path.dirname(os.path.abspath(wsgiprof.__file__)) + os.sep
_CACHE_LIMIT = 50_000
_OUTSIDE: Stack = (OUTSIDE_APP,)
_LOST: Stack = (OVERFLOW,)
_UNKNOWN = Frame("[unknown code]", "<unknown>", 0)
"""A frame whose code object was freed before its name could be read."""


def _wsgiprof_request(function: Callable[..., T], *args: Any) -> T:
    """The root frame of a profiled request's application code: the handler stops walking here."""
    return function(*args)


_MARKER = id(_wsgiprof_request.__code__)


try:
    from wsgiprof import _cpusampler as _sampler
except ImportError:  # installed where no C compiler was found
    _BUILT = False
else:
    _BUILT = True


def unavailable_reason() -> str | None:
    """Why the engine cannot run in this process, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (per-thread CPU-time timers)"
    if not _BUILT:
        return (
            "has no C extension in this installation (wsgiprof._cpusampler was not built: "
            "reinstall wsgiprof where a C compiler and the Python headers are present)"
        )
    if not _sampler.SUPPORTED:
        return "is not supported on this platform"
    if _sampler.code_info(id(unavailable_reason.__code__)) is None:
        return "cannot read its own memory with process_vm_readv here (a seccomp profile?)"
    return None


class _Users:
    """Engines of this process that have started; the last to close deletes every timer."""

    def __init__(self) -> None:
        self._engines: set[int] = set()
        self._lock = threading.Lock()
        self.active: dict[int, CpuTimerProfile] = {}
        """The profile in progress on each thread, whichever engine started it."""

    def join(self, engine: CpuTimerEngine) -> None:
        with self._lock:
            self._engines.add(id(engine))

    def leave(self, engine: CpuTimerEngine) -> None:
        with self._lock:
            if id(engine) not in self._engines:
                return
            self._engines.discard(id(engine))
            last = not self._engines
        if last:
            _sampler.shutdown()

    def begin(self, profile: CpuTimerProfile) -> bool:
        with self._lock:
            if profile.thread in self.active:
                return False
            self.active[profile.thread] = profile
            return True

    def end(self, profile: CpuTimerProfile) -> None:
        with self._lock:
            if self.active.get(profile.thread) is profile:
                del self.active[profile.thread]


_USERS = _Users()


class CpuTimerEngine:
    """Samples each profiled request's thread every ``interval`` seconds of its CPU time.

    Raises :class:`RuntimeError` when the engine cannot run here (see :func:`unavailable_reason`).
    """

    name = "cputimer"

    def __init__(self, *, interval: float = 0.001) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"the cputimer engine {reason}")
        self.interval = interval
        self._interval_ns = max(1000, round(interval * 1e9))
        self._symbols = _Symbols()
        self._started = False
        self._lock = threading.Lock()
        self._signals = 0
        self._expirations = 0

    def start(self) -> CpuTimerProfile:
        if not self._started:
            self._started = True
            _USERS.join(self)
        # A thread started outside `threading` (uWSGI, mod_wsgi) gets its Thread object here.
        threading.current_thread()
        profile = CpuTimerProfile(self)
        if not _USERS.begin(profile):
            raise EngineUnavailableError("a request is already profiled on this thread")
        try:
            _sampler.start(self._interval_ns, _MARKER)
        except (OSError, RuntimeError) as exc:
            _USERS.end(profile)
            raise EngineUnavailableError(f"cannot arm the thread's CPU timer: {exc}") from exc
        profile.begin()
        return profile

    def close(self) -> None:
        """Delete every timer of the process if no other engine uses them; forget cached names."""
        if self._started:
            self._started = False
            _USERS.leave(self)
        self._symbols.clear()

    def capture(
        self, samples: list[tuple[int, ...]], lost: int, cpu: float, wall: float
    ) -> Capture:
        """Weight the samples of one request (see the module docstring)."""
        interval = self._interval_ns / 1e9
        with self._lock:
            self._signals += sum(sample[0] for sample in samples)
            self._expirations += sum(sample[1] for sample in samples)
            per_signal = interval * self._expirations / self._signals if self._signals else 0.0
        stacks: dict[Stack, Weight] = {}
        to_stack = self._symbols.stack
        checked: dict[int, Frame | None] = {}
        for sample in samples:
            seconds = sample[0] * per_signal
            stack = to_stack(sample[3:], checked) if sample[2] & FOUND_REQUEST else _OUTSIDE
            weight = stacks.get(stack)
            if weight is None:
                weight = stacks[stack] = Weight()
            weight.samples += sample[0]
            weight.cpu += seconds
            weight.wall += seconds
        if lost:
            stacks[_LOST] = Weight(0, lost * interval, lost * interval)
        if wall > cpu:
            stacks[(NOT_ON_CPU,)] = Weight(0, wall - cpu, 0.0)
        return Capture(cpu=cpu, wall=wall, stacks=stacks)


class CpuTimerProfile:
    """One profiled request on one thread; see :class:`CpuTimerEngine`."""

    __slots__ = ("_cpu", "_engine", "_stopped", "_wall", "thread")

    def __init__(self, engine: CpuTimerEngine) -> None:
        self._engine = engine
        self.thread = threading.get_ident()
        self._stopped = False
        self._cpu = 0.0
        self._wall = 0.0

    def begin(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function(*args)`` under the request's frame, so that its samples are ours."""
        return _wsgiprof_request(function, *args)

    def stop(self) -> Capture | None:
        """The request's CPU, wall and weighted stacks; None if stopped on another thread (the
        thread's samples are then dropped at its next start)."""
        if self._stopped:
            return None
        self._stopped = True
        _USERS.end(self)
        if threading.get_ident() != self.thread:
            return None
        result = _sampler.stop()
        cpu = time.thread_time() - self._cpu
        wall = time.perf_counter() - self._wall
        if result is None:
            return None
        samples, lost = result
        return self._engine.capture(samples, lost, cpu, wall)


class _Symbols:
    """Code object addresses to :class:`~wsgiprof.model.Frame`, cached and checked.

    A cached address is trusted only if the code object there still has the same name, file and
    first line objects (one safe read, :func:`_cpusampler.code_key`): a freed code object's
    address may hold another one. wsgiprof's own functions map to None and are left out.
    """

    def __init__(self) -> None:
        self._frames: dict[int, tuple[tuple[int, ...] | None, Frame | None]] = {}
        self._qualnames: dict[str, dict[tuple[int, str], str]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._qualnames.clear()

    def stack(self, addresses: tuple[int, ...], checked: dict[int, Frame | None]) -> Stack:
        """The stack of a sample's code addresses (leaf first), root first, without wsgiprof.

        ``checked`` holds the addresses already looked up for this request (each is checked
        once per request)."""
        frames = []
        with self._lock:
            for address in reversed(addresses):
                if address in checked:
                    frame = checked[address]
                else:
                    frame = checked[address] = self._frame(address)
                if frame is not None:
                    frames.append(frame)
        return tuple(frames) or _OUTSIDE

    def _frame(self, address: int) -> Frame | None:
        key = _sampler.code_key(address)
        cached = self._frames.get(address)
        if cached is not None and cached[0] == key:
            return cached[1]
        frame = self._read(address) if key is not None else _UNKNOWN
        if len(self._frames) >= _CACHE_LIMIT:
            self._frames.clear()
        self._frames[address] = (key, frame)
        return frame

    def _read(self, address: int) -> Frame | None:
        info = _sampler.code_info(address)
        if info is None:
            return _UNKNOWN
        file, name, qualname, first_line = info
        if file.startswith(_PACKAGE_DIR):
            return None
        if qualname is None:
            names = self._qualnames.get(file)
            if names is None:
                names = qualified_names(file) if file.endswith(".py") else {}
                if len(self._qualnames) >= 5_000:
                    self._qualnames.clear()
                self._qualnames[file] = names
            qualname = names.get((first_line, name), name)
        return Frame(qualname, file, first_line)
