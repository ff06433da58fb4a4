"""Test infrastructure for tests that need real servers.

Everything here binds to or talks to loopback (127.0.0.1) only.

Helpers:

* :func:`free_port` - an unused TCP port on 127.0.0.1.
* :class:`ThreadedServer` - a WSGI app served in-process by werkzeug's threaded server.
* :class:`ServerProcess` - a server command (gunicorn, uWSGI, ``python -m ...``) in a subprocess.
* :func:`load` - a bounded, concurrent HTTP GET load generator returning status codes.
* :func:`http_get` - a single GET returning ``(status, body)``.
* :class:`PostgresCluster` - a throwaway PostgreSQL cluster (works as root).

Fixtures (registered by ``tests/conftest.py``):

* ``threaded_server`` - factory ``start(app) -> ThreadedServer``; stops all at teardown.
* ``server_process`` - factory ``start(argv, port=..., ...) -> ServerProcess``; stops all at
  teardown; their logs are attached to the report of a failing test.
* ``postgres_cluster`` (session) - a running :class:`PostgresCluster`.
* ``postgres_dsn`` (session) - its psycopg2 DSN string.
* ``redis_server`` (session) - a running :class:`RedisServer` (no persistence).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "LOOPBACK_HOSTS",
    "REPO_ROOT",
    "SERVER_PROCESSES_KEY",
    "PostgresCluster",
    "PostgresUnavailableError",
    "RedisServer",
    "RedisUnavailableError",
    "ServerProcess",
    "ServerStartError",
    "ThreadedServer",
    "find_pg_bindir",
    "free_port",
    "http_get",
    "in_ci",
    "load",
    "postgres_cluster",
    "postgres_dsn",
    "python_module_argv",
    "redis_server",
    "run_forked",
    "server_process",
    "threaded_server",
    "unavailable",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})

#: Upper bounds for :func:`load`, so that a typo cannot turn a test into a load test.
MAX_LOAD_REQUESTS = 20_000
MAX_LOAD_CONCURRENCY = 64


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose tool or server is missing, except under ``CI``, where a silent skip
    would hide a missing install step: there it fails."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: not skipping)", pytrace=False)
    pytest.skip(reason)


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to a truthy value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def run_forked(work: Callable[[], bytes], *, timeout: float) -> tuple[int, bytes]:
    """Fork; the child runs ``work`` and sends what it returns through a pipe (or, if it raises,
    its traceback) and exits 0 (or 1). Returns the child's exit code and that output. A child
    that sends nothing for ``timeout`` seconds is killed and the test fails."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code, output = 1, b""
        try:
            os.close(read_end)
            output = work()
            code = 0
        except BaseException:
            output = traceback.format_exc().encode()
        finally:
            try:
                os.write(write_end, output)
            finally:
                os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(left, 0.0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"forked child {pid} hung for {timeout} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    There is an unavoidable race between closing the probe socket and the server binding the
    port; callers that start a subprocess should retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str, max_chars: int = 6000) -> str:
    if len(text) <= max_chars:
        return text
    return "[... truncated ...]\n" + text[-max_chars:]


# --------------------------------------------------------------------------------------------
# In-process threaded WSGI server
# --------------------------------------------------------------------------------------------


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the one-line-per-request access log (errors still log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ThreadedServer:
    """Serve a WSGI app in-process with werkzeug's threaded server on 127.0.0.1.

    The server is bound in ``__init__`` (port 0, so no race); ``start()`` begins serving in a
    daemon thread. Use as a context manager or call ``stop()``.
    """

    def __init__(self, app: WSGIApplication, *, quiet: bool = True) -> None:
        self.app = app
        self._server = make_server(
            "127.0.0.1",
            0,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler if quiet else None,
        )
        self.host = "127.0.0.1"
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"test-threaded-server-{self.port}",
            daemon=True,
        )
        self._started = False
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> ThreadedServer:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the listening socket and join the serving thread."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._server.shutdown()
        self._server.server_close()
        if self._started:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"server thread {self._thread.name} did not stop in {timeout}s")

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ThreadedServer {self.url} app={self.app!r}>"


# --------------------------------------------------------------------------------------------
# Server in a subprocess
# --------------------------------------------------------------------------------------------


class ServerStartError(RuntimeError):
    """The server process died or did not answer HTTP before the deadline."""


class ServerProcess:
    """Run a server command in its own process group and wait until its port answers HTTP.

    ``argv`` is the full command; the caller puts ``port`` into it (``free_port()``).
    ``env`` is added to a copy of ``os.environ`` (``inherit_env=False`` to start empty).
    Any HTTP response to ``GET ready_path`` counts as "up", whatever its status.
    stdout and stderr go to one log file (``log_path``/``logs()``), shown in the
    error when the server dies or times out while starting.

    Stopping sends ``stop_signal`` (SIGTERM) to the whole process group, then SIGKILL after
    ``stop_timeout`` seconds. (uWSGI reloads on SIGTERM: give it ``--die-on-term`` or use
    ``stop_signal=signal.SIGINT``.)
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: str | os.PathLike[str] | None = REPO_ROOT,
        host: str = "127.0.0.1",
        ready_path: str = "/",
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        stop_signal: int = signal.SIGTERM,
        name: str | None = None,
        keep_log: bool = False,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"ServerProcess only serves on loopback, not {host!r}")
        if not argv:
            raise ValueError("empty argv")
        self.argv = [os.fspath(a) for a in argv]
        self.port = port
        self.host = host
        self.cwd = cwd
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.stop_signal = stop_signal
        self.name = name or Path(self.argv[0]).name
        self.keep_log = keep_log
        self.env: dict[str, str] = dict(os.environ) if inherit_env else {}
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None
        fd, log_name = tempfile.mkstemp(prefix=f"wsgiprof-test-{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("server not started")
        return self.proc.pid

    def logs(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _answers_http(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", self.ready_path, headers={"Connection": "close"})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
        return True

    def start(self) -> ServerProcess:
        if self.proc is not None:
            raise RuntimeError("server already started")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.02
        while True:
            code = self.proc.poll()
            if code is not None:
                self._fail_start(f"exited with code {code} before answering HTTP")
            if self._answers_http():
                return self
            if time.monotonic() >= deadline:
                self._fail_start(f"did not answer HTTP within {self.startup_timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _fail_start(self, what: str) -> None:
        self.keep_log = True
        self.stop()
        raise ServerStartError(
            f"{self.name} on {self.url} {what}.\n"
            f"command: {' '.join(self.argv)}\n"
            f"log ({self.log_path}):\n{_tail(self.logs())}"
        )

    def _signal_group(self, sig: int) -> bool:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self) -> int | None:
        """Terminate the process group; return the leader's exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self._signal_group(self.stop_signal)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(self.stop_timeout)
        # Mop up group members (e.g. workers) that outlived their master.
        self._signal_group(signal.SIGKILL)
        if not self.keep_log:
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.keep_log = True
        self.stop()

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<ServerProcess {self.name} {self.url} pid={pid}>"


# --------------------------------------------------------------------------------------------
# HTTP client helpers
# --------------------------------------------------------------------------------------------


def _split_loopback_url(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to send requests to non-loopback host in {url!r}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return "127.0.0.1", parts.port or 80, target


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One GET to a loopback URL; return ``(status, body)``. Non-2xx statuses do not raise."""
    host, port, target = _split_loopback_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", target, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def load(
    url: str,
    n: int,
    concurrency: int,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 10.0,
) -> list[int]:
    """Send ``n`` GET requests to a loopback ``url`` from ``concurrency`` threads.

    Each thread keeps one HTTP/1.1 keep-alive connection (reconnecting when the server closes
    it). Returns the status codes in completion order. Transport errors (refused, reset twice,
    timeout) are raised after all requests finished or failed.
    """
    host, port, target = _split_loopback_url(url)
    if not 0 <= n <= MAX_LOAD_REQUESTS:
        raise ValueError(f"n must be in [0, {MAX_LOAD_REQUESTS}], got {n}")
    if not 1 <= concurrency <= MAX_LOAD_CONCURRENCY:
        raise ValueError(f"concurrency must be in [1, {MAX_LOAD_CONCURRENCY}], got {concurrency}")
    hdrs = dict(headers or {})
    local = threading.local()
    conns: list[http.client.HTTPConnection] = []
    conns_lock = threading.Lock()

    def connection() -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            local.conn = conn
            with conns_lock:
                conns.append(conn)
        return conn

    def one(_: int) -> int:
        conn = connection()
        for attempt in (1, 2):
            try:
                conn.request("GET", target, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                return resp.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once.
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="test-load") as pool:
            return list(pool.map(one, range(n)))
    finally:
        for conn in conns:
            conn.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

PG_BINARIES = ("initdb", "pg_ctl", "postgres")


def find_pg_bindir() -> Path | None:
    """Locate a directory with initdb, pg_ctl and postgres.

    Order: ``$WSGIPROF_PG_BINDIR``; Debian's ``/usr/lib/postgresql/15/bin``; other Debian
    versions, newest first; the directory of ``pg_ctl`` on ``PATH``.
    """
    candidates: list[Path] = []
    if env_dir := os.environ.get("WSGIPROF_PG_BINDIR"):
        candidates.append(Path(env_dir))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        versions.sort(key=lambda p: int(p.name), reverse=True)
        candidates.extend(p / "bin" for p in versions)
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    for cand in candidates:
        if all(os.access(cand / b, os.X_OK) for b in PG_BINARIES):
            return cand
    return None


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL binaries (or no unprivileged user to run them as root)."""


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust auth and ``fsync=off``.

    PostgreSQL refuses to run as root. When the current user is root, ``initdb`` and the
    server run as the ``postgres`` system user (``run_as``), in a temp folder owned by it.
    """

    def __init__(self, *, bindir: Path | None = None, run_as: str = "postgres") -> None:
        found = bindir or find_pg_bindir()
        if found is None:
            raise PostgresUnavailableError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
                "install Debian's 'postgresql' package or set WSGIPROF_PG_BINDIR"
            )
        self.bindir = found
        self.user = "postgres"  # the database superuser created by initdb
        self.host = "127.0.0.1"
        self.port = 0
        self._uid: int | None = None
        self._gid: int | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(run_as)
            except KeyError:
                raise PostgresUnavailableError(
                    f"running as root and there is no {run_as!r} system user to run "
                    "PostgreSQL as (PostgreSQL refuses to run as root)"
                ) from None
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        # /tmp (not $TMPDIR) when dropping privileges: the user must be able to traverse it.
        tmp_parent = "/tmp" if self._uid is not None else None
        self.root = Path(tempfile.mkdtemp(prefix="wsgiprof-pg-", dir=tmp_parent))
        self.datadir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.socket_dir.mkdir()
        self.log_path.touch()
        if self._uid is not None and self._gid is not None:
            for p in (self.root, self.socket_dir, self.log_path):
                os.chown(p, self._uid, self._gid)
        self._running = False

    @property
    def dsn(self) -> str:
        """A libpq/psycopg2 DSN over TCP to the ``postgres`` database."""
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"

    def _run(self, argv: Sequence[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": f"{self.bindir}:/usr/bin:/bin",
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(self.root),
            "TZ": "UTC",
        }
        kwargs: dict[str, Any] = {}
        if self._uid is not None:
            kwargs = {"user": self._uid, "group": self._gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def _pg_ctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self._run(["pg_ctl", "-D", str(self.datadir), *args], timeout=timeout)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            raise RuntimeError(
                f"{what} failed with code {proc.returncode}\n"
                f"command: {' '.join(proc.args)}\n"
                f"stdout:\n{_tail(proc.stdout)}\nstderr:\n{_tail(proc.stderr)}\n"
                f"server log ({self.log_path}):\n{_tail(self.logs())}"
            )

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, attempts: int = 3) -> PostgresCluster:
        init = self._run(
            [
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        self._check(init, "initdb")
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.socket_dir}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "50",
                "shared_buffers": "32MB",
                "logging_collector": "off",
            }
            # postgresql.auto.conf is read last, so these win; rewritten on each attempt.
            auto_conf = self.datadir / "postgresql.auto.conf"
            auto_conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
            if self._uid is not None and self._gid is not None:
                os.chown(auto_conf, self._uid, self._gid)
            proc = self._pg_ctl("-l", str(self.log_path), "-w", "-t", "60", "start")
            if proc.returncode == 0:
                self._running = True
                return self
            if attempt == attempts or "already in use" not in self.logs():
                self._check(proc, "pg_ctl start")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop immediately (no checkpoint) and delete the cluster folder."""
        try:
            if self._running or (self.datadir / "postmaster.pid").exists():
                proc = self._pg_ctl("-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
                if proc.returncode != 0:
                    self._kill_postmaster()
                self._running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError, ProcessLookupError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

#: ``request.node.stash`` key under which ``server_process`` records its processes, so that
#: ``conftest.pytest_runtest_makereport`` can attach their logs to a failing test's report.
SERVER_PROCESSES_KEY = pytest.StashKey[list[ServerProcess]]()


@pytest.fixture
def threaded_server() -> Iterator[Callable[[WSGIApplication], ThreadedServer]]:
    """Factory: ``srv = threaded_server(app)`` serves ``app`` on ``srv.url`` until teardown."""
    servers: list[ThreadedServer] = []

    def start(app: WSGIApplication) -> ThreadedServer:
        srv = ThreadedServer(app)
        servers.append(srv)
        return srv.start()

    yield start
    errors: list[BaseException] = []
    for srv in reversed(servers):
        try:
            srv.stop()
        except Exception as exc:  # stop the others anyway
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def server_process(request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Factory with :class:`ServerProcess`'s signature; returns the started process.

    ``srv = server_process([sys.executable, "-m", "gunicorn", ...], port=port)``.
    All processes are stopped at teardown; on failure their logs appear in the report.
    """
    procs: list[ServerProcess] = []
    request.node.stash[SERVER_PROCESSES_KEY] = procs

    def start(argv: Sequence[str], **kwargs: Any) -> ServerProcess:
        proc = ServerProcess(argv, **kwargs)
        procs.append(proc)
        return proc.start()

    yield start
    for proc in reversed(procs):
        proc.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the whole session.

    Skips when PostgreSQL is not installed, except under ``CI`` where it fails instead.
    Tests using it are marked ``postgres`` automatically (see conftest).
    """
    try:
        cluster = PostgresCluster()
    except PostgresUnavailableError as exc:
        unavailable(str(exc))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: PostgresCluster) -> str:
    """DSN for psycopg2: ``psycopg2.connect(postgres_dsn)``."""
    return postgres_cluster.dsn


def python_module_argv(module: str, *args: str) -> list[str]:
    """``[sys.executable, "-m", module, *args]``: run a tool from the test interpreter's env."""
    return [sys.executable, "-m", module, *args]


def gunicorn_argv(port: int, app: str, *options: str) -> list[str]:
    """gunicorn from the test interpreter's env serving ``app`` (``module:callable``) on
    127.0.0.1:``port``, with ``options`` (workers, worker class, log level...)."""
    return python_module_argv("gunicorn", app, f"--bind=127.0.0.1:{port}", *options)


def uwsgi_argv(port: int, module: str, *options: str) -> list[str]:
    """uWSGI of the test interpreter's env serving ``module`` (``module:callable``) over HTTP on
    127.0.0.1:``port``, in that env, stopped by SIGTERM, with ``options`` (processes, threads,
    ``--lazy-apps``...). A missing uWSGI fails the test: it is a test dependency."""
    binary = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")
    if binary is None:
        pytest.fail("uwsgi is not installed (it is a test dependency)")
    return [
        binary, "--master", f"--http-socket=127.0.0.1:{port}", f"--module={module}",
        "--need-app", "--die-on-term", "--disable-logging", f"--virtualenv={sys.prefix}",
        *options,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


class RedisUnavailableError(RuntimeError):
    """No ``redis-server`` binary."""


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1, without persistence, in a temp folder.

    ``stop()`` and ``start()`` again reuse the same port, so clients see Redis going away and
    coming back (empty: nothing is saved). ``pause()``/``resume()`` freeze it with SIGSTOP, so
    connections hang instead of being refused.

    Example::

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(self, *, binary: str | None = None) -> None:
        found = binary or os.environ.get("WSGIPROF_REDIS_SERVER") or shutil.which("redis-server")
        if found is None and os.access("/usr/bin/redis-server", os.X_OK):
            found = "/usr/bin/redis-server"
        if found is None:
            raise RedisUnavailableError(
                "redis-server not found; install Debian's 'redis-server' package or set "
                "WSGIPROF_REDIS_SERVER"
            )
        self.binary = found
        self.host = "127.0.0.1"
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="wsgiprof-redis-"))
        self.log_path = self.root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, attempts: int = 3, timeout: float = 10.0) -> RedisServer:
        """Start (again on the same port, once one was chosen) and wait until it answers PING."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        fixed_port = bool(self.port)
        for attempt in range(1, attempts + 1):
            if not fixed_port:
                self.port = free_port()
            argv = [
                self.binary, "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", str(self.root), "--logfile", str(self.log_path),
                "--daemonize", "no",
            ]  # fmt: skip
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True
            )
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._ping():
                    return self
                time.sleep(0.02)
            self.stop()
            if fixed_port or attempt == attempts or "already in use" not in self.logs():
                raise RuntimeError(
                    f"redis-server on port {self.port} did not start.\n"
                    f"log ({self.log_path}):\n{_tail(self.logs())}"
                )
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL); the folder stays for ``start()``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop and delete the folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A running :class:`RedisServer` for the whole session (tests that stop it start it again).

    Skips when ``redis-server`` is not installed, except under ``CI`` where it fails instead.
    """
    try:
        server = RedisServer()
    except RedisUnavailableError as exc:
        unavailable(str(exc))
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    try:
        yield server
    finally:
        server.close()
