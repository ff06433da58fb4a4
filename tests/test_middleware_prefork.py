"""Pre-fork servers: every worker's profiles reach the summary, from whichever worker answers.

Real gunicorn and uWSGI processes serve the example app with sample rate 1.0 and a SQLite store;
a bounded concurrent load of N requests must show up as exactly N sampled requests, with every
worker pid listed, whether the app is imported before the fork (``--preload``, uWSGI without
``lazy-apps``) or after it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.servers import ServerProcess, free_port, http_get, load

pytestmark = pytest.mark.server

TOKEN = "prefork-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = "examples.flask_app.app:app"
StartServer = Callable[..., ServerProcess]


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
    return [
        sys.executable, "-m", "gunicorn", APP, f"--bind=127.0.0.1:{port}", "--workers=3",
        "--log-level=warning", *options,
    ]  # fmt: skip


def uwsgi(port: int, *options: str) -> list[str]:
    binary = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")
    if binary is None:
        pytest.fail("uwsgi is not installed (it is a test dependency)")
    return [
        binary, "--master", "--processes=3", "--threads=2", f"--http-socket=127.0.0.1:{port}",
        f"--module={APP}", "--need-app", "--die-on-term", "--disable-logging",
        f"--virtualenv={sys.prefix}", *options,
    ]  # fmt: skip


def summary(url: str) -> dict[str, Any]:
    status, body = http_get(url + "/_wsgiprof/api/summary", headers=AUTH)
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def sampled(data: dict[str, Any]) -> int:
    return sum(int(row["sampled"]) for row in data["endpoints"])


def wait_for_sampled(url: str, expected: int, timeout: float = 10.0) -> dict[str, Any]:
    """Summaries are eventually complete: each worker flushes every 0.2 s."""
    deadline = time.monotonic() + timeout
    while True:
        data = summary(url)
        if sampled(data) >= expected or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def worker_pids(server: ServerProcess) -> set[int]:
    master = psutil.Process(server.pid)
    return {child.pid for child in master.children(recursive=True)}


def mixed_load(url: str, per_path: int) -> int:
    paths = ("/report", "/users/12", "/health", "/inventory")
    with ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda p: load(url + p, per_path, 3), paths))
    assert all(set(statuses) == {200} for statuses in results)
    return per_path * len(paths)


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
    srv = server_process(
        SERVERS[server](port), port=port, env=app_env(tmp_path / "p.sqlite3"), ready_path="/health"
    )
    time.sleep(0.6)  # the readiness probes, flushed by whichever workers served them
    baseline = sampled(summary(srv.url))
    sent = mixed_load(srv.url, per_path=60)
    data = wait_for_sampled(srv.url, baseline + sent)
    assert sampled(data) == baseline + sent
    listed = {int(p["pid"]) for p in data["processes"]}
    assert worker_pids(srv) <= listed | {srv.pid}
    assert len(listed & worker_pids(srv)) == 3


def test_sigkilled_worker_leaves_a_readable_store(
    server_process: StartServer, tmp_path: Path
) -> None:
    store = tmp_path / "p.sqlite3"
    port = free_port()
    srv = server_process(gunicorn(port), port=port, env=app_env(store), ready_path="/health")
    first = mixed_load(srv.url, per_path=30)
    wait_for_sampled(srv.url, first)
    victim = sorted(worker_pids(srv))[0]
    with ThreadPoolExecutor(1) as pool:
        during = pool.submit(count_answered, srv.url, 120)
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        sent_during = during.result()
    after = mixed_load(srv.url, per_path=20)
    total_sent = first + sent_during + after
    data = wait_for_sampled(srv.url, total_sent)
    lost = total_sent - sampled(data)
    print(f"SIGKILL lost {lost} of {total_sent} sampled requests")
    assert 0 <= lost <= 30, "at most the victim's last unflushed interval is lost"
    with sqlite3.connect(store) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def count_answered(url: str, n: int) -> int:
    """Send ``n`` requests from 3 threads; count those answered 200 (the killed worker's
    requests in flight fail, and are not counted)."""

    def one(i: int) -> bool:
        try:
            return http_get(url + ("/report", "/health", "/users/3")[i % 3])[0] == 200
        except OSError:
            return False

    with ThreadPoolExecutor(3) as pool:
        return sum(pool.map(one, range(n)))


def test_two_loads_after_reset_count_only_the_second(
    server_process: StartServer, tmp_path: Path
) -> None:
    port = free_port()
    srv = server_process(
        gunicorn(port), port=port, env=app_env(tmp_path / "p.sqlite3"), ready_path="/health"
    )
    mixed_load(srv.url, per_path=10)
    time.sleep(0.5)
    status, _ = _post(srv.url + "/_wsgiprof/api/reset")
    assert status == 200
    time.sleep(0.5)  # let every worker flush what it held from before the reset
    _post(srv.url + "/_wsgiprof/api/reset")
    sent = mixed_load(srv.url, per_path=15)
    assert sampled(wait_for_sampled(srv.url, sent)) == sent


def _post(url: str, headers: Sequence[tuple[str, str]] = ()) -> tuple[int, bytes]:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, headers={**AUTH, **dict(headers)})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
