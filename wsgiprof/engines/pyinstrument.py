"""The pyinstrument engine: one sampling session per profiled request, on the request's own thread.

pyinstrument samples the stack of the thread it runs on, at call and return events, once at least
``interval`` seconds of wall time have passed since the previous sample; each sample carries that
wall time. Wall time alone would charge every wait (a database round trip, a lock, the GIL held by
another thread) to whatever Python line was running, which is exactly the mistake this tool exists
to avoid. So at every sample this engine also reads the thread's own CPU clock
(``time.thread_time()``, a ~100 ns call made once per sample, not per event): the CPU a sample gets
is what the thread really consumed during that sample's interval. The CPU weights of a request add
up to its measured thread CPU time, waits invisible to the profiler (a C extension blocking without
a frame) get the little CPU they used, and GIL contention shows as wall time, not CPU.

Safety. pyinstrument's profile function is never installed, changed or removed from inside its
own callback, nor from anything a garbage-collection pass can run: on CPython 3.11 the profile
hook holds its state without a reference while it allocates a frame object, that allocation can
start a GC pass whose finalizers run Python code with profiling on, and replacing the state there
frees it under the hook (a segfault). So the interval never changes during a request, a profile
stopped on another thread (or by a finalizer during a GC pass) stays subscribed, ignoring its
samples, until the next :meth:`PyinstrumentEngine.start` on its thread removes it, and only
pyinstrument's public ``StackSampler.subscribe``/``unsubscribe``/``subscribers`` are used (the same
in 5.0.0 and 5.1.3, whose ``stat_profile.c`` profile function is identical: hence ``>=5.0,<6``).

Sampling interval. Each profiled request is sampled at its own interval, drawn uniformly between
:data:`MIN_INTERVAL_FRACTION` of ``interval`` and ``interval`` when the request starts, and never
changed afterwards (changing it after the first sample would mean changing the profiler inside its
callback). So the first sample falls at a random point of the first ``interval``, and requests
shorter than the interval are sampled in proportion to their duration (down to a tenth of it),
instead of never. The cost: about 2.6 times the samples of a fixed interval on a profiled request
(each sample is a stack walk of a few microseconds), and requests shorter than a tenth of the
interval are never sampled (``[too short to sample]``, with their measured CPU).

Example::

    engine = PyinstrumentEngine(interval=0.001)
    active = engine.start()
    try:
        handle_request()
    finally:
        capture = active.stop()
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import sys
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any

from pyinstrument.stack_sampler import StackSampler, get_stack_sampler

import wsgiprof
from wsgiprof.engines.base import Capture, EngineUnavailableError
from wsgiprof.model import OUTSIDE_APP, UNSAMPLED, Frame, Stack, Weight

BLOCKING_BUILTINS: frozenset[str] = frozenset(
    {
        # sleeping and waiting for other threads or processes
        "sleep",
        "lock.acquire",
        "RLock.acquire",
        "SemLock.acquire",
        "SimpleQueue.get",
        "waitpid",
        "wait",
        "wait3",
        "wait4",
        "waitid",
        "sigwait",
        "sigtimedwait",
        "pause",
        # readiness and network
        "select",
        "poll.poll",
        "epoll.poll",
        "devpoll.poll",
        "kqueue.control",
        "socket.recv",
        "socket.recv_into",
        "socket.recvfrom",
        "socket.recvfrom_into",
        "socket.recvmsg",
        "socket.send",
        "socket.sendall",
        "socket.sendto",
        "socket.sendmsg",
        "socket.connect",
        "socket.connect_ex",
        "socket._accept",
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "_SSLSocket.read",
        "_SSLSocket.write",
        "_SSLSocket.do_handshake",
        # files and pipes
        "read",
        "readinto",
        "FileIO.read",
        "FileIO.readinto",
        "flock",
        "lockf",
        "fsync",
        "fdatasync",
    }
)
"""Names of C functions (leaves named ``<built-in>`` by pyinstrument) that block the thread.

Only a label: the CPU a sample gets is always measured. CPU-heavy C calls (``pbkdf2_hmac``,
``json.dumps``'s encoder, sqlite3's ``Connection.execute``) are deliberately absent. Extend it with
``WSGIPROF_OFF_CPU_FUNCTIONS`` (comma-separated names, matched against leaf function names).
"""

Entry = tuple[str, int, int]
"""File, first line and stack depth of the function that started a profile."""

_PACKAGE_DIR = os.path.dirname(os.path.abspath(wsgiprof.__file__)) + os.sep
_CACHE_LIMIT = 50_000
MIN_INTERVAL_FRACTION = 0.1
"""The shortest per-request sampling interval, as a fraction of the engine's interval."""
_OUTSIDE: Stack = (OUTSIDE_APP,)
_UNSAMPLED: Stack = (UNSAMPLED,)
_SEP = "\x00"
_ATTR = "\x01"


class PyinstrumentEngine:
    """Profiles one request at a time per thread with pyinstrument's stack sampler.

    ``interval`` is the longest wall time between samples; each request draws its own interval
    below it (see the module docstring). ``off_cpu_functions`` adds names to
    :data:`BLOCKING_BUILTINS`.
    """

    name = "pyinstrument"

    def __init__(self, *, interval: float = 0.001, off_cpu_functions: Iterable[str] = ()) -> None:
        self.interval = interval
        self._random = random.Random().uniform
        self._extra_off_cpu = frozenset(off_cpu_functions)
        self._frames: dict[str, tuple[Frame, bool]] = {}
        self._stacks: dict[tuple[Entry, tuple[str, ...]], Stack] = {}
        _GC_WATCH.acquire()
        self._closed = False

    def start(self) -> PyinstrumentProfile:
        sampler = get_stack_sampler()
        if sampler.subscribers:
            release_stale(sampler)
        if sys.getprofile() is not None or _monitoring_profiler_active():
            raise EngineUnavailableError("another profiler is active on this thread")
        if sampler.subscribers:
            raise EngineUnavailableError(
                "a pyinstrument profiler is already running on this thread"
            )
        caller = sys._getframe(1)
        depth = 0
        frame: FrameType | None = caller
        while frame is not None:
            depth += 1
            frame = frame.f_back
        entry = (caller.f_code.co_filename, caller.f_code.co_firstlineno, depth)
        interval = self._random(MIN_INTERVAL_FRACTION * self.interval, self.interval)
        profile = PyinstrumentProfile(self, entry, interval)
        try:
            sampler.subscribe(profile.on_sample, desired_interval=interval, use_async_context=False)
        except (RuntimeError, ValueError) as exc:
            raise EngineUnavailableError(str(exc)) from exc
        return profile

    def close(self) -> None:
        """Forget cached frames and stop watching GC passes. Profiles still running end normally."""
        if not self._closed:
            self._closed = True
            _GC_WATCH.release()
        self._frames.clear()
        self._stacks.clear()

    def _frame(self, info: str) -> tuple[Frame, bool]:
        cached = self._frames.get(info)
        if cached is not None:
            return cached
        identifier, _, attributes = info.partition(_ATTR)
        function, file, line = identifier.split(_SEP)
        for attribute in attributes.split(_ATTR) if attributes else ():
            if attribute.startswith("c"):
                function = f"{attribute[1:]}.{function}"
        builtin = file == "<built-in>"
        off_cpu = (builtin and function in BLOCKING_BUILTINS) or function in self._extra_off_cpu
        frame = Frame(function, file, int(line), off_cpu)
        result = (frame, file.startswith(_PACKAGE_DIR))
        if len(self._frames) >= _CACHE_LIMIT:
            self._frames.clear()
        self._frames[info] = result
        return result

    def to_stack(self, call_stack: list[str], entry: Entry) -> Stack:
        """Convert pyinstrument's frame identifiers (thread first, root to leaf) into a Stack that
        starts at the application's entry.

        The entry is just below the last wsgiprof frame (the middleware, or the wrapper through
        which the server iterates a streamed body) or, without one, below the function that called
        :meth:`PyinstrumentEngine.start`. A sample outside both becomes ``(OUTSIDE_APP,)``.
        """
        # Without the first element (the thread's name and id): a server that starts a thread
        # per request would otherwise fill the cache with one copy of each stack per request.
        key = (entry, tuple(call_stack[1:]))
        stack = self._stacks.get(key)
        if stack is not None:
            return stack
        frames = [self._frame(info) for info in call_stack[1:]]
        start = -1
        for index in range(len(frames) - 1, -1, -1):
            if frames[index][1]:
                start = index + 1
                break
        file, line, depth = entry
        if start < 0 and len(frames) >= depth:
            caller = frames[depth - 1][0]
            if caller.file == file and caller.line == line:
                start = depth
        stack = tuple(frame for frame, _ in frames[start:]) if start >= 0 else ()
        stack = stack or _OUTSIDE
        if len(self._stacks) >= _CACHE_LIMIT:
            self._stacks.clear()
        self._stacks[key] = stack
        return stack


def _monitoring_profiler_active() -> bool:
    """True when a profiler such as cProfile holds ``sys.monitoring``'s profiler slot (Python
    3.12+, where cProfile no longer shows in ``sys.getprofile()``): both would run on every call
    and the profile would measure the other profiler."""
    monitoring: Any = getattr(sys, "monitoring", None)
    return monitoring is not None and monitoring.get_tool(monitoring.PROFILER_ID) is not None


def _blocked_unseen(elapsed: float, cpu: float, interval: float) -> bool:
    """A sample that waited longer than two intervals while using at most about one interval of
    CPU. A thread that kept computing but lost the GIL for a while uses more CPU than that in
    such a long sample, and keeps all of it."""
    return elapsed >= 2 * interval and cpu < 0.5 * elapsed and cpu <= 1.5 * interval


def release_stale(sampler: StackSampler) -> None:
    """Unsubscribe this thread's profiles that were stopped without removing their hook (stopped
    on another thread, or by a finalizer during a GC pass). Call only at a safe point: never from
    a profiler callback or a finalizer."""
    for subscriber in list(sampler.subscribers):
        owner = getattr(subscriber.target, "__self__", None)
        if isinstance(owner, PyinstrumentProfile) and owner.stopped:
            with contextlib.suppress(StackSampler.SubscriberNotFound):
                sampler.unsubscribe(subscriber.target)


class _GcWatch:
    """Knows which threads are inside a garbage-collection pass, from ``gc.callbacks``.

    A profile stopped by a finalizer during a GC pass must leave pyinstrument's hook in place (see
    the module docstring); this tells :meth:`PyinstrumentProfile.stop` when that is the case.
    """

    def __init__(self) -> None:
        self._threads: set[int] = set()
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                gc.callbacks.append(self._on_gc)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                with contextlib.suppress(ValueError):
                    gc.callbacks.remove(self._on_gc)
                self._threads.clear()

    def collecting_here(self) -> bool:
        return threading.get_ident() in self._threads

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._threads.add(threading.get_ident())
        else:
            self._threads.discard(threading.get_ident())


_GC_WATCH = _GcWatch()


class PyinstrumentProfile:
    """One request's sampling session; see :class:`PyinstrumentEngine`."""

    __slots__ = (
        "_cpu_start",
        "_engine",
        "_entry",
        "_interval",
        "_records",
        "_stopped",
        "_thread",
        "_wall_start",
    )

    def __init__(self, engine: PyinstrumentEngine, entry: Entry, interval: float) -> None:
        self._engine = engine
        self._entry = entry
        self._interval = interval
        self._records: list[tuple[list[str], float, float]] = []
        self._thread = threading.get_ident()
        self._stopped = False
        self._wall_start = time.perf_counter()
        self._cpu_start = time.thread_time()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` has run (the subscription may outlive it; see the module)."""
        return self._stopped

    def on_sample(self, call_stack: list[str], elapsed: float, _async_state: Any) -> None:
        """pyinstrument's subscriber callback: runs on the profiled thread at each sample.

        It only records: changing the profiler from here can free it under the hook."""
        if not self._stopped:
            self._records.append((call_stack, elapsed, time.thread_time()))

    def stop(self) -> Capture | None:
        if self._stopped:
            return None
        self._stopped = True
        if threading.get_ident() != self._thread:
            # Only the profiled thread can remove its hook: its next start() does.
            self._records = []
            return None
        cpu_end = time.thread_time()
        wall_end = time.perf_counter()
        if not _GC_WATCH.collecting_here():
            get_stack_sampler().unsubscribe(self.on_sample)
        return self._capture(cpu_end - self._cpu_start, wall_end - self._wall_start)

    def _capture(self, cpu_total: float, wall_total: float) -> Capture:
        """Weight each sampled stack with its wall time and the CPU its thread gained meanwhile.

        Where a sample's interval is known to hold CPU that ran before a wait (the wait itself
        burns none), that CPU goes to the stack that was running before the wait.
        """
        stacks: dict[Stack, Weight] = {}
        to_stack = self._engine.to_stack
        entry = self._entry
        interval = self._interval
        cpu_before = self._cpu_start
        wall_sum = 0.0
        after_wait = False
        previous: Weight | None = None
        previous_rate = 1.0
        for call_stack, elapsed, cpu_now in self._records:
            stack = to_stack(call_stack, entry)
            weight = stacks.get(stack)
            if weight is None:
                weight = stacks[stack] = Weight()
            weight.samples += 1
            weight.wall += elapsed
            cpu = cpu_now - cpu_before
            blocked = False
            if stack[-1].off_cpu:
                # A blocking call burns no CPU: what the thread used in this interval ran before
                # the call began, in the code of the previous sample or else in the caller.
                before = previous or stacks.setdefault(stack[:-1] or _OUTSIDE, Weight())
                before.cpu += cpu
                cpu = 0.0
            elif previous is not None and _blocked_unseen(elapsed, cpu, interval):
                # No event for a while, mostly off CPU and little CPU in all: the thread blocked
                # where the profiler cannot see (a C extension waiting on the network). This
                # sample was not taken at a random time but at the first event after the wait,
                # so the CPU it measured ran before the wait, in the code that was running at
                # the previous sample, up to one interval at that code's CPU rate; only CPU
                # beyond that (a C call computing between its waits) stays with this line.
                moved = min(cpu, interval * previous_rate)
                previous.cpu += moved
                cpu -= moved
                blocked = True
            weight.cpu += cpu
            previous_rate = min(1.0, (cpu_now - cpu_before) / elapsed) if elapsed > 0 else 1.0
            after_wait = stack[-1].off_cpu or blocked
            if stack[-1].off_cpu:
                weight = stacks.setdefault(stack[:-1] or _OUTSIDE, Weight())
            previous = weight
            cpu_before = cpu_now
            wall_sum += elapsed
        self._records = []
        if all(stack == _OUTSIDE for stack in stacks):
            samples = sum(weight.samples for weight in stacks.values())
            return Capture(
                cpu_total, wall_total, {_UNSAMPLED: Weight(samples, wall_total, cpu_total)}
            )
        # Between the last sample and stop(): the code of the last sample finishing.
        tail = previous or stacks.setdefault(_OUTSIDE, Weight())
        tail.wall += max(wall_total - wall_sum, 0.0)
        tail_cpu = max(self._cpu_start + cpu_total - cpu_before, 0.0)
        computed = sum(w.cpu for w in stacks.values()) if after_wait else 0.0
        if computed > 0:
            # The last sample came right after a wait: what ran from there to the end (the code
            # using a query's result, say) was not sampled, and is not the wait. It is spread
            # over the request's CPU in proportion, rather than charged to the waiting line.
            for weight in stacks.values():
                weight.cpu += tail_cpu * weight.cpu / computed
        else:
            tail.cpu += tail_cpu
        return Capture(cpu=cpu_total, wall=wall_total, stacks=stacks)
