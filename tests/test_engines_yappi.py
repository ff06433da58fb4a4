"""The yappi engine: exact CPU and call counts per endpoint, windows, forks, middleware, exports.

Windows are driven, never raced: engine tests open and close them by hand or give the scheduler a
scripted clock (:class:`ScriptedTime`); tests through the middleware wait until a window is open
before they send requests, or hand the middleware an engine the test drives.
"""

from __future__ import annotations

import json
import marshal
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yappi
from werkzeug.test import Client

import wsgiprof.engines
from tests.servers import ThreadedServer, load, run_forked
from wsgiprof import Config, ConfigError, ProfilerMiddleware
from wsgiprof.engines import create_engine
from wsgiprof.engines.yappi import YappiEngine, build_call_graph
from wsgiprof.export.pstats import PstatsExporter
from wsgiprof.model import (
    CALL_GRAPH_ROOT,
    CallGraph,
    CallTotals,
    EndpointProfile,
    Frame,
)
from wsgiprof.stores.codec import decode_delta, encode_delta
from wsgiprof.summary import build_summary

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

FORK_WITH_THREADS = pytest.mark.filterwarnings(
    # What a pre-fork server does, on purpose: fork while other threads run (Python 3.12+ warns).
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)
YAPPI = Config(
    enabled=True, sample_rate=1.0, store="memory", engine="yappi", yappi_window=0.2, token=None
)
FORK_TIMEOUT = 20.0
#: Seconds a polled condition may take; generous, so only a broken engine reaches it.
DEADLINE = 20.0
#: A window longer than any test: once open, it stays open until the engine closes.
LONG_WINDOW = 600.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


class ScriptedTime:
    """A fake clock, and a scheduler wait that moves it on: the first ``steps`` waits end at once
    (the clock advances by the seconds asked for); the next one blocks until the engine closes,
    so the test reads a schedule that stands still. ``waits`` lists every wait asked for."""

    def __init__(self, steps: int) -> None:
        self.now = 0.0
        self.steps = steps
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if len(self.waits) <= self.steps:
            self.now += seconds
            return stop.is_set()
        while not stop.wait(1.0):
            pass
        return True

    def blocked(self) -> bool:
        """True once the scheduler sits in the wait after the scripted ones."""
        return len(self.waits) > self.steps


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def render_invoice() -> int:
    return sum(burn(2000) for _ in range(40))


def crunch_stats() -> int:
    return sum(burn(3000) for _ in range(30))


def tick() -> int:
    return 1


def seven_ticks() -> int:
    return sum(tick() for _ in range(7))


class Recorder:
    """The sink of an engine: call graphs per endpoint, merged as the aggregator would."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.profiles: dict[str, EndpointProfile] = {}

    def __call__(self, endpoint: str, graph: CallGraph) -> None:
        with self.lock:
            profile = self.profiles.setdefault(endpoint, EndpointProfile(endpoint))
            profile.add_call_graph(graph)


@pytest.fixture
def engine() -> Iterator[YappiEngine]:
    engine = YappiEngine(sample_rate=1.0, scheduled=False)
    yield engine
    engine.close()


@pytest.fixture
def recorder(engine: YappiEngine) -> Recorder:
    recorder = Recorder()
    engine.attach(recorder)
    return recorder


def serve(engine: YappiEngine, endpoint: str, work: Callable[[], object]) -> float:
    """One request as the middleware runs it; returns its measured thread CPU."""
    active = engine.start()
    work()
    capture = active.stop()
    assert capture is not None
    engine.resolve(capture.tag, endpoint)
    return capture.cpu


def names(profile: EndpointProfile) -> set[str]:
    return {frame.function for frame in profile.functions}


def totals(profile: EndpointProfile, name: str) -> CallTotals:
    (found,) = [t for f, t in profile.functions.items() if f.function == name]
    return found


# -- exact data per endpoint -----------------------------------------------------------------


def test_two_endpoints_served_concurrently_hold_only_their_own_functions(
    engine: YappiEngine, recorder: Recorder
) -> None:
    measured: dict[str, float] = {}
    barrier = threading.Barrier(2)

    def worker(endpoint: str, work: Callable[[], object]) -> None:
        barrier.wait()
        start = time.thread_time()
        for _ in range(8):
            serve(engine, endpoint, work)
        measured[endpoint] = time.thread_time() - start

    assert engine.open_window()
    threads = [
        threading.Thread(target=worker, args=("GET /invoice", render_invoice)),
        threading.Thread(target=worker, args=("GET /stats", crunch_stats)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.close_window()

    invoice, stats = recorder.profiles["GET /invoice"], recorder.profiles["GET /stats"]
    assert {"render_invoice", "burn"} <= names(invoice)
    assert "crunch_stats" not in names(invoice)
    assert {"crunch_stats", "burn"} <= names(stats)
    assert "render_invoice" not in names(stats)
    assert not any(f.file.startswith(str(Path(yappi.__file__).parent)) for f in invoice.functions)
    for endpoint, profile in recorder.profiles.items():
        assert profile.traced_cpu == pytest.approx(measured[endpoint], rel=0.10)


def test_call_counts_are_exact(engine: YappiEngine, recorder: Recorder) -> None:
    engine.open_window()
    for _ in range(5):
        serve(engine, "GET /ticks", seven_ticks)
    engine.close_window()
    profile = recorder.profiles["GET /ticks"]
    assert totals(profile, "tick").ncall == 35
    assert totals(profile, "seven_ticks").ncall == 5
    edge = next(t for (a, b), t in profile.edges.items() if b.function == "tick")
    assert edge.ncall == 35


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def test_recursive_calls_are_counted_apart_and_stacks_keep_the_time(
    engine: YappiEngine, recorder: Recorder
) -> None:
    engine.open_window()
    serve(engine, "GET /fib", lambda: fib(15))
    engine.close_window()
    profile = recorder.profiles["GET /fib"]
    calls = totals(profile, "fib")
    assert (calls.ncall, calls.nactualcall) == (1973, 1)
    assert all(stack[0] == CALL_GRAPH_ROOT for stack in profile.stacks)
    assert profile.total("cpu") == pytest.approx(profile.traced_cpu, rel=0.02)
    assert profile.total("wall") == 0.0


def test_stacks_spread_a_shared_function_over_its_callers() -> None:
    main, a, b, leaf = (
        Frame(name, "/app/x.py", n) for n, name in enumerate(["main", "a", "b", "leaf"])
    )
    functions = {
        main: CallTotals(1, 1, 0.0, 1.0),
        a: CallTotals(1, 1, 0.1, 0.7),
        b: CallTotals(1, 1, 0.1, 0.3),
        leaf: CallTotals(4, 4, 0.8, 0.8),
    }
    edges = {
        (main, a): CallTotals(1, 1, 0.1, 0.7),
        (main, b): CallTotals(1, 1, 0.1, 0.3),
        (a, leaf): CallTotals(3, 3, 0.6, 0.6),
        (b, leaf): CallTotals(1, 1, 0.2, 0.2),
    }
    graph = build_call_graph(functions, edges)
    cpu = {tuple(f.function for f in s[1:]): w.cpu for s, w in graph.stacks.items()}
    assert cpu == pytest.approx(
        {
            ("main", "a"): 0.1,
            ("main", "a", "leaf"): 0.6,
            ("main", "b"): 0.1,
            ("main", "b", "leaf"): 0.2,
        }
    )


def test_a_request_that_outlives_its_window_is_counted_and_delivered_when_named(
    engine: YappiEngine, recorder: Recorder
) -> None:
    engine.open_window()
    active = engine.start()
    for _ in range(3):
        tick()
    engine.close_window()
    assert "GET /long" not in recorder.profiles
    capture = active.stop()
    assert capture is not None
    assert capture.cut
    engine.resolve(capture.tag, "GET /long")
    assert totals(recorder.profiles["GET /long"], "tick").ncall == 3


def test_calls_in_flight_when_the_window_stops_are_counted_as_cut(
    engine: YappiEngine, recorder: Recorder
) -> None:
    engine.open_window()
    active = engine.start()

    def handler() -> None:
        tick()
        engine.close_window()

    handler()
    capture = active.stop()
    assert capture is not None
    engine.resolve(capture.tag, "GET /cut")
    profile = recorder.profiles["GET /cut"]
    assert profile.cut_calls >= 1
    assert totals(profile, "handler").ncall == 0
    assert totals(profile, "tick").ncall == 1


def test_requests_outside_windows_are_not_traced(engine: YappiEngine, recorder: Recorder) -> None:
    assert not engine.window_open()
    serve(engine, "GET /quiet", seven_ticks)
    engine.open_window()
    engine.close_window()
    assert recorder.profiles == {}
    assert not yappi.is_running()


def test_scheduled_windows_follow_the_duty_cycle_after_a_random_first_pause() -> None:
    windows = 10
    script = ScriptedTime(steps=2 * windows)  # a pause and a window each, then a pause blocks
    engine = YappiEngine(
        sample_rate=0.25, window=0.5, clock=script.clock, wait=script.wait, random=lambda: 0.4
    )
    try:
        assert engine.pause == pytest.approx(1.5)
        assert not engine.window_open()  # starts the scheduler; the first window comes later
        wait_until(script.blocked, "the scheduler to wait after its last scripted window")
        facts = engine.facts()
        running = yappi.is_running()
    finally:
        engine.close()
    assert not running, "between windows yappi is off"
    assert script.waits == pytest.approx([0.4 * 1.5] + [0.5, 1.5] * windows)
    assert facts.windows == windows
    assert facts.on_seconds == pytest.approx(windows * 0.5)
    assert facts.elapsed_seconds == pytest.approx(0.6 + windows * 0.5 + (windows - 1) * 1.5)
    assert not yappi.is_running()


@pytest.mark.parametrize("draw", [0.0, 0.999])
def test_the_first_pause_is_the_random_fraction_of_a_pause(draw: float) -> None:
    script = ScriptedTime(steps=0)
    engine = YappiEngine(
        sample_rate=0.5, window=2.0, clock=script.clock, wait=script.wait, random=lambda: draw
    )
    try:
        engine.window_open()
        wait_until(script.blocked, "the scheduler's first wait")
    finally:
        engine.close()
    assert script.waits == pytest.approx([draw * 2.0])
    assert engine.facts().windows == 0


def test_a_scheduled_window_traces_requests_and_close_delivers_it() -> None:
    script = ScriptedTime(steps=1)  # the first pause passes; the first window then stays open
    engine = YappiEngine(sample_rate=0.5, window=1.0, clock=script.clock, wait=script.wait)
    recorder = Recorder()
    engine.attach(recorder)
    try:
        engine.window_open()
        wait_until(script.blocked, "the first window to open")
        assert engine.window_open()
        serve(engine, "GET /ticks", seven_ticks)
        script.now += 0.25
    finally:
        engine.close()
    assert totals(recorder.profiles["GET /ticks"], "tick").ncall == 7
    assert engine.facts().windows == 1
    assert engine.facts().on_seconds == pytest.approx(0.25)
    assert not yappi.is_running()


def test_the_real_scheduler_opens_and_closes_windows_on_its_own() -> None:
    engine = YappiEngine(sample_rate=0.5, window=0.01)
    try:
        engine.window_open()
        wait_until(lambda: engine.facts().windows >= 3, "three windows of the real scheduler")
    finally:
        engine.close()
    facts = engine.facts()
    assert 0 < facts.on_seconds <= facts.elapsed_seconds
    assert not yappi.is_running()
    assert not any(t.name == "wsgiprof-yappi" for t in threading.enumerate())


# -- forks -------------------------------------------------------------------------------------


def ticking_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    seven_ticks()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def engine_of(middleware: ProfilerMiddleware) -> YappiEngine:
    engine = middleware._engine
    assert isinstance(engine, YappiEngine)
    return engine


def open_first_window(middleware: ProfilerMiddleware) -> YappiEngine:
    """Start the scheduler of the middleware's yappi engine and wait until its first window is
    open, so that the next request is profiled for sure (the first request that starts the
    scheduler would race it)."""
    engine = engine_of(middleware)
    engine.window_open()
    wait_until(engine.window_open, "the first yappi window to open")
    return engine


def run_child(middleware: ProfilerMiddleware, requests: int) -> dict[str, Any]:
    """In a forked child: serve requests once a window is open, end the window, report what was
    profiled."""
    middleware.reset()  # the in-memory store is per process; drop what the parent aggregated
    open_first_window(middleware)
    client = Client(middleware)
    for _ in range(requests):
        client.get("/ticks").close()
    middleware._engine.close()
    profile = middleware.read().endpoints["GET /ticks"]
    return {
        "pid": os.getpid(),
        "sampled": profile.sampled,
        "cut_requests": profile.cut_requests,
        "tick_calls": totals(profile, "tick").ncall if profile.functions else 0,
    }


def fork_and_report(middleware: ProfilerMiddleware, requests: int) -> dict[str, Any]:
    """Fork; the child runs :func:`run_child` and sends its report as JSON. The parent gives it
    ``FORK_TIMEOUT`` seconds, then kills it and fails."""
    code, output = run_forked(
        lambda: json.dumps(run_child(middleware, requests)).encode(), timeout=FORK_TIMEOUT
    )
    assert code == 0, output.decode(errors="replace")
    result: dict[str, Any] = json.loads(output)
    return result


def assert_ticks_counted(report: dict[str, Any]) -> None:
    """Seven calls of ``tick`` per profiled request, exactly, unless a window edge cut a request
    (then calls made between windows are missing)."""
    if report["cut_requests"] == 0:
        assert report["tick_calls"] == 7 * report["sampled"]
    else:
        assert 0 < report["tick_calls"] <= 7 * report["sampled"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@FORK_WITH_THREADS
def test_a_forked_worker_profiles_and_the_master_never_traced() -> None:
    middleware = ProfilerMiddleware(ticking_app, config=YAPPI.replace(yappi_window=LONG_WINDOW))
    try:
        report = fork_and_report(middleware, requests=20)
        # The child's first window opened before its first request and lasted past its last.
        assert (report["sampled"], report["cut_requests"], report["tick_calls"]) == (20, 0, 140)
        assert not yappi.is_running()
        assert engine_of(middleware).facts().windows == 0
        assert not any(t.name == "wsgiprof-yappi" for t in threading.enumerate())
    finally:
        middleware.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@FORK_WITH_THREADS
def test_forking_repeatedly_while_a_thread_is_traced_never_hangs_a_child() -> None:
    middleware = ProfilerMiddleware(ticking_app, config=YAPPI.replace(yappi_window=0.02))
    client = Client(middleware)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            client.get("/ticks").close()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        # Fork only once the parent traces: a window has delivered the busy thread's calls.
        wait_until(
            lambda: middleware.read().endpoints.get("GET /ticks", EndpointProfile("")).functions,
            "a closed window with the busy thread's calls",
        )
        for _ in range(20):
            report = fork_and_report(middleware, requests=3)
            assert_ticks_counted(report)
    finally:
        stop.set()
        thread.join()
        middleware.close()
    assert middleware.read().endpoints["GET /ticks"].functions


# -- the middleware ------------------------------------------------------------------------------


def make_app(handlers: dict[str, Callable[[], object]]) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        handlers[environ["PATH_INFO"]]()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def invoice_page() -> int:
    return render_invoice() + tick()


def stats_page() -> int:
    return crunch_stats() + tick()


HANDLERS: dict[str, Callable[[], object]] = {"/invoice": invoice_page, "/stats": stats_page}


def use_engine(monkeypatch: pytest.MonkeyPatch, engine: YappiEngine) -> None:
    """The next :class:`ProfilerMiddleware` gets ``engine`` (one the test drives) instead of
    building the engine its configuration names."""

    def create(config: Config) -> YappiEngine:
        assert config.engine == "yappi"
        return engine

    monkeypatch.setattr(wsgiprof.engines, "create_engine", create)


def test_middleware_with_werkzeug_client_summary_and_pstats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    engine = YappiEngine(sample_rate=1.0, scheduled=False, clock=lambda: now[0])
    use_engine(monkeypatch, engine)
    middleware = ProfilerMiddleware(make_app(HANDLERS), config=YAPPI.replace(token="s3cret-token"))
    client = Client(middleware)
    try:
        assert engine.open_window()
        for _ in range(5):
            for path in HANDLERS:
                client.get(path).close()
        now[0] = 3.0
        engine.close_window()
        now[0] = 4.0  # then a second without a window: the duty cycle is 3 / 4
    finally:
        middleware.close()
    snapshot = middleware.read()
    stats = snapshot.endpoints["GET /stats"]
    assert (stats.requests, stats.sampled, stats.cut_requests) == (5, 5, 0)
    assert totals(stats, "stats_page").ncall == 5
    calls = totals(stats, "burn").ncall
    assert calls == 5 * 30

    summary = build_summary(snapshot, engine="yappi", sample_rate=1.0)
    assert summary["windows"]["duty_cycle"] == 0.75
    entry = next(e for e in summary["endpoints"] if e["name"] == "GET /stats")
    assert entry["stacks_from_call_graph"] is True
    assert entry["top_functions"][0]["name"] == "burn"
    assert entry["top_functions"][0]["calls"] == calls

    prof = tmp_path / "stats.prof"
    prof.write_bytes(PstatsExporter().export([stats], "cpu"))
    table = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    burn_key = next(key for key in table if key[2] == "burn")
    cc, nc, tt, _ct, callers = table[burn_key]
    assert (cc, nc) == (calls, calls)
    assert tt == pytest.approx(totals(stats, "burn").tsub)
    assert next(iter(callers.values()))[0] == calls

    from snakeviz.stats import json_stats, table_rows

    loaded = pstats.Stats(str(prof))
    assert any("burn" in str(row) for row in table_rows(loaded))
    assert json.loads(json.dumps(json_stats(loaded)))

    both = marshal.loads(PstatsExporter().export(list(snapshot.endpoints.values()), "cpu"))
    assert any(key[2] == "all endpoints" for key in both)


def test_codec_round_trips_exact_data() -> None:
    middleware = ProfilerMiddleware(make_app(HANDLERS), config=YAPPI)
    try:
        Client(middleware).get("/invoice").close()
    finally:
        middleware.close()
    delta = middleware.read().endpoints
    decoded = decode_delta(encode_delta(delta))
    original, back = delta["GET /invoice"], decoded["GET /invoice"]
    assert back.functions == original.functions
    assert back.edges == original.edges
    assert back.traced_cpu == original.traced_cpu
    assert back.stacks == original.stacks


def test_requests_between_windows_are_counted_and_timed_only() -> None:
    middleware = ProfilerMiddleware(make_app(HANDLERS), config=YAPPI.replace(sample_rate=0.0))
    try:
        client = Client(middleware)
        for _ in range(3):
            client.get("/stats").close()
    finally:
        middleware.close()
    snapshot = middleware.read()
    profile = snapshot.endpoints["GET /stats"]
    assert (profile.requests, profile.sampled, profile.unprofiled_timed) == (3, 0, 3)
    entry = build_summary(snapshot, engine="yappi", sample_rate=0.0)["endpoints"][0]
    assert entry["mean_cpu_unprofiled_ms"] > 0


def top_function(middleware: ProfilerMiddleware, endpoint: str) -> str:
    summary = build_summary(middleware.read(), engine=middleware.config.engine, sample_rate=1.0)
    entry = next(e for e in summary["endpoints"] if e["name"] == endpoint)
    name: str = entry["top_functions"][0]["name"]
    return name


def heavy_loop_a() -> int:
    total = 0
    for i in range(400_000):
        total += i
    return total


def heavy_loop_b() -> int:
    total = 0
    for i in range(300_000):
        total ^= i
    return total


def test_both_engines_name_the_same_top_function_per_endpoint() -> None:
    handlers: dict[str, Callable[[], object]] = {
        "/a": lambda: (heavy_loop_a(), seven_ticks()),
        "/b": lambda: (heavy_loop_b(), seven_ticks()),
    }
    tops: dict[str, dict[str, str]] = {}
    for engine in ("pyinstrument", "yappi"):
        config = YAPPI.replace(engine=engine, yappi_window=LONG_WINDOW)
        middleware = ProfilerMiddleware(make_app(handlers), config=config)
        try:
            if engine == "yappi":
                open_first_window(middleware)  # every request is then traced
            client = Client(middleware)
            for _ in range(4):
                for path in handlers:
                    client.get(path).close()
        finally:
            middleware.close()
        tops[engine] = {path: top_function(middleware, f"GET {path}") for path in handlers}
    assert tops["pyinstrument"] == tops["yappi"] == {"/a": "heavy_loop_a", "/b": "heavy_loop_b"}


@pytest.mark.server
def test_threaded_server_profiles_each_endpoint_with_exact_calls(
    threaded_server: Callable[[WSGIApplication], ThreadedServer],
) -> None:
    middleware = ProfilerMiddleware(make_app(HANDLERS), config=YAPPI.replace(yappi_window=30))
    try:
        open_first_window(middleware)
        url = threaded_server(middleware).url
        errors: list[BaseException] = []

        def hammer(path: str) -> None:
            try:
                assert set(load(url + path, 20, 2)) == {200}
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(path,)) for path in HANDLERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        # A request is recorded when the server closes its body, after the client has its
        # response: wait until all 40 are, inside the one window.
        wait_until(
            lambda: sum(p.requests for p in middleware.read().endpoints.values()) == 40,
            "the last requests to be recorded",
        )
    finally:
        middleware.close()
    endpoints = middleware.read().endpoints
    invoice, stats = endpoints["GET /invoice"], endpoints["GET /stats"]
    assert (invoice.sampled, invoice.cut_requests, stats.sampled, stats.cut_requests) == (
        20,
        0,
        20,
        0,
    )
    assert "crunch_stats" not in names(invoice)
    assert "render_invoice" not in names(stats)
    assert totals(invoice, "render_invoice").ncall == 20
    assert totals(stats, "stats_page").ncall == 20
    assert totals(stats, "crunch_stats").ncall == 20


# -- configuration -------------------------------------------------------------------------------


def test_yappi_window_is_read_and_validated() -> None:
    config = Config.from_env({"WSGIPROF_YAPPI_WINDOW": "0.5"}, store="memory")
    assert config.yappi_window == 0.5
    with pytest.raises(ConfigError, match="WSGIPROF_YAPPI_WINDOW"):
        Config.from_env({"WSGIPROF_YAPPI_WINDOW": "0"}, store="memory")
    with pytest.raises(ConfigError, match="WSGIPROF_YAPPI_WINDOW"):
        Config.from_env({"WSGIPROF_YAPPI_WINDOW": "soon"}, store="memory")


def test_missing_yappi_stops_start_up_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yappi", None)
    monkeypatch.delitem(sys.modules, "wsgiprof.engines.yappi")
    with pytest.raises(ConfigError, match=r"WSGIPROF_ENGINE.*wsgiprof\[yappi\]"):
        create_engine(YAPPI)
