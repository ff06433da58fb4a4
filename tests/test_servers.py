"""Self-tests for the real-server test infrastructure in tests/servers.py."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import (
    REPO_ROOT,
    ServerProcess,
    ServerStartError,
    ThreadedServer,
    free_port,
    http_get,
    load,
    python_module_argv,
    unavailable,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

HELLO_APP = "tests.apps.hello:app"
StartServer = Callable[..., ServerProcess]


Seen = set[tuple[int, int]]


def _pids_and_threads(url: str, parallel: int, rounds: int, done: Callable[[Seen], bool]) -> Seen:
    """Hit ``url`` ``parallel`` at a time, each request on a new connection, until the
    ``(pid, thread)`` pairs that answered satisfy ``done``, for at most ``rounds`` rounds. The
    kernel gives a connection to whichever worker accepts it first: only requests that keep
    every worker busy (``?sleep=``) spread them, and only after some rounds for sure."""
    seen: Seen = set()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for _ in range(rounds):
            for status, body in pool.map(lambda _: http_get(url), range(parallel)):
                assert status == 200
                data = json.loads(body)
                seen.add((data["pid"], data["thread"]))
            if done(seen):
                break
    return seen


def _pids(seen: Seen) -> set[int]:
    return {pid for pid, _ in seen}


# --- helpers -----------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    "url",
    ["http://example.com/", "http://10.0.0.1:8000/", "https://127.0.0.1/", "ftp://localhost/"],
)
def test_load_refuses_non_loopback(url: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|http://"):
        load(url, 1, 1)


def test_load_is_bounded() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        load("http://127.0.0.1:1/", 1, 1000)
    with pytest.raises(ValueError, match="n must be"):
        load("http://127.0.0.1:1/", 10**9, 1)


# --- ThreadedServer ----------------------------------------------------------------------------


def test_threaded_server_serves_concurrently(
    threaded_server: Callable[[Any], ThreadedServer],
) -> None:
    parallel = 4
    barrier = threading.Barrier(parallel)
    idents: set[int] = set()
    lock = threading.Lock()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with lock:
            idents.add(threading.get_ident())
        if environ["PATH_INFO"] == "/barrier":
            # Only passes if `parallel` requests are being handled at the same time.
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"not concurrent"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    srv = threaded_server(app)
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    assert load(srv.url + "/barrier", parallel, parallel) == [200] * parallel
    assert len(idents) == parallel
    assert threading.get_ident() not in idents
    assert load(srv.url + "/", 50, 8, headers={"X-Test": "1"}) == [200] * 50


def test_threaded_server_context_manager_stops() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("204 No Content", [])
        return []

    with ThreadedServer(app) as srv:
        assert http_get(srv.url)[0] == 204
    with pytest.raises(ConnectionRefusedError):
        http_get(srv.url, timeout=2)


# --- ServerProcess -----------------------------------------------------------------------------


@pytest.mark.server
def test_server_process_python_m(server_process: StartServer, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("hi")
    port = free_port()
    srv = server_process(
        python_module_argv(
            "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), str(port)
        ),
        port=port,
    )
    assert http_get(srv.url + "/index.html") == (200, b"hi")
    assert srv.stop() is not None
    assert srv.proc is not None
    assert srv.proc.returncode is not None


@pytest.mark.server
def test_server_process_reports_early_death() -> None:
    code = "import sys; print('boom on stderr', file=sys.stderr); sys.exit(3)"
    srv = ServerProcess([sys.executable, "-c", code], port=free_port(), startup_timeout=10)
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*boom on stderr"):
        srv.start()
    srv.log_path.unlink()


@pytest.mark.server
def test_server_process_reports_timeout() -> None:
    # Never listens: the error must say so, with the output so far.
    code = "import time; print('still booting', flush=True); time.sleep(60)"
    srv = ServerProcess(
        [sys.executable, "-c", code], port=free_port(), startup_timeout=1, stop_timeout=2
    )
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match=r"(?s)did not answer HTTP within 1s.*still booting"):
        srv.start()
    assert time.monotonic() - t0 < 5
    assert srv.proc is not None
    assert srv.proc.returncode is not None
    srv.log_path.unlink()


@pytest.mark.server
def test_gunicorn_two_sync_workers(server_process: StartServer) -> None:
    port = free_port()
    srv = server_process(
        python_module_argv(
            "gunicorn",
            "--workers=2",
            "--worker-class=sync",
            f"--bind=127.0.0.1:{port}",
            "--graceful-timeout=5",
            f"--chdir={REPO_ROOT}",
            HELLO_APP,
        ),
        port=port,
        name="gunicorn",
    )
    seen = _pids_and_threads(
        srv.url + "/?sleep=0.1", parallel=4, rounds=100, done=lambda s: len(_pids(s)) >= 2
    )
    pids = _pids(seen)
    assert len(pids) == 2, seen
    assert srv.pid not in pids  # answered by workers, not the master
    assert load(srv.url + "/", 40, 4) == [200] * 40


def _uwsgi() -> str:
    """The uWSGI of the test interpreter's environment (or on ``PATH``); missing, the test is
    skipped locally and fails under ``CI``."""
    found = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")
    if found is None:
        unavailable("uWSGI is not installed (pip install uwsgi)")
    return found


def _several_threads_in_each_of_two_pids(seen: Seen) -> bool:
    pids = _pids(seen)
    return len(pids) >= 2 and all(sum(p == pid for p, _ in seen) >= 2 for pid in pids)


@pytest.mark.server
def test_uwsgi_two_processes_two_threads(server_process: StartServer) -> None:
    port = free_port()
    srv = server_process(
        [
            _uwsgi(),
            "--master",
            "--processes=2",
            "--threads=2",
            f"--http-socket=127.0.0.1:{port}",
            f"--chdir={REPO_ROOT}",
            f"--pythonpath={REPO_ROOT}",
            f"--virtualenv={sys.prefix}",
            f"--module={HELLO_APP}",
            "--need-app",
            "--die-on-term",
            "--disable-logging",
        ],
        port=port,
        name="uwsgi",
    )
    seen = _pids_and_threads(
        srv.url + "/?sleep=0.1", parallel=8, rounds=100, done=_several_threads_in_each_of_two_pids
    )
    pids = _pids(seen)
    assert len(pids) == 2, seen
    assert srv.pid not in pids
    assert _several_threads_in_each_of_two_pids(seen), f"expected 2 threads per process: {seen}"
    assert load(srv.url + "/", 40, 8) == [200] * 40


# --- PostgreSQL --------------------------------------------------------------------------------


def test_postgres_select_and_sleep_is_off_cpu(postgres_dsn: str) -> None:
    import psycopg2

    conn = psycopg2.connect(postgres_dsn, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)

            wall0, cpu0 = time.perf_counter(), time.thread_time()
            cur.execute("SELECT pg_sleep(0.02)")
            cur.fetchone()
            wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    finally:
        conn.close()
    assert wall >= 0.02
    # The client waits in the kernel while the server sleeps: almost no CPU on this thread.
    assert cpu < 0.01, (wall, cpu)


def test_postgres_dsn_is_loopback(postgres_dsn: str, request: pytest.FixtureRequest) -> None:
    assert "host=127.0.0.1" in postgres_dsn
    assert request.node.get_closest_marker("postgres") is not None
