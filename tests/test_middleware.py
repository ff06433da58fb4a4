"""The middleware: pass-through when off, sampling, streaming, closing, errors, its own route,
and per-endpoint CPU profiles from a real threaded server."""

from __future__ import annotations

import cProfile
import hashlib
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client, EnvironBuilder

import wsgiprof
from tests.servers import ThreadedServer, load, unavailable
from wsgiprof import Config, ConfigError, ProfilerMiddleware
from wsgiprof.model import EndpointProfile, Stack, Weight

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TOKEN = "test-token-123"
ALWAYS = Config(enabled=True, sample_rate=1.0, token=TOKEN, store="memory")
NEVER = ALWAYS.replace(sample_rate=0.0)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WSGIPROF_DIR = str(Path(wsgiprof.__file__).parent)


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def hello_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", environ["PATH_INFO"].encode("latin-1")]


class Body:
    """A response body that records whether it was closed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def endpoints(middleware: ProfilerMiddleware) -> dict[str, EndpointProfile]:
    return middleware.read().endpoints


def functions(profile: EndpointProfile) -> set[str]:
    return {frame.function for stack in profile.stacks for frame in stack}


def cpu_of(stacks: dict[Stack, Weight], name: str) -> float:
    return sum(w.cpu for s, w in stacks.items() if any(f.function == name for f in s))


def run(app: WSGIApplication, environ: WSGIEnvironment) -> tuple[str, list[bytes]]:
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        return lambda data: None

    body = app(environ, start_response)
    try:
        chunks = list(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0], chunks


# -- disabled and unsampled ------------------------------------------------------------------


def test_disabled_returns_the_applications_own_response_object() -> None:
    body = Body([b"x"])
    middleware = ProfilerMiddleware(lambda e, s: body, config=Config(enabled=False))
    environ = EnvironBuilder("/").get_environ()
    assert middleware(environ, lambda s, h, e=None: lambda d: None) is body
    assert not hasattr(middleware, "_engine")
    assert not any(key.startswith("wsgiprof.") for key in environ)


def test_disabled_does_not_serve_the_route() -> None:
    middleware = ProfilerMiddleware(hello_app, config=Config(enabled=False, token=TOKEN))
    response = Client(middleware).get("/_wsgiprof/api/summary", headers=AUTH)
    assert response.get_data() == b"hello /_wsgiprof/api/summary"


def test_disabled_by_default_from_an_empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WSGIPROF_ENABLED", "WSGIPROF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert not ProfilerMiddleware(hello_app).enabled


def test_bad_environment_value_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSGIPROF_ENABLED", "1")
    monkeypatch.setenv("WSGIPROF_SAMPLE_RATE", "five percent")
    with pytest.raises(ConfigError, match="WSGIPROF_SAMPLE_RATE"):
        ProfilerMiddleware(hello_app)


def test_unsampled_request_returns_the_applications_own_response_object() -> None:
    body = Body([b"x"])
    middleware = ProfilerMiddleware(lambda e, s: body, config=NEVER)
    assert (
        middleware(EnvironBuilder("/a").get_environ(), lambda s, h, e=None: lambda d: None) is body
    )


def test_unsampled_requests_are_counted_per_endpoint() -> None:
    middleware = ProfilerMiddleware(hello_app, config=NEVER)
    client = Client(LintMiddleware(middleware))
    for path in ("/orders/1", "/orders/2", "/health"):
        client.get(path).close()
    counts = {name: (p.requests, p.sampled) for name, p in endpoints(middleware).items()}
    assert counts == {"GET /orders/{int}": (2, 0), "GET /health": (1, 0)}


# -- profiled requests -----------------------------------------------------------------------


def test_profiled_request_is_aggregated_under_its_endpoint() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        burn(200_000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    middleware = ProfilerMiddleware(app, config=ALWAYS)
    with Client(LintMiddleware(middleware)).get("/items/7") as response:
        assert response.get_data() == b"done"
    profile = endpoints(middleware)["GET /items/{int}"]
    assert (profile.requests, profile.sampled, profile.errors) == (1, 1, 0)
    assert "burn" in functions(profile)
    assert profile.total("cpu") == pytest.approx(profile.cpu, abs=1e-9)
    assert not any(f.file.startswith(WSGIPROF_DIR) for s in profile.stacks for f in s)


def test_application_exception_propagates_unchanged_and_counts_as_error() -> None:
    error = KeyError("boom")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise error

    middleware = ProfilerMiddleware(app, config=ALWAYS)
    with pytest.raises(KeyError) as raised:
        run(middleware, EnvironBuilder("/fail").get_environ())
    assert raised.value is error
    assert endpoints(middleware)["GET /fail"].errors == 1


def test_server_error_status_counts_as_error() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"busy"]

    middleware = ProfilerMiddleware(app, config=ALWAYS)
    Client(LintMiddleware(middleware)).get("/busy").close()
    assert endpoints(middleware)["GET /busy"].errors == 1


def test_streamed_body_is_profiled_until_it_is_exhausted() -> None:
    def stream_rows() -> Iterator[bytes]:
        for _ in range(5):
            burn(50_000)
            yield b"row\n"

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream_rows()

    middleware = ProfilerMiddleware(app, config=ALWAYS)
    with Client(LintMiddleware(middleware)).get("/stream") as response:
        assert response.get_data() == b"row\n" * 5
    profile = endpoints(middleware)["GET /stream"]
    assert cpu_of(profile.stacks, "stream_rows") > 0.8 * profile.cpu


def test_inner_iterable_is_closed_when_the_client_goes_away() -> None:
    body = Body([b"a", b"b", b"c"])
    middleware = ProfilerMiddleware(lambda e, s: (s("200 OK", []), body)[1], config=ALWAYS)
    response = middleware(
        EnvironBuilder("/gone").get_environ(), lambda s, h, e=None: lambda d: None
    )
    iterator = iter(response)
    next(iterator)
    response.close()  # type: ignore[attr-defined]
    assert body.closed
    assert endpoints(middleware)["GET /gone"].sampled == 1


def test_error_while_streaming_propagates_and_closes_the_body() -> None:
    closed: list[bool] = []

    def failing() -> Iterator[bytes]:
        try:
            yield b"first"
            raise RuntimeError("broken stream")
        finally:
            closed.append(True)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return failing()

    middleware = ProfilerMiddleware(app, config=ALWAYS)
    with pytest.raises(RuntimeError, match="broken stream"):
        run(middleware, EnvironBuilder("/s").get_environ())
    assert closed == [True]
    assert endpoints(middleware)["GET /s"].errors == 1


def test_forced_header_with_token_profiles_at_rate_zero() -> None:
    middleware = ProfilerMiddleware(hello_app, config=NEVER)
    Client(middleware).get("/x", headers={"X-Wsgiprof": "1", **AUTH}).close()
    assert endpoints(middleware)["GET /x"].sampled == 1


def test_forced_header_without_token_is_ignored() -> None:
    middleware = ProfilerMiddleware(hello_app, config=NEVER)
    client = Client(middleware)
    client.get("/x", headers={"X-Wsgiprof": "1"}).close()
    client.get("/x", headers={"X-Wsgiprof": "1", "Authorization": "Bearer wrong-token"}).close()
    assert endpoints(middleware)["GET /x"].sampled == 0


def test_custom_sampler_and_endpoint_key_are_used() -> None:
    middleware = ProfilerMiddleware(
        hello_app,
        config=NEVER,
        sampler=lambda environ: environ["PATH_INFO"].startswith("/slow"),
        endpoint_key=lambda environ: "tenant-" + environ["PATH_INFO"].split("/")[-1],
    )
    client = Client(middleware)
    client.get("/slow/a").close()
    client.get("/fast/b").close()
    sampled = {name: p.sampled for name, p in endpoints(middleware).items()}
    assert sampled == {"tenant-a": 1, "tenant-b": 0}


def test_busy_profiler_serves_the_request_unprofiled_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    middleware = ProfilerMiddleware(hello_app, config=ALWAYS)
    client = Client(middleware)
    other = cProfile.Profile()
    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        other.enable()
        try:
            responses = [client.get("/x").get_data() for _ in range(3)]
        finally:
            other.disable()
    assert responses == [b"hello /x"] * 3
    assert middleware.counters["engine_unavailable"] == 3
    assert len([r for r in caplog.records if r.name == "wsgiprof"]) == 1
    assert endpoints(middleware)["GET /x"].requests == 3


# -- the route ------------------------------------------------------------------------------


def test_without_token_the_prefix_goes_to_the_application() -> None:
    middleware = ProfilerMiddleware(hello_app, config=ALWAYS.replace(token=None))
    response = Client(middleware).get("/_wsgiprof/api/summary", headers=AUTH)
    assert response.get_data() == b"hello /_wsgiprof/api/summary"


def test_route_is_served_and_never_profiled() -> None:
    middleware = ProfilerMiddleware(hello_app, config=ALWAYS)
    client = Client(LintMiddleware(middleware))
    client.get("/page").close()
    with client.get("/_wsgiprof/api/summary", headers=AUTH) as response:
        assert response.status_code == 200
        assert [e["name"] for e in response.get_json()["endpoints"]] == ["GET /page"]


def test_reset_starts_an_empty_window() -> None:
    middleware = ProfilerMiddleware(hello_app, config=ALWAYS)
    client = Client(middleware)
    client.get("/page").close()
    assert client.post("/_wsgiprof/api/reset", headers=AUTH).status_code == 200
    assert endpoints(middleware) == {}


def test_endpoint_cap_bounds_memory_under_random_paths() -> None:
    middleware = ProfilerMiddleware(hello_app, config=NEVER.replace(max_endpoints=50))
    client = Client(middleware)
    rng = random.Random(7)
    for _ in range(10_000):
        word = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=8))
        client.get(f"/{word}/{rng.randrange(10**6)}").close()
    names = endpoints(middleware)
    assert len(names) == 51
    assert names["[other endpoints]"].requests == 10_000 - 50
    assert sum(p.requests for p in names.values()) == 10_000


# -- a real threaded server -----------------------------------------------------------------

#: Five standard deviations of a binomial share: a bound that a correct engine misses about once
#: in two million checks.
SIGMAS = 5.0
#: Enough samples that a share off by 0.15 (a 70/30 split read as 55/45) exceeds the bound.
MIN_SAMPLES = 400
#: Seconds a polled condition may take; generous, so only broken code reaches it.
DEADLINE = 60.0


def spin(n: int) -> int:
    """``n`` iterations of arithmetic, done in calls of 100: a call or a return every few
    microseconds, so a sample is taken as soon as its interval is over, inside the function that
    spends the time (a loop without calls is sampled only when it ends)."""
    return sum(_spin_chunk(start, min(start + 100, n)) for start in range(0, n, 100))


def _spin_chunk(start: int, stop: int) -> int:
    total = 0
    for i in range(start, stop):
        total += i * i
    return total


class Truth:
    """The thread CPU each timed function really used, summed over requests (the reference a
    profile's estimate is checked against)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cpu: dict[str, float] = {}

    def timed(self, name: str, work: Callable[[], int]) -> int:
        start = time.thread_time()
        result = work()
        spent = time.thread_time() - start
        with self._lock:
            self.cpu[name] = self.cpu.get(name, 0.0) + spent
        return result


def cpu_app(truth: Truth) -> Flask:
    """Endpoints of known cost. The timed functions are surrounded by untimed work longer than
    the sampling interval (``prepare``, ``finish``), so the request's first sample, and the CPU
    after its last one, never fall on them: what is checked is sampling, not the request's
    edges."""
    app = Flask("cpu_app")

    def prepare() -> int:
        return spin(20_000)

    def finish() -> int:
        return spin(20_000)

    def render_invoice() -> int:
        return truth.timed("render_invoice", lambda: spin(150_000))

    def crunch_stats() -> int:
        return spin(150_000)

    def build_rows() -> int:
        return truth.timed("build_rows", lambda: spin(63_000))

    def render_rows() -> int:
        return truth.timed("render_rows", lambda: spin(147_000))

    def call_upstream() -> None:
        time.sleep(0.03)

    @app.get("/invoices/<int:invoice_id>")
    def invoice(invoice_id: int) -> str:
        return str(prepare() + render_invoice() + finish())

    @app.get("/stats")
    def stats() -> str:
        return str(crunch_stats())

    @app.get("/report")
    def report() -> str:
        return str(prepare() + build_rows() + render_rows() + finish())

    @app.get("/upstream")
    def upstream() -> str:
        call_upstream()
        return "ok"

    @app.get("/hash")
    def hash_password() -> str:
        return hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 20_000).hex()

    app.wsgi_app = ProfilerMiddleware(app.wsgi_app, config=ALWAYS)  # type: ignore[method-assign]
    return app


def flask_endpoints(app: Flask, sampled: int = 0) -> dict[str, EndpointProfile]:
    """The app's profiles once ``sampled`` requests are recorded: a request is recorded when the
    server closes its body, which can be just after the client has read the response. Fails
    after :data:`DEADLINE` seconds."""
    middleware = app.wsgi_app
    assert isinstance(middleware, ProfilerMiddleware)
    deadline = time.monotonic() + DEADLINE
    while True:
        profiles = endpoints(middleware)
        recorded = sum(p.sampled for p in profiles.values())
        if recorded >= sampled:
            return profiles
        if time.monotonic() > deadline:
            pytest.fail(f"only {recorded} of {sampled} requests recorded after {DEADLINE:g} s")
        time.sleep(0.02)


@dataclass
class Served:
    app: Flask
    url: str
    truth: Truth


@pytest.fixture
def served(threaded_server: Callable[[WSGIApplication], ThreadedServer]) -> Served:
    truth = Truth()
    app = cpu_app(truth)
    return Served(app, threaded_server(app).url, truth)


def hammer(urls: list[str], per_url: int, concurrency: int = 4) -> int:
    errors: list[BaseException] = []

    def one(url: str) -> None:
        try:
            assert set(load(url, per_url, concurrency)) == {200}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return per_url * len(urls)


def samples_of(stacks: dict[Stack, Weight], *names: str) -> int:
    """Samples of the stacks that pass through any of ``names``."""
    return sum(w.samples for s, w in stacks.items() if any(f.function in names for f in s))


def assert_share(what: str, estimate: float, truth: float, samples: int) -> None:
    """A share of CPU estimated from ``samples`` samples is within :data:`SIGMAS` standard
    deviations of a binomial share of the true one (its variance floored at 0.02, as for shares
    near 0 or 1), and there were enough samples for that bound to mean something."""
    tolerance = SIGMAS * math.sqrt(max(truth * (1 - truth), 0.02) / samples)
    print(f"{what}: {estimate:.1%} (truth {truth:.1%}, {samples} samples, ±{tolerance:.1%})")
    assert samples >= MIN_SAMPLES, f"{what}: {samples} samples are too few for the bound"
    assert estimate == pytest.approx(truth, abs=tolerance), what


def hammer_until_sampled(served: Served, urls: list[str], per_url: int, *names: str) -> int:
    """Send ``per_url`` requests to each of ``urls``, again until the stacks through ``names`` hold
    :data:`MIN_SAMPLES` samples (at most ten rounds); return how many requests were sent."""
    sent = 0
    for _ in range(10):
        sent += hammer(urls, per_url)
        profiles = flask_endpoints(served.app, sent)
        if sum(samples_of(p.stacks, *names) for p in profiles.values()) >= MIN_SAMPLES:
            break
    return sent


@pytest.mark.server
def test_concurrent_endpoints_each_hold_only_their_own_function(served: Served) -> None:
    urls = [served.url + "/invoices/17", served.url + "/stats"]
    sent = hammer_until_sampled(served, urls, 40, "render_invoice")
    profiles = flask_endpoints(served.app, sent)
    invoice, stats = profiles["GET /invoices/<int:invoice_id>"], profiles["GET /stats"]
    assert (invoice.sampled, stats.sampled) == (sent // 2, sent // 2)
    assert "render_invoice" in functions(invoice)
    assert "crunch_stats" not in functions(invoice)
    assert "crunch_stats" in functions(stats)
    assert "render_invoice" not in functions(stats)
    assert_share(
        "render_invoice of its requests' CPU",
        cpu_of(invoice.stacks, "render_invoice") / invoice.cpu,
        served.truth.cpu["render_invoice"] / invoice.cpu,
        sum(w.samples for w in invoice.stacks.values()),
    )


@pytest.mark.server
def test_cpu_split_70_30_is_recovered_under_concurrency(served: Served) -> None:
    urls = [served.url + "/report", served.url + "/stats"]
    sent = hammer_until_sampled(served, urls, 40, "build_rows", "render_rows")
    report = flask_endpoints(served.app, sent)["GET /report"]
    rows, render = cpu_of(report.stacks, "build_rows"), cpu_of(report.stacks, "render_rows")
    true_rows, true_render = served.truth.cpu["build_rows"], served.truth.cpu["render_rows"]
    assert true_render / (true_rows + true_render) == pytest.approx(0.7, abs=0.05)
    assert_share(
        "render_rows of the two (by construction 70%)",
        render / (rows + render),
        true_render / (true_rows + true_render),
        samples_of(report.stacks, "build_rows", "render_rows"),
    )


@pytest.mark.server
def test_waiting_endpoint_is_mostly_off_cpu(served: Served) -> None:
    sent = hammer([served.url + "/upstream", served.url + "/stats"], per_url=20)
    upstream = flask_endpoints(served.app, sent)["GET /upstream"]
    assert upstream.sampled == 20
    # Each request sleeps 30 ms at least and computes far less: no load makes that CPU grow.
    assert upstream.cpu / upstream.wall < 0.3
    waits = [(s, w) for s, w in upstream.stacks.items() if s[-1].off_cpu]
    assert waits
    assert {s[-1].function for s, _ in waits} == {"sleep"}
    assert sum(w.wall for _, w in waits) > 0.8 * 20 * 0.03


@pytest.mark.server
def test_gil_releasing_hash_stays_on_cpu(served: Served) -> None:
    sent = hammer([served.url + "/hash", served.url + "/stats"], per_url=20)
    hashes = flask_endpoints(served.app, sent)["GET /hash"]
    assert hashes.sampled == 20
    # One C call of ~10 ms per request: the sample at its return holds all of its CPU.
    assert cpu_of(hashes.stacks, "pbkdf2_hmac") > 0.7 * hashes.cpu


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@pytest.mark.server
def test_psycopg2_wait_is_not_charged_as_cpu_to_its_caller(
    threaded_server: Callable[[WSGIApplication], ThreadedServer], postgres_dsn: str
) -> None:
    """The hard case: psycopg2 blocks inside ``cursor.execute`` with no frame of its own, so the
    wall samples of the round trip land on the Python line that called it."""
    try:
        import psycopg2
    except ImportError:
        unavailable("psycopg2 is not installed (the tests dependency group)")
    truth = {"load_order": 0.0, "all": 0.0}
    lock = threading.Lock()
    # werkzeug's threaded server starts a thread per request: connections come from a pool made
    # up front, so the request's CPU is the query's, not a connection handshake's.
    pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
    connections = [psycopg2.connect(postgres_dsn) for _ in range(3)]
    for connection in connections:
        pool.put(connection)
    app = Flask("orders")

    def load_order() -> None:
        connection = pool.get()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.02)")
                cursor.fetchall()
        finally:
            pool.put(connection)

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        start = time.thread_time()
        fib(21)
        before = time.thread_time()
        load_order()
        spent = time.thread_time() - before
        fib(20)
        with lock:
            truth["load_order"] += spent
            truth["all"] += time.thread_time() - start
        return "ok"

    app.wsgi_app = ProfilerMiddleware(app.wsgi_app, config=ALWAYS)  # type: ignore[method-assign]
    url = threaded_server(app).url
    assert set(load(url + "/orders/1", 60, 3)) == {200}
    profile = flask_endpoints(app, 60)["GET /orders/<int:order_id>"]
    share = cpu_of(profile.stacks, "load_order") / profile.cpu
    wall_share = (
        sum(w.wall for s, w in profile.stacks.items() if any(f.function == "load_order" for f in s))
        / profile.wall
    )
    true_share = truth["load_order"] / truth["all"]
    print(f"load_order: {share:.1%} of CPU (truth {true_share:.1%}), {wall_share:.1%} of wall")
    for connection in connections:
        connection.close()
    # The round trip takes far more of the wall time than of the CPU (a fifth of the wall time
    # even with every core busy, which stretches the CPU work).
    assert wall_share > max(0.15, 3 * true_share)
    samples = sum(w.samples for w in profile.stacks.values())
    # Four standard deviations of a share estimated from that many samples (binomial), and the
    # CPU psycopg2 itself uses inside the call, which can move to the line before it.
    tolerance = 4 * math.sqrt(max(true_share * (1 - true_share), 0.02) / samples)
    assert share == pytest.approx(true_share, abs=tolerance + true_share)


def test_overhead_budget_lowers_the_sample_rate_on_call_heavy_code() -> None:
    def f(n: int) -> int:
        return n + 1

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        total = 0
        for _ in range(2000):
            total = f(total)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = ProfilerMiddleware(app, config=ALWAYS.replace(max_overhead=0.02))
    for _ in range(600):
        run(middleware, EnvironBuilder("/calls").get_environ())
    profile = endpoints(middleware)["GET /calls"]
    assert profile.requests == 600
    assert profile.sampled < 0.25 * 600, "profiling every call-heavy request costs x3 or more"
    assert profile.sampled >= 1


def test_overhead_budget_setting_is_validated() -> None:
    with pytest.raises(ConfigError, match="WSGIPROF_MAX_OVERHEAD"):
        Config.from_env({"WSGIPROF_MAX_OVERHEAD": "2"})


# -- deferred engines --------------------------------------------------------------------------


class _DeferredEngine:
    """A deferred engine that records what ran under its profiles and names one stack."""

    name = "deferred-for-tests"
    deferred = True
    stack: Stack = (wsgiprof.model.Frame("late", "/srv/app.py", 1),)

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.resolved: list[tuple[int, str]] = []
        self.sink: Callable[[str, Any], None] | None = None

    def start(self) -> _DeferredEngine._Profile:
        return self._Profile(self)

    def close(self) -> None:
        pass

    def attach(self, sink: Callable[[str, Any], None]) -> None:
        self.sink = sink

    def resolve(self, tag: int, endpoint: str) -> None:
        self.resolved.append((tag, endpoint))
        assert self.sink is not None
        self.sink(endpoint, {self.stack: Weight(3, 0.25, 0.25)})

    class _Profile:
        def __init__(self, engine: _DeferredEngine) -> None:
            self.engine = engine

        def run(self, function: Callable[..., Any], *args: Any) -> Any:
            self.engine.ran.append(getattr(function, "__name__", type(function).__name__))
            return function(*args)

        def stop(self) -> wsgiprof.engines.Capture:
            return wsgiprof.engines.Capture(cpu=0.25, wall=1.0, stacks={}, tag=7)


def test_a_deferred_engine_sees_the_app_its_body_and_close_under_its_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = _DeferredEngine()
    monkeypatch.setattr(wsgiprof.engines, "create_engine", lambda config: engine)
    body = Body([b"a", b"b"])

    def streaming_app(environ: WSGIEnvironment, start_response: StartResponse) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    middleware = ProfilerMiddleware(streaming_app, config=ALWAYS)
    status, chunks = run(middleware, EnvironBuilder("/late").get_environ())
    assert (status, chunks) == ("200 OK", [b"a", b"b"])
    assert body.closed
    assert engine.ran == ["streaming_app", "iter", "next", "next", "next", "close"]
    assert engine.resolved == [(7, "GET /late")]
    profile = endpoints(middleware)["GET /late"]
    assert (profile.sampled, profile.cpu) == (1, 0.25)
    assert profile.stacks == {_DeferredEngine.stack: Weight(3, 0.25, 0.25)}
    middleware.close()
