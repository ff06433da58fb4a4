"""Pre-fork servers: every worker's profiles reach the summary, from whichever worker answers.

Real gunicorn and uWSGI processes serve the example app with sample rate 1.0 and a SQLite store;
a bounded concurrent load of N requests must show up as exactly N sampled requests, from every
worker, whether the app is imported before the fork (``--preload``, uWSGI without ``lazy-apps``)
or after it.

Nothing here sleeps for a guessed time or assumes how the kernel spreads connections over
workers: the servers count as ready once the dashboard answers (so no request is sampled before
the test's own), the tests poll the summary until what they assert must hold (with a generous
deadline), and a test that needs every worker keeps sending requests until each has served one.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.servers import (
    ServerProcess,
    free_port,
    gunicorn_argv,
    http_get,
    load,
    uwsgi_argv,
)

pytestmark = pytest.mark.server

TOKEN = "prefork-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = "examples.flask_app.app:app"
#: The readiness probe: a dashboard route, answered (401 without the token) but never profiled.
READY = "/_wsgiprof/api/summary"
#: Seconds a polled condition may take; generous, so only broken code reaches it.
DEADLINE = 60.0
StartServer = Callable[..., ServerProcess]
Summary = dict[str, Any]


def app_env(store: Path) -> dict[str, str]:
    return {
        "WSGIPROF_ENABLED": "1",
        "WSGIPROF_TOKEN": TOKEN,
        "WSGIPROF_SAMPLE_RATE": "1.0",
        "WSGIPROF_STORE": f"sqlite:///{store}",
        "WSGIPROF_FLUSH_INTERVAL": "0.2",
        "EXAMPLE_UPSTREAM_LATENCY": "0.005",
    }


def gunicorn(port: int, *options: str) -> list[str]:
    return gunicorn_argv(port, APP, "--workers=3", "--log-level=warning", *options)


def uwsgi(port: int, *options: str) -> list[str]:
    return uwsgi_argv(port, APP, "--processes=3", "--threads=2", *options)


def summary(url: str) -> Summary:
    status, body = http_get(url + "/_wsgiprof/api/summary", headers=AUTH)
    assert status == 200, body
    data: Summary = json.loads(body)
    return data


def sampled(data: Summary) -> int:
    return sum(int(row["sampled"]) for row in data["endpoints"])


def listed(data: Summary) -> set[int]:
    """Pids of the processes that flushed into the window (a worker flushes once it served)."""
    return {int(p["pid"]) for p in data["processes"]}


def wait_for(url: str, done: Callable[[Summary], bool], what: str) -> Summary:
    """Poll the summary until ``done`` holds; fail naming ``what`` after :data:`DEADLINE`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        data = summary(url)
        if done(data):
            return data
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {DEADLINE:g} s waiting for {what}; last summary: "
                f"{sampled(data)} sampled, processes {sorted(listed(data))}"
            )
        time.sleep(0.05)


def settled(url: str, server: ServerProcess, at_least: int) -> Summary:
    """The summary once it holds ``at_least`` sampled requests and then every live worker that
    flushed has flushed twice more: whatever a worker still held (a request recorded just after
    its response was sent, or counted twice) is in the store by then."""
    data = wait_for(url, lambda d: sampled(d) >= at_least, f"{at_least} sampled requests")
    live = worker_pids(server)
    for more in ("once", "twice"):
        mark = time.time()
        seen = {pid: max(when, mark) for pid, when in last_seen(data).items() if pid in live}

        def flushed_since(data: Summary, seen: dict[int, float] = seen) -> bool:
            now = last_seen(data)
            return all(now.get(pid, 0.0) > when for pid, when in seen.items())

        data = wait_for(url, flushed_since, f"every worker to flush {more} more")
    return data


def last_seen(data: Summary) -> dict[int, float]:
    """When each listed process last flushed (its reading's wall-clock time)."""
    return {int(p["pid"]): float(p["last_seen"]) for p in data["processes"]}


def worker_pids(server: ServerProcess) -> set[int]:
    master = psutil.Process(server.pid)
    return {child.pid for child in master.children(recursive=True)}


def mixed_load(url: str, per_path: int) -> int:
    paths = ("/report", "/users/12", "/health", "/inventory")
    with ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda p: load(url + p, per_path, 3), paths))
    assert all(set(statuses) == {200} for statuses in results)
    return per_path * len(paths)


def until_every_worker_served(url: str, server: ServerProcess) -> int:
    """Send requests, each on a new connection, until every worker is listed in the summary
    (it served and flushed); return how many were sent. The kernel hands each connection to
    whichever worker accepts it first, so a load over a few keep-alive connections can leave a
    worker without any."""
    sent = 0
    deadline = time.monotonic() + DEADLINE
    while not worker_pids(server) <= listed(summary(url)):
        if time.monotonic() > deadline:
            pytest.fail(
                f"{sent} requests on new connections in {DEADLINE:g} s, and workers "
                f"{sorted(worker_pids(server) - listed(summary(url)))} served none"
            )
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: http_get(url + "/health")[0], range(12)))
        assert set(statuses) == {200}
        sent += len(statuses)
    if sent:
        print(f"{sent} requests on new connections until every worker had served one")
    return sent


def start(server_process: StartServer, argv: list[str], store: Path, port: int) -> ServerProcess:
    return server_process(argv, port=port, env=app_env(store), ready_path=READY)


SERVERS: dict[str, Callable[[int], list[str]]] = {
    "gunicorn-sync": gunicorn,
    "gunicorn-gthread": lambda port: gunicorn(port, "--worker-class=gthread", "--threads=2"),
    "gunicorn-preload": lambda port: gunicorn(port, "--preload"),
    "uwsgi": uwsgi,
    "uwsgi-lazy-apps": lambda port: uwsgi(port, "--lazy-apps"),
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_every_worker_counts_exactly_once(
    server: str, server_process: StartServer, tmp_path: Path
) -> None:
    port = free_port()
    srv = start(server_process, SERVERS[server](port), tmp_path / "p.sqlite3", port)
    assert sampled(summary(srv.url)) == 0, "the readiness probe is not profiled"
    sent = mixed_load(srv.url, per_path=60)
    sent += until_every_worker_served(srv.url, srv)
    data = settled(srv.url, srv, sent)
    assert sampled(data) == sent
    workers = worker_pids(srv)
    assert len(workers) == 3
    assert workers <= listed(data) <= workers | {srv.pid}
    status, body = http_get(srv.url + "/_wsgiprof/api/requests.csv", headers=AUTH)
    assert status == 200
    pids = [int(row["pid"]) for row in csv.DictReader(io.StringIO(body.decode()))]
    assert len(pids) == sent, "one request row per sampled request"
    assert set(pids) == workers


def test_sigkilled_worker_leaves_a_readable_store(
    server_process: StartServer, tmp_path: Path
) -> None:
    store = tmp_path / "p.sqlite3"
    port = free_port()
    srv = start(server_process, gunicorn(port), store, port)
    first = mixed_load(srv.url, per_path=30)
    data = settled(srv.url, srv, first)
    assert sampled(data) == first
    victim = min(listed(data) & worker_pids(srv))  # one that served, and flushed
    during = answered_while_killing(srv.url, 120, victim, kill_after=40)
    after = mixed_load(srv.url, per_path=20)
    total_sent = first + during + after
    # The first load was all flushed before the kill and the last one went to live workers:
    # both are counted in full. Only requests answered around the kill can be lost.
    data = settled(srv.url, srv, first + after)
    lost = total_sent - sampled(data)
    print(f"SIGKILL lost {lost} of the {during} requests answered around it")
    assert 0 <= lost <= during, "at most the victim's unflushed requests are lost"
    assert victim not in worker_pids(srv)
    with sqlite3.connect(store) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def answered_while_killing(url: str, n: int, victim: int, kill_after: int) -> int:
    """Send ``n`` requests from 3 threads, SIGKILL ``victim`` once ``kill_after`` of them were
    answered (so the kill lands mid-load, whatever the machine's speed); count those answered
    200 (the killed worker's requests in flight fail, and are not counted)."""
    lock = threading.Lock()
    answered = 0
    killed = False

    def one(i: int) -> None:
        nonlocal answered, killed
        try:
            ok = http_get(url + ("/report", "/health", "/users/3")[i % 3])[0] == 200
        except (OSError, http.client.HTTPException):
            # The killed worker's requests in flight: refused, reset, or cut mid-response.
            ok = False
        with lock:
            answered += ok
            if answered >= kill_after and not killed:
                os.kill(victim, signal.SIGKILL)
                killed = True

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(one, range(n)))
    assert killed, f"only {answered} of {n} requests were answered"
    return answered


def test_two_loads_after_reset_count_only_the_second(
    server_process: StartServer, tmp_path: Path
) -> None:
    port = free_port()
    srv = start(server_process, gunicorn(port), tmp_path / "p.sqlite3", port)
    first = mixed_load(srv.url, per_path=10)
    assert sampled(settled(srv.url, srv, first)) == first  # no worker holds any of it now
    status, _ = _post(srv.url + "/_wsgiprof/api/reset")
    assert status == 200
    assert sampled(summary(srv.url)) == 0
    sent = mixed_load(srv.url, per_path=15)
    assert sampled(settled(srv.url, srv, sent)) == sent


def _post(url: str, headers: Sequence[tuple[str, str]] = ()) -> tuple[int, bytes]:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, headers={**AUTH, **dict(headers)})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
