"""RedisStore against a real ``redis-server``: merges, windows, TTLs, compaction, outages, forks.

Each test uses its own application name, so tests share the session's server without seeing each
other's keys. Separate OS processes (multiprocessing with spawn) stand for separate hosts. The
tests at the end run the example app under gunicorn, twice, as two hosts sharing one Redis.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest
import redis

import wsgiprof.stores.redis
from tests.servers import RedisServer, ServerProcess, free_port, gunicorn_argv, http_get, load
from tests.store_contract import check_is_a_store, check_request_rows, check_runs
from wsgiprof.model import EndpointProfile, Frame, Weight
from wsgiprof.stores import available_schemes, open_store
from wsgiprof.stores.base import ProcessInfo, Snapshot
from wsgiprof.stores.codec import encode_delta
from wsgiprof.stores.redis import DEFAULT_TTL, RedisStore

MAIN = Frame("views.index", "/srv/app/views.py", 3)
LEAF = Frame("render", "/srv/app/render.py", 9)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)

_names = itertools.count()
#: Seconds a polled condition may take; generous, so only broken code reaches it.
DEADLINE = 60.0


def _profile(name: str, requests: int, samples: int = 1) -> EndpointProfile:
    profile = EndpointProfile(name, requests=requests, sampled=1, cpu=0.01, wall=0.02)
    profile.latency.add(0.02)
    profile.stacks[(MAIN, LEAF)] = Weight(samples, 0.002, 0.001)
    profile.stacks[(MAIN, SLEEP)] = Weight(1, 0.01, 0.0)
    return profile


def _delta(requests: int, *names: str) -> dict[str, EndpointProfile]:
    return {name: _profile(name, requests) for name in names or ("GET /",)}


def _requests(snapshot: Snapshot) -> dict[str, int]:
    return {name: profile.requests for name, profile in snapshot.endpoints.items()}


def _keys(client: redis.Redis, app_name: str) -> list[str]:
    found = client.keys(f"wsgiprof:{{{app_name}}}:*")
    return sorted(k.decode() if isinstance(k, bytes) else k for k in found)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.start()
    return redis_server.url


@pytest.fixture
def app_name() -> str:
    return f"test-{os.getpid()}-{next(_names)}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def make_store(redis_url: str, app_name: str) -> Iterator[Callable[..., RedisStore]]:
    stores: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        store = RedisStore(redis_url, app_name=app_name, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


class FakeMonotonic:
    """The store's back-off clock, driven by the test: ``wsgiprof.stores.redis`` reads
    ``time.monotonic`` from a stand-in module whose wall clock (``time.time``) stays real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        stand_in = types.SimpleNamespace(monotonic=lambda: self.now, time=time.time)
        monkeypatch.setattr(wsgiprof.stores.redis, "time", stand_in)


def count_round_trips(store: RedisStore) -> list[int]:
    """Count every connection the store takes from its pool (one per command or transaction):
    ``counter[0]`` grows by one each time the store talks to Redis."""
    pool = store._state().client.connection_pool
    taken = pool.get_connection
    counter = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return taken(*args, **kwargs)

    pool.get_connection = counting  # type: ignore[method-assign]
    return counter


# -- one process --------------------------------------------------------------------------------


def test_is_a_store(make_store: Callable[..., RedisStore]) -> None:
    check_is_a_store(make_store())


def test_flush_then_read_round_trips(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    process = ProcessInfo(pid=41, host="web-1", cpu_percent=12.5, rss_bytes=1000, threads=4)

    store.flush(_delta(3, "GET /a", "GET /b"), process)
    store.flush(_delta(2, "GET /a"), process)
    snapshot = store.read()

    assert _requests(snapshot) == {"GET /a": 5, "GET /b": 3}
    assert snapshot.endpoints["GET /a"].stacks[(MAIN, LEAF)] == Weight(2, 0.004, 0.002)
    assert snapshot.endpoints["GET /a"].latency.total == 2
    assert snapshot.processes == [process]
    assert snapshot.lost_flushes == 0
    assert snapshot.window_start <= snapshot.window_end
    assert snapshot.window_start == store.window_start()


def test_nothing_connects_before_first_use() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")

    assert "127.0.0.1" in repr(store)
    store.close()


def test_empty_store_reads_empty(make_store: Callable[..., RedisStore]) -> None:
    snapshot = make_store().read()

    assert snapshot.endpoints == {}
    assert snapshot.processes == []
    assert snapshot.lost_flushes == 0


def test_empty_delta_records_the_process_only(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()

    store.flush({}, ProcessInfo(pid=7, host="h"))

    snapshot = store.read()
    assert snapshot.endpoints == {}
    assert [(p.host, p.pid) for p in snapshot.processes] == [("h", 7)]


def test_keys_are_namespaced_by_application_and_window_and_expire(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    make_store().flush(_delta(1), ProcessInfo(pid=1, host="h"))

    keys = _keys(client, app_name)

    prefix = f"wsgiprof:{{{app_name}}}:"
    assert keys == [prefix + "w:1:deltas", prefix + "w:1:processes", prefix + "window"]
    for key in keys:
        assert DEFAULT_TTL - 10 < client.ttl(key) <= DEFAULT_TTL
    assert client.type(prefix + "w:1:deltas") == b"list"
    assert json.loads(client.hget(prefix + "w:1:processes", "h:1") or b"")["pid"] == 1


def test_ttl_is_the_configured_one(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    make_store(ttl=60).flush(_delta(1), ProcessInfo())

    for key in client.keys(f"wsgiprof:{{{app_name}}}:*"):
        assert 50 < client.ttl(key) <= 60


def test_applications_stay_apart(redis_url: str, app_name: str) -> None:
    shop = RedisStore(redis_url, app_name=app_name + "-shop")
    blog = RedisStore(redis_url, app_name=app_name + "-blog")

    shop.flush(_delta(2, "GET /cart"), ProcessInfo())
    blog.flush(_delta(5, "GET /post"), ProcessInfo())
    blog.reset()

    assert _requests(shop.read()) == {"GET /cart": 2}
    assert _requests(blog.read()) == {}


def test_reset_starts_an_empty_window_and_drops_the_old_keys(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    one, other = make_store(), make_store()
    one.flush(_delta(4), ProcessInfo(pid=1))
    other.flush(_delta(4), ProcessInfo(pid=2))
    before = other.window_start()

    start = other.reset()

    assert start >= before
    for store in (one, other):
        snapshot = store.read()
        assert snapshot.endpoints == {}
        assert snapshot.processes == []
        assert snapshot.window_start == start
    assert _keys(client, app_name) == [f"wsgiprof:{{{app_name}}}:window"]


def test_a_flush_with_a_stale_window_lands_in_the_new_one(
    make_store: Callable[..., RedisStore],
) -> None:
    writer, resetter = make_store(), make_store()
    writer.flush(_delta(1), ProcessInfo())  # the writer now caches window 1
    resetter.reset()

    writer.flush(_delta(6), ProcessInfo())

    assert _requests(resetter.read()) == {"GET /": 6}
    writer.flush(_delta(1), ProcessInfo())
    assert _requests(resetter.read()) == {"GET /": 7}


def test_compaction_keeps_totals_exact(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    store = make_store(compact_after=4)
    for number in range(10):
        store.flush(_delta(1, "GET /a", f"GET /{number % 3}"), ProcessInfo())
    deltas = f"wsgiprof:{{{app_name}}}:w:1:deltas"
    assert client.llen(deltas) == 10

    first = store.read()

    assert client.llen(deltas) == 1
    second = store.read()
    assert (
        _requests(first)
        == _requests(second)
        == {"GET /a": 10, "GET /0": 4, "GET /1": 3, "GET /2": 3}
    )
    assert second.endpoints["GET /a"].stacks[(MAIN, LEAF)].samples == 10


def test_a_stale_compaction_changes_nothing(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    store, other = make_store(compact_after=2), make_store(compact_after=2)
    for _ in range(5):
        store.flush(_delta(1), ProcessInfo())
    state = store._state()
    stale = store._load(state, compact=False)
    other.read()  # compacts first
    store.flush(_delta(1), ProcessInfo())

    assert store._compact(state, stale) is False

    assert _requests(other.read()) == {"GET /": 6}
    assert client.llen(f"wsgiprof:{{{app_name}}}:w:1:deltas") == 2


def test_writers_compact_when_nobody_reads(
    make_store: Callable[..., RedisStore], client: redis.Redis, app_name: str
) -> None:
    store = make_store(compact_after=2)
    lengths = []
    for _ in range(17):
        store.flush(_delta(1), ProcessInfo())
        lengths.append(client.llen(f"wsgiprof:{{{app_name}}}:w:1:deltas"))

    assert max(lengths) == 7, "every 8th payload folds the list into one"
    assert lengths[-1] == 3
    assert _requests(store.read()) == {"GET /": 17}


def test_undecodable_payloads_are_skipped_logged_once_and_kept(
    make_store: Callable[..., RedisStore],
    client: redis.Redis,
    app_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(compact_after=1)
    store.flush(_delta(5), ProcessInfo())
    future = bytearray(encode_delta(_delta(1)))
    future[3] = 99
    client.rpush(f"wsgiprof:{{{app_name}}}:w:1:deltas", bytes(future))

    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert _requests(store.read()) == {"GET /": 5}
        assert _requests(store.read()) == {"GET /": 5}

    assert client.llen(f"wsgiprof:{{{app_name}}}:w:1:deltas") == 2
    assert len([r for r in caplog.records if "skipped a delta" in r.getMessage()]) == 1


def test_password_stays_out_of_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(f"redis://user:s3cret@127.0.0.1:{free_port()}/0")

    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        store.flush(_delta(1), ProcessInfo())

    assert "s3cret" not in repr(store)
    assert caplog.records
    assert all("s3cret" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://127.0.0.1/0", {}),
        ("redis://127.0.0.1/0", {"app_name": ""}),
        ("redis://127.0.0.1/0", {"timeout": 0}),
        ("redis://127.0.0.1/0", {"compact_after": 0}),
    ],
)
def test_bad_arguments_are_refused(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"redis|app_name|timeout"):
        RedisStore(url, **options)


def test_open_store_opens_redis_urls(redis_url: str, app_name: str) -> None:
    assert "redis" in available_schemes()

    store = open_store(redis_url, app_name=app_name)

    assert isinstance(store, RedisStore)
    assert store.app_name == app_name
    secure = open_store("rediss://127.0.0.1:1/0", app_name=app_name)
    assert isinstance(secure, RedisStore)
    store.close()


# -- Redis going away ---------------------------------------------------------------------------


def test_redis_stopped_loses_flushes_quickly_and_reports_them(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeMonotonic(monkeypatch)
    # A refused connection must fail at once: with a 30 s timeout, waiting for it would show.
    store = make_store(retry_after=0.3, timeout=30.0)
    reader = make_store()
    store.flush(_delta(1), ProcessInfo())
    trips = count_round_trips(store)
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="wsgiprof"):
            began = time.monotonic()
            store.flush(_delta(1), ProcessInfo())
            assert trips == [1]
            for _ in range(2):
                store.flush(_delta(1), ProcessInfo())
            store.flush({}, ProcessInfo())
            assert trips == [1], "no attempt while backing off"
            down = store.read()
            elapsed = time.monotonic() - began
    finally:
        redis_server.start()

    assert elapsed < 10.0, "nothing waited for the 30 s timeout"
    assert down.lost_flushes == 3
    assert down.endpoints == {}
    flush_warnings = [r for r in caplog.records if "was lost" in r.getMessage()]
    assert len(flush_warnings) == 1
    assert trips == [2], "read() tries, even while flushes back off"
    clock.now += 0.31  # the back-off is over
    store.flush(_delta(2), ProcessInfo())
    assert trips == [3]
    assert reader.read().lost_flushes == 3
    assert store.read().lost_flushes == 3
    assert _requests(reader.read()) == {"GET /": 2}  # Redis came back empty (no persistence)


def test_back_off_ends_after_retry_after_seconds(
    make_store: Callable[..., RedisStore],
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeMonotonic(monkeypatch)
    store = make_store(retry_after=0.3)
    store.flush(_delta(1), ProcessInfo())
    trips = count_round_trips(store)
    redis_server.stop()
    try:
        store.flush(_delta(1), ProcessInfo())
        clock.now += 0.29
        store.flush(_delta(1), ProcessInfo())
        assert trips == [1], "still backing off"
        clock.now += 0.02
        store.flush(_delta(1), ProcessInfo())
        assert trips == [2], "tried again once retry_after passed"
    finally:
        redis_server.start()
    clock.now += 0.31
    store.flush(_delta(4), ProcessInfo())
    snapshot = store.read()
    assert snapshot.lost_flushes == 3
    assert _requests(snapshot) == {"GET /": 4}


def test_frozen_redis_delays_nothing_beyond_the_timeout(
    make_store: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    timeout = 0.5
    store = make_store(timeout=timeout, retry_after=3600)
    store.flush(_delta(1), ProcessInfo())
    trips = count_round_trips(store)
    redis_server.pause()
    try:
        began = time.monotonic()
        store.flush(_delta(1), ProcessInfo())
        first = time.monotonic() - began
        store.flush(_delta(1), ProcessInfo())
        backing_off = trips[0]
        began = time.monotonic()
        snapshot = store.read()
        read = time.monotonic() - began
    finally:
        redis_server.resume()

    # One try each, cut by the timeout: a second try would take another full timeout.
    assert timeout * 0.95 <= first < 2 * timeout
    assert backing_off == 1, "no new attempt while backing off"
    assert timeout * 0.95 <= read < 2 * timeout
    assert snapshot.lost_flushes == 2
    store.read()  # a successful read ends the back-off
    store.flush(_delta(1), ProcessInfo())
    assert store.read().lost_flushes == 2


def test_reset_discards_this_process_losses(
    make_store: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    store = make_store()
    redis_server.stop()
    try:
        store.flush(_delta(1), ProcessInfo())
    finally:
        redis_server.start()

    store.reset()

    assert store.read().lost_flushes == 0


def _forked_child(store: RedisStore, parent_client_id: int, queue: Any) -> None:
    try:
        store.flush(_delta(1, "GET /child"), ProcessInfo())
        child_client_id = int(store._state().client.client_id())
        queue.put((child_client_id != parent_client_id, None))
    except BaseException:
        queue.put((False, traceback.format_exc()))


def test_a_forked_child_uses_its_own_connection(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    store.flush(_delta(1, "GET /parent"), ProcessInfo())
    parent_client_id = int(store._state().client.client_id())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked_child, args=(store, parent_client_id, queue))
    child.start()
    own, error = queue.get(timeout=30)
    child.join(30)

    assert error is None
    assert own
    assert int(store._state().client.client_id()) == parent_client_id
    assert _requests(store.read()) == {"GET /parent": 1, "GET /child": 1}


# -- separate processes, standing for hosts -----------------------------------------------------


def _host(url: str, app: str, host: str, requests: int, queue: Any) -> None:
    try:
        store = RedisStore(url, app_name=app)
        store.flush(_delta(requests, f"GET /{host}", "GET /shared"), ProcessInfo(host=host))
        snapshot = store.read()
        queue.put((host, _requests(snapshot), [p.host for p in snapshot.processes], None))
        store.close()
    except BaseException:
        queue.put((host, {}, [], traceback.format_exc()))


def _run_hosts(url: str, app: str, requests: dict[str, int]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_host, args=(url, app, host, count, queue))
        for host, count in requests.items()
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert [error for *_, error in results if error is not None] == []
    return {host: (counts, hosts) for host, counts, hosts, _ in results}


def test_two_hosts_merge_and_reset_empties_both(redis_url: str, app_name: str) -> None:
    _run_hosts(redis_url, app_name, {"web-1": 3, "web-2": 4})

    merged = RedisStore(redis_url, app_name=app_name).read()

    assert _requests(merged) == {"GET /web-1": 3, "GET /web-2": 4, "GET /shared": 7}
    assert sorted(p.host for p in merged.processes) == ["web-1", "web-2"]

    RedisStore(redis_url, app_name=app_name).reset()
    seen = _run_hosts(redis_url, app_name, {"web-1": 1, "web-2": 1})

    final = RedisStore(redis_url, app_name=app_name).read()
    assert _requests(final) == {"GET /web-1": 1, "GET /web-2": 1, "GET /shared": 2}
    for counts, _ in seen.values():
        assert counts["GET /shared"] in (1, 2)


def _writer(url: str, app: str, number: int, flushes: int, start: Any, queue: Any) -> None:
    try:
        store = RedisStore(url, app_name=app, compact_after=4, timeout=5.0)
        start.wait()
        total = 0
        for flush in range(flushes):
            requests = 1 + flush % 5
            store.flush(_delta(requests, f"GET /w{number}", "GET /shared"), ProcessInfo())
            total += requests
        queue.put((total, store.read().lost_flushes, None))
    except BaseException:
        queue.put((0, 0, traceback.format_exc()))


def test_compaction_keeps_totals_exact_under_concurrent_flushes(
    redis_url: str, app_name: str, client: redis.Redis
) -> None:
    writers, flushes = 6, 150
    context = multiprocessing.get_context("spawn")
    start, queue = context.Event(), context.Queue()
    processes = [
        context.Process(target=_writer, args=(redis_url, app_name, n, flushes, start, queue))
        for n in range(writers)
    ]
    for process in processes:
        process.start()
    reader = RedisStore(redis_url, app_name=app_name, compact_after=4, timeout=5.0)
    stop = threading.Event()
    reads: list[int] = []

    def read_all_the_time() -> None:
        while not stop.is_set():
            total = reader.read().endpoints.get("GET /shared")
            current = total.requests if total is not None else 0
            assert not reads or current >= reads[-1], "a total went down"
            reads.append(current)

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_all_the_time)
        start.set()
        results = [queue.get(timeout=120) for _ in processes]
        stop.set()
        reading.result()
    for process in processes:
        process.join(30)

    assert [error for *_, error in results if error is not None] == []
    assert all(lost == 0 for _, lost, _ in results)
    flushed = sum(total for total, _, _ in results)
    snapshot = reader.read()
    assert snapshot.endpoints["GET /shared"].requests == flushed
    assert sum(snapshot.endpoints[f"GET /w{n}"].requests for n in range(writers)) == flushed
    assert snapshot.endpoints["GET /shared"].stacks[(MAIN, LEAF)].samples == writers * flushes
    assert len(reads) > 3
    assert client.llen(f"wsgiprof:{{{app_name}}}:w:1:deltas") <= 4


# -- the middleware, two gunicorn "hosts" sharing one Redis -----------------------------------

TOKEN = "redis-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = "examples.flask_app.app:app"


def _start_host(server_process: Callable[..., ServerProcess], url: str, app: str) -> ServerProcess:
    port = free_port()
    env = {
        "WSGIPROF_ENABLED": "1",
        "WSGIPROF_TOKEN": TOKEN,
        "WSGIPROF_SAMPLE_RATE": "1.0",
        "WSGIPROF_STORE": url,
        "WSGIPROF_FLUSH_INTERVAL": "0.2",
        "WSGIPROF_APP_NAME": app,
        "EXAMPLE_UPSTREAM_LATENCY": "0.005",
    }
    argv = gunicorn_argv(port, APP, "--workers=2", "--log-level=warning")
    return server_process(argv, port=port, env=env, ready_path="/health")


def _summary(url: str) -> dict[str, Any]:
    status, body = http_get(url + "/_wsgiprof/api/summary", headers=AUTH)
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def _sampled_of(data: dict[str, Any], names: dict[str, int]) -> dict[str, int]:
    return {row["name"]: int(row["sampled"]) for row in data["endpoints"] if row["name"] in names}


def _worker_pids(server: ServerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(server.pid).children(recursive=True)}


def _wait_for(url: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Poll ``url``'s summary until ``done`` holds; fail naming ``what`` after :data:`DEADLINE`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        data = _summary(url)
        if done(data):
            return data
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE:g} s waiting for {what}; last summary {data}")
        time.sleep(0.05)


def _listed(data: dict[str, Any]) -> set[int]:
    return {int(p["pid"]) for p in data["processes"]}


def _until_every_worker_served(hosts: list[ServerProcess]) -> None:
    """Send requests on new connections until every worker of every host is listed (it served
    and flushed): the kernel hands a connection to whichever worker accepts it first, so a load
    can leave a worker without any."""
    deadline = time.monotonic() + DEADLINE
    workers = set().union(*(_worker_pids(srv) for srv in hosts))
    while not workers <= _listed(_summary(hosts[0].url)):
        if time.monotonic() > deadline:
            pytest.fail(f"workers {sorted(workers - _listed(_summary(hosts[0].url)))} served none")
        for srv in hosts:
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(http_get, [srv.url + "/health"] * 8))
            assert {status for status, _ in answers} == {200}


@pytest.mark.server
def test_two_app_hosts_share_one_summary(
    server_process: Callable[..., ServerProcess], redis_server: RedisServer, app_name: str
) -> None:
    redis_server.stop()
    redis_server.start()
    one = _start_host(server_process, redis_server.url, app_name)
    two = _start_host(server_process, redis_server.url, app_name)

    assert set(load(one.url + "/report", 40, 4)) == {200}
    assert set(load(two.url + "/users/3", 30, 4)) == {200}
    _until_every_worker_served([one, two])

    expected = {"GET /report": 40, "GET /users/<int:user_id>": 30}
    workers = _worker_pids(one) | _worker_pids(two)
    for srv in (one, two):
        data = _wait_for(srv.url, lambda d: _sampled_of(d, expected) == expected, f"{expected}")
        assert _sampled_of(data, expected) == expected
        assert workers <= _listed(data)
        assert len(workers) == 4
        assert data["lost_flushes"] == 0


@pytest.mark.server
def test_redis_stopped_mid_load_fails_no_request_and_reports_the_loss(
    server_process: Callable[..., ServerProcess], redis_server: RedisServer, app_name: str
) -> None:
    redis_server.stop()
    redis_server.start()
    one = _start_host(server_process, redis_server.url, app_name)
    two = _start_host(server_process, redis_server.url, app_name)
    assert set(load(one.url + "/health", 20, 2)) == {200}

    stop = threading.Event()
    lock = threading.Lock()
    statuses: list[int] = []

    def load_until_stopped(url: str) -> None:
        while not stop.is_set():
            answered = load(url, 20, 4)
            with lock:
                statuses.extend(answered)

    def answered() -> int:
        with lock:
            return len(statuses)

    with ThreadPoolExecutor(2) as pool:
        loads = [
            pool.submit(load_until_stopped, srv.url + path)
            for srv, path in ((one, "/report"), (two, "/users/3"))
        ]
        try:
            # Redis goes away while both hosts are busy and their data flows into it.
            _wait_for(one.url, lambda d: d["totals"]["sampled"] > 20, "the load to be flushed")
            redis_server.stop()
            before = answered()
            # While Redis is down the load goes on, and a worker reports its own losses.
            down = _wait_for(
                one.url,
                lambda d: d["lost_flushes"] > 0 and answered() >= before + 80,
                "a lost flush and 80 requests answered while Redis is down",
            )
        finally:
            redis_server.start()
            stop.set()
            for future in loads:
                future.result()

    assert set(statuses) == {200}, "no request failed, with or without Redis"
    assert down["lost_flushes"] > 0
    # Back up (empty: no persistence), the workers report the flushes they lost.
    for srv in (one, two):
        data = _wait_for(srv.url, lambda d: d["lost_flushes"] > 0, "the losses in Redis")
        assert data["lost_flushes"] > 0


# -- saved runs and request rows --------------------------------------------------------------


def test_runs_are_saved_listed_loaded_and_deleted(make_store: Callable[..., RedisStore]) -> None:
    check_runs(make_store())


def test_a_flush_racing_a_save_is_not_lost(make_store: Callable[..., RedisStore]) -> None:
    store, other = make_store(), make_store()
    store.flush(_delta(2), ProcessInfo(pid=1, host="a"))
    original = store._load

    def load_then_flush(*args: Any, **kwargs: Any) -> Any:
        loaded = original(*args, **kwargs)
        if not getattr(load_then_flush, "done", False):
            load_then_flush.done = True  # type: ignore[attr-defined]
            other.flush(_delta(3), ProcessInfo(pid=2, host="b"))
        return loaded

    store._load = load_then_flush  # type: ignore[method-assign]
    info = store.save_run("raced")
    assert info.requests == 5
    assert store.read().endpoints == {}


def test_request_rows_are_kept_per_window(make_store: Callable[..., RedisStore]) -> None:
    check_request_rows(make_store())
