"""Crash soak: many profiled requests through each engine, each scenario in a process of its own.

Why. The pyinstrument engine once segfaulted applications on CPython 3.11 (fixed in 22c9dc6): it
changed pyinstrument's profiler from inside its own sample callback, and when the first sample of a
request fell in a finalizer run by a garbage-collection pass that CPython 3.11 started inside the
profile hook's frame allocation, the profiler's state was freed under the hook. Unit tests with
small, clean apps never got there; an app that makes garbage the way real apps do, under enough
profiled requests, does. This soak is that app and that load.

Scenarios: engine (pyinstrument, yappi) x sample rate (:data:`RATES`: 0.05, the default, and 1.0)
x transport (``inprocess``: the WSGI callable called in a loop by the child itself; ``threaded``:
werkzeug's threaded server in the child on 127.0.0.1, loaded by :data:`CLIENT_THREADS` keep-alive
connections from this process, so that many server threads serve at once). Each scenario runs in
a child process (``python -X faulthandler -m benchmarks.soak --child ...``), so a segfault shows
as the child's exit by a signal (a negative return code) instead of killing the harness. A child
that dies is replaced by a fresh one until the scenario has its requests or its time is up, so a
row counts every crash, not only the first. A child that stops serving (no request done for
:data:`HANG_S` seconds, not ready in :data:`READY_S`, not gone :data:`STOP_GRACE_S` after its
load) is killed and counted as a hang, then replaced too: a profiler corrupting the interpreter
can also leave a thread spinning with the GIL held. Every child is bounded in requests and in time
(the parent kills a child that outlives its deadline; that is a timeout, not a crash).

The app (:func:`garbage_app`) makes garbage like real apps: objects in reference cycles whose
``__del__`` runs Python code (ORM objects and their sessions, parent/child back references),
generators dropped mid-iteration (a template or a query result not read to the end), some of them
inside cycles so that the collector closes them, and ``weakref.finalize`` / weakref callbacks on
objects in cycles (caches, signal receivers); plus some ordinary CPU work (small calls, JSON).
The child lowers the collector's thresholds to :data:`GC_THRESHOLD` (``--gc-threshold`` sets
others) so that collections, and the finalizers they run, happen often: inside requests, and
inside the profilers' hooks.

Each child reports its resident set size (psutil) when the load starts and when it ends, the
requests it served (and how many of them were profiled), the finalizers it ran and its
collections; the parent adds the return code and the requests per second.

Command line (the harness runs :func:`run` as ``python -m benchmarks --only soak``)::

    python -m benchmarks.soak [--full | --smoke] [--engines NAME ...] [--engine-source FILE]
                              [--gc-threshold N N N] [--label TEXT] [--csv PATH]

``--engine-source`` runs the children with another version of the pyinstrument engine module,
for example the engine before the fix::

    git show 9267fd5:wsgiprof/engines/pyinstrument.py > engine_before_fix.py
    python -m benchmarks.soak --full --engines pyinstrument --engine-source engine_before_fix.py \\
        --label "before the fix (9267fd5)" --csv benchmarks/results/soak_before_fix.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import http.client
import importlib.util
import json
import mmap
import os
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.settings import MODES, Mode
from benchmarks.timing import progress

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REPO_ROOT = Path(__file__).resolve().parent.parent
BEFORE_FIX_CSV = Path(__file__).resolve().parent / "results" / "soak_before_fix.csv"
ENGINES: tuple[str, ...] = ("pyinstrument", "yappi")
RATES: tuple[float, ...] = (0.05, 1.0)
TRANSPORTS: tuple[str, ...] = ("inprocess", "threaded")
CLIENT_THREADS = 8
GC_THRESHOLD = (100, 10, 10)
ROUTES: tuple[str, ...] = ("/cycles", "/generators", "/weakrefs", "/mixed")
PROGRESS_EVERY_S = 0.5
MAX_CHILDREN = 200
KILL_GRACE_S = 20.0
READY_S = 60.0
HANG_S = 60.0
STOP_GRACE_S = 30.0
THIS_CHECKOUT = "this checkout"
_COUNTS = struct.Struct("<4q")  # requests, profiled, finalizers, collections

# -- the app --------------------------------------------------------------------------------

# Finalizer counts, kept without a lock on purpose: a finalizer can run in the middle of any
# code of its thread, so taking a lock there could deadlock. A lost increment under a thread
# switch only makes these approximate counts a little low.
_FINALIZED = {"del": 0, "generator": 0, "weakref": 0}


def _tally(kind: str) -> None:
    _FINALIZED[kind] += 1


def finalizers_run() -> int:
    """How many ``__del__`` methods, generator ``finally`` blocks and weakref callbacks ran."""
    return sum(_FINALIZED.values())


def _checksum(values: Sequence[int]) -> int:
    total = 0
    for value in values:
        total = (total * 31 + value) % 1_000_003
    return total


class Node:
    """One side of a reference cycle with a finalizer: only the cycle collector frees it, and its
    ``__del__`` runs Python code (a call, a loop), like an ORM object releasing its session."""

    __slots__ = ("__weakref__", "payload", "peer")

    def __init__(self, payload: list[int]) -> None:
        self.payload = payload
        self.peer: object = None

    def __del__(self) -> None:
        _checksum(self.payload[:8])
        _tally("del")


def rows(n: int) -> Iterator[dict[str, object]]:
    """A lazy result set; its ``finally`` runs when it is dropped unfinished (closed by the
    interpreter, or by the collector when the generator sits in a cycle)."""
    try:
        for i in range(n):
            yield {"id": i, "name": f"row {i}", "score": i * 0.5}
    finally:
        _checksum([n, 1, 2])
        _tally("generator")


class Holder:
    """Keeps a half-read generator inside a reference cycle (a view holding its cursor)."""

    def __init__(self, source: Iterator[dict[str, object]]) -> None:
        self.source = source
        self.me = self


def _on_finalize(key: int) -> None:
    _checksum([key, key + 1])
    _tally("weakref")


def _on_dead(_ref: weakref.ref[Node]) -> None:
    _tally("weakref")


def make_cycles(n: int) -> int:
    """``n`` pairs of nodes referring to each other, then dropped."""
    total = 0
    for i in range(n):
        a, b = Node([i, i + 1, i + 2]), Node(list(range(i % 7 + 3)))
        a.peer, b.peer = b, a
        total += len(a.payload) + len(b.payload)
    return total


def drop_generators(n: int) -> int:
    """``n`` generators read partly and dropped: every other one inside a cycle."""
    total = 0
    for i in range(n):
        source = rows(50)
        for _ in range(i % 4 + 1):
            total += int(str(next(source)["id"]))
        if i % 2:
            Holder(source)
    return total


_KEEP: list[weakref.ref[Node]] = []


def watched_objects(n: int) -> int:
    """``n`` objects in cycles with a ``weakref.finalize`` each, and weak references with callbacks
    (kept alive by a small ring, as a cache keeps its references)."""
    for i in range(n):
        node = Node([i])
        node.peer = node
        weakref.finalize(node, _on_finalize, i)
        _KEEP.append(weakref.ref(node, _on_dead))
    del _KEEP[: max(len(_KEEP) - 64, 0)]
    return n


def _add(a: int, b: int) -> int:
    return a + b


def _fib(n: int) -> int:
    return n if n < 2 else _add(_fib(n - 1), _fib(n - 2))


def ordinary_work() -> int:
    """Some small Python calls and a JSON encoding, as a view computes and serialises."""
    data = {f"k{i}": [i, str(i), {"v": i}] for i in range(40)}
    return _fib(12) + len(json.dumps(data))


_ROUTE_WORK: dict[str, Callable[[], int]] = {
    "/cycles": lambda: make_cycles(20) + ordinary_work(),
    "/generators": lambda: drop_generators(12) + ordinary_work(),
    "/weakrefs": lambda: watched_objects(12) + ordinary_work(),
    "/mixed": lambda: make_cycles(8) + drop_generators(5) + watched_objects(5) + ordinary_work(),
}


class Counter:
    """A thread-safe count of served and profiled requests (never touched by a finalizer).

    With a ``shared`` buffer (a file mapped by parent and child) every request also writes the
    counts there, finalizers and collections too, so the parent knows them exactly even when the
    child dies without a word."""

    def __init__(self, shared: mmap.mmap | None = None) -> None:
        self.requests = 0
        self.profiled = 0
        self._shared = shared
        self._lock = threading.Lock()

    def add(self, profiled: bool) -> None:
        with self._lock:
            self.requests += 1
            self.profiled += profiled
            if self._shared is not None:
                _COUNTS.pack_into(
                    self._shared,
                    0,
                    self.requests,
                    self.profiled,
                    finalizers_run(),
                    _collections(),
                )

    def done(self, requests: int, profiled: int) -> bool:
        return self.requests >= requests and self.profiled >= profiled


def garbage_app(counter: Counter) -> WSGIApplication:
    """The soak's WSGI app: :data:`ROUTES`, each making garbage and doing a little CPU work; its
    body is a generator, as streamed responses are. Counts the requests it served."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        work = _ROUTE_WORK.get(environ.get("PATH_INFO", ""))
        if work is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        body = f"{work()}\n".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        counter.add(bool(environ.get("wsgiprof.profiled")))
        return _chunks(body)

    return app


def _chunks(body: bytes) -> Iterator[bytes]:
    yield body


# -- the child process ----------------------------------------------------------------------


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _emit(event: str, **values: object) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


def _collections() -> int:
    return sum(int(stats["collections"]) for stats in gc.get_stats())


def _use_engine_source(path: str) -> None:
    """Load the pyinstrument engine module from ``path`` in place of the installed one (for a
    soak of another version of the engine, such as the one before a fix)."""
    import wsgiprof.engines

    name = "wsgiprof.engines.pyinstrument"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load an engine from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    wsgiprof.engines.pyinstrument = module


def _child(spec: dict[str, Any]) -> int:
    """One scenario's child: build the app, serve ``spec['requests']`` requests or stop at
    ``spec['seconds']``, print JSON lines (``ready``, ``progress``, ``done``) on stdout."""
    if spec.get("engine_source"):
        _use_engine_source(str(spec["engine_source"]))
    from wsgiprof import Config, ProfilerMiddleware

    gc.set_threshold(*(int(n) for n in spec["gc_threshold"]))
    with open(str(spec["counts"]), "r+b") as file:
        shared = mmap.mmap(file.fileno(), _COUNTS.size)
    counter = Counter(shared)
    config = Config(
        enabled=True,
        sample_rate=float(spec["rate"]),
        engine=str(spec["engine"]),
        store="memory",
        token=None,
    )
    middleware = ProfilerMiddleware(garbage_app(counter), config=config)
    requests, profiled = int(spec["requests"]), int(spec["profiled"])
    began = time.monotonic()
    deadline, at_least = began + float(spec["seconds"]), began + float(spec["min_seconds"])

    def status(event: str, **extra: object) -> None:
        _emit(
            event,
            requests=counter.requests,
            profiled=counter.profiled,
            rss_mb=round(_rss_mb(), 2),
            finalizers=finalizers_run(),
            collections=_collections(),
            **extra,
        )

    if spec["transport"] == "inprocess":
        from benchmarks.apps import call, environ_for

        environs = [environ_for(route) for route in ROUTES]
        status("ready")
        next_report = time.monotonic() + PROGRESS_EVERY_S
        i = 0
        now = began
        while not counter.done(requests, profiled) or now < at_least:
            call(middleware, environs[i % len(environs)])
            i += 1
            if i % 32 == 0:
                now = time.monotonic()
                if now >= deadline:
                    break
                if now >= next_report:
                    next_report = now + PROGRESS_EVERY_S
                    status("progress")
    else:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        server = make_server(
            "127.0.0.1", 0, middleware, threaded=True, request_handler=QuietHandler
        )
        serving = threading.Thread(target=server.serve_forever, name="soak-server", daemon=True)
        serving.start()
        stop = threading.Event()

        def wait_for_stop() -> None:
            sys.stdin.readline()  # the parent writes a line (or closes stdin) when the load ends
            stop.set()

        threading.Thread(target=wait_for_stop, name="soak-stdin", daemon=True).start()
        status("ready", port=server.server_port)
        while not stop.wait(PROGRESS_EVERY_S) and time.monotonic() < deadline:
            status("progress")
        server.shutdown()
        server.server_close()
    status("done")
    middleware.close()
    return 0


# -- the parent -----------------------------------------------------------------------------


@dataclass
class SoakRow:
    """One scenario: every child it took, summed. ``rss_start_mb`` is the first child's RSS when
    its load started, ``rss_end_mb`` the last child's when its load ended (or its last report
    before it died)."""

    label: str
    engine: str
    rate: float
    transport: str
    target: int
    target_profiled: int
    gc_threshold: tuple[int, int, int] = GC_THRESHOLD
    requests: int = 0
    profiled: int = 0
    seconds: float = 0.0
    rss_start_mb: float = float("nan")
    rss_end_mb: float = float("nan")
    children: int = 0
    crashes: int = 0
    signals: str = ""
    hangs: int = 0
    first_failure_after: int | None = None
    returncodes: str = ""
    errors: int = 0
    finalizers: int = 0
    collections: int = 0
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class _ChildOutcome:
    returncode: int = 0
    killed: bool = False
    ready: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    seconds: float = 0.0
    requests: int = 0
    profiled: int = 0
    finalizers: int = 0
    collections: int = 0
    errors: int = 0
    fatal: str = ""
    stderr: list[str] = field(default_factory=list)
    hung: str = ""


class _Watchdog:
    """Kills a child that is stuck: not ready in :data:`READY_S`, no request served for
    :data:`HANG_S` while loaded, or not gone :data:`STOP_GRACE_S` after its load ended. The
    reason is left in ``outcome.hung``."""

    def __init__(self, child: subprocess.Popen[str], counts: str, outcome: _ChildOutcome) -> None:
        self._child = child
        self._counts = counts
        self._outcome = outcome
        self._phase = "starting"
        self._since = time.monotonic()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="soak-watchdog", daemon=True)
        self._thread.start()

    def enter(self, phase: str) -> None:
        """The child is now ``loading`` or ``stopping``."""
        self._phase, self._since = phase, time.monotonic()

    def finish(self) -> None:
        self._finished.set()
        self._thread.join()

    def _watch(self) -> None:
        served = -1
        while not self._finished.wait(1.0) and self._child.poll() is None:
            now = time.monotonic()
            if self._phase == "loading":
                latest = _read_counts(self._counts)[0]
                if latest != served:
                    served, self._since = latest, now
                limit, why = HANG_S, f"no request served for {HANG_S:.0f} s"
            elif self._phase == "starting":
                limit, why = READY_S, f"not ready after {READY_S:.0f} s"
            else:
                limit, why = STOP_GRACE_S, f"still running {STOP_GRACE_S:.0f} s after its load"
            if now - self._since > limit:
                self._outcome.hung = why
                self._child.kill()
                return


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _read_lines(stream: Iterable[str], into: queue.Queue[dict[str, Any] | None]) -> None:
    for line in stream:
        with contextlib.suppress(ValueError):
            into.put(json.loads(line))
    into.put(None)


def _read_counts(path: str) -> tuple[int, int, int, int]:
    """The child's shared counts: requests, profiled, finalizers, collections."""
    with open(path, "rb") as file:
        values: tuple[int, int, int, int] = _COUNTS.unpack(file.read(_COUNTS.size))
        return values


def _load(
    port: int, spec: dict[str, Any], deadline: float, child: subprocess.Popen[str]
) -> tuple[int, int]:
    """GETs over :data:`CLIENT_THREADS` connections at once until the child has served
    ``spec['requests']`` (and profiled ``spec['profiled']``), the deadline passes or the child
    dies; the 200 responses and the errors."""
    lock = threading.Lock()
    counts = {"sent": 0, "ok": 0, "errors": 0}
    stop = threading.Event()
    requests, profiled = int(spec["requests"]), int(spec["profiled"])
    at_least = time.monotonic() + float(spec["min_seconds"])

    def enough() -> bool:
        with lock:
            if counts["ok"] < requests or time.monotonic() < at_least:
                return False
        return profiled == 0 or _read_counts(spec["counts"])[1] >= profiled

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if enough():
                    stop.set()
                    return
                with lock:
                    counts["sent"] += 1
                    n = counts["sent"]
                try:
                    conn.request("GET", ROUTES[(n + index) % len(ROUTES)])
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    if child.poll() is not None:
                        stop.set()
                        return
                with lock:
                    counts["ok" if ok else "errors"] += 1
                    if counts["errors"] > 100 + counts["ok"] // 100:
                        stop.set()
        finally:
            conn.close()

    threads = [
        threading.Thread(target=client, args=(i,), name=f"soak-client-{i}")
        for i in range(CLIENT_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["ok"], counts["errors"]


def _run_child(spec: dict[str, Any]) -> _ChildOutcome:
    """Run one child for a scenario's remaining requests and time, and say how it ended."""
    outcome = _ChildOutcome()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    seconds = float(spec["seconds"])
    with contextlib.ExitStack() as stack:
        counts = stack.enter_context(tempfile.NamedTemporaryFile(prefix="wsgiprof-soak-"))
        counts.write(bytes(_COUNTS.size))
        counts.flush()
        spec = {**spec, "counts": counts.name}
        stderr = stack.enter_context(
            tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        )
        child = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "faulthandler",
                "-m",
                "benchmarks.soak",
                "--child",
                json.dumps(spec),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdin is not None
        lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
        reader.start()
        watchdog = _Watchdog(child, counts.name, outcome)
        deadline = time.monotonic() + seconds + KILL_GRACE_S
        started = time.monotonic()
        ended = False

        def take(timeout: float) -> None:
            """Read one line of the child's into the outcome, if one comes in time."""
            nonlocal started, ended
            try:
                message = lines.get(timeout=max(timeout, 0.0))
            except queue.Empty:
                return
            if message is None:
                ended = True
                return
            if message["event"] == "ready":
                outcome.ready = message
                started = time.monotonic()
                watchdog.enter("loading")
            elif message["event"] == "done":
                outcome.done = True
                watchdog.enter("stopping")
            outcome.last = message

        while not outcome.ready and not ended and time.monotonic() < deadline:
            take(deadline - time.monotonic())
        if spec["transport"] == "threaded" and outcome.ready:
            outcome.requests, outcome.errors = _load(
                int(outcome.ready["port"]), spec, started + seconds, child
            )
            watchdog.enter("stopping")
            with contextlib.suppress(OSError):
                child.stdin.write("stop\n")
                child.stdin.flush()
        while not ended and time.monotonic() < deadline:
            take(min(deadline - time.monotonic(), 1.0))
        end = time.monotonic()
        try:
            outcome.returncode = child.wait(STOP_GRACE_S if ended else 0.1)
        except subprocess.TimeoutExpired:
            outcome.killed = True
            child.kill()
            outcome.returncode = child.wait()
        watchdog.finish()
        with contextlib.suppress(OSError):
            child.stdin.close()
        served, outcome.profiled, outcome.finalizers, outcome.collections = _read_counts(
            counts.name
        )
        if spec["transport"] == "inprocess":
            outcome.requests = served
        outcome.seconds = (end - started) if outcome.ready else 0.0
        stderr.seek(0)
        text = [line for line in stderr.read().splitlines() if line.strip()]
        fatal = [line for line in text if line.startswith("Fatal Python error")]
        outcome.fatal = fatal[0] if fatal else (text[-1] if text else "")
        outcome.stderr = text
    return outcome


def run_scenario(
    engine: str,
    rate: float,
    transport: str,
    mode: Mode,
    *,
    engine_source: str | None = None,
    gc_threshold: tuple[int, int, int] = GC_THRESHOLD,
    label: str = THIS_CHECKOUT,
) -> SoakRow:
    """One scenario: children one after the other (a new one after each crash) until
    ``mode.soak_requests`` requests were served (at rate 1.0: and profiled), or
    ``mode.soak_seconds`` are up."""
    target = mode.soak_requests
    row = SoakRow(
        label, engine, rate, transport, target, target if rate >= 1.0 else 0, gc_threshold
    )
    signals: dict[str, int] = {}
    codes: list[str] = []
    deadline = time.monotonic() + mode.soak_seconds
    notes: list[str] = []

    def finished() -> bool:
        return (
            row.requests >= row.target
            and row.profiled >= row.target_profiled
            and row.seconds >= mode.soak_min_seconds
        )

    said: dict[str, int] = {}

    while not finished():
        left = deadline - time.monotonic()
        if left <= 1.0:
            notes.append("time limit reached")
            break
        if row.children == MAX_CHILDREN:
            notes.append(f"stopped after {MAX_CHILDREN} children")
            break
        outcome = _run_child(
            {
                "engine": engine,
                "rate": rate,
                "transport": transport,
                "requests": max(row.target - row.requests, 0),
                "profiled": max(row.target_profiled - row.profiled, 0),
                "seconds": left,
                "min_seconds": max(mode.soak_min_seconds - row.seconds, 0.0),
                "engine_source": engine_source,
                "gc_threshold": gc_threshold,
            }
        )
        row.children += 1
        if row.children == 1 and outcome.ready:
            row.rss_start_mb = float(outcome.ready["rss_mb"])
        if outcome.last:
            row.rss_end_mb = float(outcome.last["rss_mb"])
        row.requests += outcome.requests
        row.profiled += outcome.profiled
        row.finalizers += outcome.finalizers
        row.collections += outcome.collections
        row.seconds += outcome.seconds
        row.errors += outcome.errors
        code = outcome.returncode
        codes.append(str(code))
        if code >= 0:  # what a child that did not crash wrote on stderr (warnings, errors)
            for line in outcome.stderr:
                said[line[:160]] = said.get(line[:160], 0) + 1
        if outcome.killed:
            notes.append(f"child {row.children} killed after its deadline")
            break
        if outcome.hung:
            row.hangs += 1
            if row.hangs == 1:
                notes.append(f"first hang: {outcome.hung}, killed")
            if row.first_failure_after is None:
                row.first_failure_after = row.requests
            continue
        if code < 0:
            name = _signal_name(-code)
            signals[name] = signals.get(name, 0) + 1
            row.crashes += 1
            if row.crashes == 1 and outcome.fatal:
                notes.append(f"first crash: {outcome.fatal}")
            if row.first_failure_after is None:
                row.first_failure_after = row.requests
            continue
        if code != 0 or not outcome.done:
            notes.append(f"child {row.children} exited with {code}: {outcome.fatal}")
            break
        if outcome.requests == 0:
            notes.append("a child served no request")
            break
    row.signals = ", ".join(f"{name} x{count}" for name, count in signals.items())
    row.returncodes = " ".join(_summarise_codes(codes))
    notes += [f"child stderr: {line!r} x{n}" for line, n in list(said.items())[:3]]
    if len(said) > 3:
        notes.append(f"{len(said) - 3} more distinct stderr lines")
    row.note = "; ".join(notes)
    return row


def _summarise_codes(codes: Sequence[str]) -> list[str]:
    """``['-11', '-11', '0']`` as ``['-11 x2', '0']``, in order of first appearance."""
    counts: dict[str, int] = {}
    for code in codes:
        counts[code] = counts.get(code, 0) + 1
    return [code if n == 1 else f"{code} x{n}" for code, n in counts.items()]


def run(
    mode: Mode,
    *,
    engines: Sequence[str] = ENGINES,
    engine_source: str | None = None,
    gc_threshold: tuple[int, int, int] = GC_THRESHOLD,
    label: str = THIS_CHECKOUT,
) -> list[SoakRow]:
    """Every scenario of the soak, one after the other."""
    rows: list[SoakRow] = []
    for engine in engines:
        for rate in RATES:
            for transport in TRANSPORTS:
                row = run_scenario(
                    engine,
                    rate,
                    transport,
                    mode,
                    engine_source=engine_source,
                    gc_threshold=gc_threshold,
                    label=label,
                )
                crashes = f"{row.crashes} crashes" + (f" ({row.signals})" if row.signals else "")
                crashes += f", {row.hangs} hangs"
                progress(
                    f"soak {engine} rate {rate:g} {transport}: {row.requests:,} requests "
                    f"({row.profiled:,} profiled) in {row.seconds:.1f} s, {row.rps:.0f}/s, "
                    f"{crashes}, RSS {row.rss_start_mb:.1f} -> {row.rss_end_mb:.1f} MB"
                )
                rows.append(row)
    return rows


# -- CSV ------------------------------------------------------------------------------------

COLUMNS: tuple[str, ...] = (
    "label",
    "engine",
    "rate",
    "transport",
    "target_requests",
    "target_profiled",
    "gc_threshold",
    "requests",
    "profiled",
    "seconds",
    "rps",
    "rss_start_mb",
    "rss_end_mb",
    "children",
    "crashes",
    "signals",
    "hangs",
    "first_failure_after_requests",
    "returncodes",
    "client_errors",
    "finalizers",
    "gc_collections",
    "note",
)


def csv_row(row: SoakRow) -> list[object]:
    """``row`` as the values of :data:`COLUMNS`."""
    return [
        row.label,
        row.engine,
        row.rate,
        row.transport,
        row.target,
        row.target_profiled,
        " ".join(map(str, row.gc_threshold)),
        row.requests,
        row.profiled,
        round(row.seconds, 3),
        round(row.rps, 1),
        round(row.rss_start_mb, 2),
        round(row.rss_end_mb, 2),
        row.children,
        row.crashes,
        row.signals,
        row.hangs,
        "" if row.first_failure_after is None else row.first_failure_after,
        row.returncodes,
        row.errors,
        row.finalizers,
        row.collections,
        row.note,
    ]


def write_csv(rows: Sequence[SoakRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(csv_row(row) for row in rows)


def read_csv(path: Path) -> list[SoakRow]:
    """Rows written by :func:`write_csv` (the committed run of the engine before the fix)."""
    with path.open(encoding="utf-8", newline="") as file:
        return [
            SoakRow(
                label=r["label"],
                engine=r["engine"],
                rate=float(r["rate"]),
                transport=r["transport"],
                target=int(r["target_requests"]),
                target_profiled=int(r["target_profiled"]),
                gc_threshold=_threshold(r["gc_threshold"].split()),
                requests=int(r["requests"]),
                profiled=int(r["profiled"]),
                seconds=float(r["seconds"]),
                rss_start_mb=float(r["rss_start_mb"]),
                rss_end_mb=float(r["rss_end_mb"]),
                children=int(r["children"]),
                crashes=int(r["crashes"]),
                signals=r["signals"],
                hangs=int(r["hangs"]),
                first_failure_after=int(r["first_failure_after_requests"])
                if r["first_failure_after_requests"]
                else None,
                returncodes=r["returncodes"],
                errors=int(r["client_errors"]),
                finalizers=int(r["finalizers"]),
                collections=int(r["gc_collections"]),
                note=r["note"],
            )
            for r in csv.DictReader(file)
        ]


def _threshold(values: Sequence[str | int]) -> tuple[int, int, int]:
    first, second, third = (int(v) for v in values)
    return first, second, third


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--full", action="store_true", help="the full soak")
    group.add_argument("--smoke", action="store_true", help="a tiny run checking the soak")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument(
        "--engine-source", type=Path, help="a pyinstrument engine module to run instead"
    )
    parser.add_argument(
        "--gc-threshold",
        nargs=3,
        type=int,
        default=list(GC_THRESHOLD),
        metavar="N",
        help="the children's gc.set_threshold",
    )
    parser.add_argument("--label", default=THIS_CHECKOUT, help="names the run in the CSV")
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "soak.csv",
        help="where to write the rows",
    )
    args = parser.parse_args(argv)
    if args.child is not None:
        return _child(json.loads(args.child))
    mode = MODES["full" if args.full else "smoke" if args.smoke else "quick"]
    source = str(args.engine_source.resolve()) if args.engine_source else None
    rows = run(
        mode,
        engines=args.engines,
        engine_source=source,
        gc_threshold=_threshold(args.gc_threshold),
        label=args.label,
    )
    write_csv(rows, args.csv)
    progress(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
