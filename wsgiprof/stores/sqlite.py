"""The SQLite store: one file shared by every worker process of one host, no server to run.

This is the default for multi-process servers (uWSGI, gunicorn with several workers). Each flush
appends one row holding the worker's delta, so writers never read-modify-write and only contend
on SQLite's short write lock; a reader merges the rows of the current window. SQLite runs in WAL
mode, so readers never block writers, and a process killed in the middle of a write leaves the
file consistent (the unfinished transaction is rolled back on the next open).

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    windows   (id, app, start)                         newest row of an app = its current window
    deltas    (id, window_id, pid, host, created, lost, payload)   one encoded delta per flush
    processes (window_id, host, pid, info, last_seen)  latest reading of each process
    requests  (id, window_id, host, pid, row)          newest request rows of each process
    runs      (id, app, saved_at, info, payload)       saved runs: RunInfo JSON, encoded run

Several applications may share one file: each ``app_name`` has its own windows. Readers fold the
rows of a window into one (compaction) once there are more than ``compact_after``, so reads stay
fast however long nobody looks.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wsgiprof.model import EndpointProfile
from wsgiprof.stores.base import (
    MAX_RUNS,
    REQUEST_ROWS_PER_PROCESS,
    ProcessInfo,
    RequestRow,
    RunInfo,
    RunLimitError,
    Snapshot,
    UnknownRunError,
    check_label,
    warn_once,
)
from wsgiprof.stores.codec import (
    CodecError,
    DeltaMerger,
    encode_delta,
    process_from_dict,
    process_to_dict,
)
from wsgiprof.stores.runs import decode_rows, decode_run, encode_rows, encode_run

__all__ = ["SCHEMA_VERSION", "SqliteStore", "SqliteStoreError"]

SCHEMA_VERSION = 2
"""Layout version of the file, kept in ``PRAGMA user_version``."""

APPLICATION_ID = 0x77737066
"""``PRAGMA application_id`` of a wsgiprof file (``wspf``), so a foreign database is refused."""

DEFAULT_BUSY_TIMEOUT = 5.0
DEFAULT_COMPACT_AFTER = 64
_WRITER_COMPACT_FACTOR = 4


_SCHEMA = """
CREATE TABLE windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    start REAL NOT NULL
);
CREATE INDEX windows_by_app ON windows (app, id);
CREATE TABLE deltas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window_id INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    created REAL NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,
    payload BLOB
);
CREATE INDEX deltas_by_window ON deltas (window_id, id);
CREATE TABLE processes (
    window_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    info TEXT NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (window_id, host, pid)
);
"""

# Schema 2 adds saved runs and request rows; a schema 1 file is upgraded in place.
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_process ON requests (window_id, host, pid, id);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    saved_at REAL NOT NULL,
    info TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_app ON runs (app, id);
"""


class SqliteStoreError(RuntimeError):
    """The file cannot serve as a wsgiprof store: unreadable, foreign, or from a newer wsgiprof."""


class _Connection(sqlite3.Connection):
    """A connection that remembers which process opened it."""

    owner_pid: int


@dataclass(eq=False)
class _ProcessState:
    """Connections and counters of one process; replaced wholesale in a forked child."""

    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: dict[int, _Connection] = field(default_factory=dict)
    lost_pending: int = 0
    warned: set[str] = field(default_factory=set)


# Connections inherited over fork: kept referenced so the child never uses or finalises them.
_INHERITED: list[_ProcessState] = []
_STORES: weakref.WeakSet[SqliteStore] = weakref.WeakSet()
_FORK_GUARD = threading.Lock()


def _after_fork_in_child() -> None:
    global _FORK_GUARD  # noqa: PLW0603
    _FORK_GUARD = threading.Lock()
    for store in list(_STORES):
        store._renew_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(slots=True)
class _Window:
    id: int
    start: float


@dataclass(slots=True)
class _Loaded:
    window: _Window | None
    endpoints: dict[str, EndpointProfile]
    processes: list[ProcessInfo]
    rows: int
    last_row: int
    lost: int
    undecodable: int


class SqliteStore:
    """A :class:`~wsgiprof.stores.base.Store` in one SQLite file, shared by the processes of a host.

    The file and any missing parent folders are created private to the user (folders 0700, file
    0600): profiles reveal the structure of the code. Each thread of each process gets its own
    connection; a process forked after the store was used opens new ones and never touches the
    parent's. ``flush`` never raises: if the write fails (the lock is still held after
    ``busy_timeout`` seconds, a disk error), the delta is counted in ``Snapshot.lost_flushes`` and
    the first failure is logged to the ``wsgiprof`` logger. ``read``, ``reset`` and
    ``window_start`` raise :class:`sqlite3.Error` for such trouble; opening a file that is not a
    wsgiprof store, or is one from a newer wsgiprof, raises :class:`SqliteStoreError`.

    Example::

        store = SqliteStore("/var/tmp/wsgiprof-1000/shop.sqlite3", app_name="shop")
        store.flush(aggregator.drain(), ProcessInfo())      # in every worker, every second
        snapshot = store.read()                             # anywhere on the host
        store.reset()                                       # a new window for every worker
    """

    def __init__(
        self,
        path: str,
        *,
        app_name: str = "wsgiprof",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        compact_after: int = DEFAULT_COMPACT_AFTER,
    ) -> None:
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError(f"SqliteStore needs a file path, not {path!r}")
        if not app_name:
            raise ValueError("app_name must not be empty")
        if busy_timeout < 0 or compact_after < 1:
            raise ValueError("busy_timeout must be >= 0 and compact_after >= 1")
        self.path = os.path.abspath(path)
        self.app_name = app_name
        self.busy_timeout = busy_timeout
        self.compact_after = compact_after
        self._state_now = _ProcessState()
        self._renew_lock = threading.Lock()
        connection = self._connect()
        try:
            self._window(connection, create=True)
        finally:
            connection.close()
        _STORES.add(self)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, app_name={self.app_name!r})"

    # -- Store protocol ----------------------------------------------------------------------

    def flush(self, delta: Mapping[str, EndpointProfile], process: ProcessInfo) -> None:
        """Append ``delta`` to the current window and record ``process``; never raises for
        trouble with the file (the loss is counted instead)."""
        state = self._state()
        with state.lock:
            lost = state.lost_pending
        try:
            payload = encode_delta(delta) if delta else None
            info = json.dumps(process_to_dict(process))
            connection = self._connection(state)
            rows = self._write(connection, payload, lost, process, info)
        except Exception as exc:
            if delta:
                with state.lock:
                    state.lost_pending += 1
            self._drop_connection(state)
            warn_once(
                state.lock,
                state.warned,
                "flush",
                "wsgiprof: a flush to %s was lost: %s",
                self.path,
                exc,
            )
            return
        with state.lock:
            state.lost_pending -= lost
        limit = self.compact_after * _WRITER_COMPACT_FACTOR
        if rows and rows % limit == 0:
            try:
                self._load(connection, compact=True)
            except (sqlite3.Error, CodecError) as exc:
                self._drop_connection(state)
                warn_once(
                    state.lock, state.warned, "compact", "wsgiprof: compaction failed: %s", exc
                )

    def read(self) -> Snapshot:
        """The current window merged over every process that flushed into it."""
        state = self._state()
        connection = self._connection(state)
        try:
            loaded = self._load(connection, compact=True)
        except sqlite3.Error:
            self._drop_connection(state)
            raise
        with state.lock:
            lost = loaded.lost + state.lost_pending
        now = time.time()
        return Snapshot(
            window_start=loaded.window.start if loaded.window is not None else now,
            window_end=now,
            endpoints=loaded.endpoints,
            processes=loaded.processes,
            lost_flushes=lost,
        )

    def reset(self) -> float:
        """Start a new, empty window for every process of this application; returns its start."""
        state = self._state()
        connection = self._connection(state)
        start = time.time()
        try:
            with _immediate(connection):
                self._new_window(connection, start)
        except sqlite3.Error:
            self._drop_connection(state)
            raise
        with state.lock:
            state.lost_pending = 0
        return start

    def _new_window(self, connection: _Connection, start: float) -> None:
        """Start a window and delete the older ones of this application (in a transaction)."""
        window = connection.execute(
            "INSERT INTO windows (app, start) VALUES (?, ?)", (self.app_name, start)
        ).lastrowid
        arguments = (self.app_name, window)
        for table in ("deltas", "processes", "requests"):
            connection.execute(
                f"DELETE FROM {table} WHERE window_id IN"  # noqa: S608 - fixed table names
                " (SELECT id FROM windows WHERE app = ? AND id < ?)",
                arguments,
            )
        connection.execute("DELETE FROM windows WHERE app = ? AND id < ?", arguments)

    def window_start(self) -> float:
        """Start time of the current window."""
        state = self._state()
        connection = self._connection(state)
        try:
            window = self._window(connection, create=True)
        except sqlite3.Error:
            self._drop_connection(state)
            raise
        assert window is not None
        return window.start

    def close(self) -> None:
        """Close the calling thread's connection (others close theirs, or at exit)."""
        state = self._state()
        with state.lock:
            connection = state.connections.pop(threading.get_ident(), None)
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    # -- writing and reading -----------------------------------------------------------------

    def _write(
        self,
        connection: _Connection,
        payload: bytes | None,
        lost: int,
        process: ProcessInfo,
        info: str,
    ) -> int:
        """One flush in one transaction; returns the delta rows now in the window (0 if none
        was added)."""
        with _immediate(connection):
            window = self._window(connection, create=True)
            assert window is not None
            if payload is None and not lost:
                rows = 0
            else:
                connection.execute(
                    "INSERT INTO deltas (window_id, pid, host, created, lost, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (window.id, process.pid, process.host, time.time(), lost, payload),
                )
                rows = connection.execute(
                    "SELECT count(*) FROM deltas WHERE window_id = ?", (window.id,)
                ).fetchone()[0]
            connection.execute(
                "INSERT OR REPLACE INTO processes (window_id, host, pid, info, last_seen)"
                " VALUES (?, ?, ?, ?, ?)",
                (window.id, process.host, process.pid, info, process.last_seen),
            )
        return int(rows)

    def _load(self, connection: _Connection, *, compact: bool) -> _Loaded:
        """Read and merge the current window in one consistent snapshot; fold its rows into one
        when there are more than ``compact_after``."""
        connection.execute("BEGIN")
        try:
            window = self._window(connection, create=False)
            if window is None:
                return _Loaded(None, {}, [], 0, 0, 0, 0)
            loaded = self._merge(connection, window)
        finally:
            connection.execute("COMMIT")
        if compact and loaded.rows > self.compact_after and not loaded.undecodable:
            self._compact(connection, loaded)
        return loaded

    def _merge(self, connection: _Connection, window: _Window) -> _Loaded:
        """Read and merge the rows of ``window`` (inside the caller's transaction)."""
        rows = connection.execute(
            "SELECT id, lost, payload FROM deltas WHERE window_id = ? ORDER BY id",
            (window.id,),
        ).fetchall()
        process_rows = connection.execute(
            "SELECT info FROM processes WHERE window_id = ? ORDER BY host, pid",
            (window.id,),
        ).fetchall()
        merger = DeltaMerger()
        lost = undecodable = 0
        for _, row_lost, payload in rows:
            lost += row_lost
            if payload is None:
                continue
            try:
                merger.add(payload)
            except CodecError as exc:
                undecodable += 1
                state = self._state()
                warn_once(state.lock, state.warned, "decode", "wsgiprof: skipped a delta: %s", exc)
        endpoints = merger.result()
        processes: list[ProcessInfo] = []
        for (info,) in process_rows:
            try:
                processes.append(process_from_dict(json.loads(info)))
            except (CodecError, ValueError, TypeError) as exc:
                state = self._state()
                warn_once(
                    state.lock, state.warned, "process", "wsgiprof: skipped a process: %s", exc
                )
        last_row = rows[-1][0] if rows else 0
        return _Loaded(window, endpoints, processes, len(rows), last_row, lost, undecodable)

    def _compact(self, connection: _Connection, loaded: _Loaded) -> bool:
        """Replace the rows that ``loaded`` merged by one row holding their sum.

        Row ids only grow (AUTOINCREMENT) and rows are never changed, only deleted (by another
        compaction or a reset), so the rows at or below the last id read are the rows merged
        exactly when as many are deleted as were read; otherwise someone else got there first and
        nothing is changed.
        """
        assert loaded.window is not None
        payload = encode_delta(loaded.endpoints)
        with _immediate(connection) as transaction:
            deleted = connection.execute(
                "DELETE FROM deltas WHERE window_id = ? AND id <= ?",
                (loaded.window.id, loaded.last_row),
            ).rowcount
            if deleted != loaded.rows:
                transaction.rollback()
                return False
            connection.execute(
                "INSERT INTO deltas (window_id, pid, host, created, lost, payload)"
                " VALUES (?, 0, '', ?, ?, ?)",
                (loaded.window.id, time.time(), loaded.lost, payload),
            )
        return True

    def _window(self, connection: _Connection, *, create: bool) -> _Window | None:
        row = connection.execute(
            "SELECT id, start FROM windows WHERE app = ? ORDER BY id DESC LIMIT 1",
            (self.app_name,),
        ).fetchone()
        if row is not None:
            return _Window(row[0], row[1])
        if not create:
            return None
        with _immediate(connection, nested=connection.in_transaction):
            row = connection.execute(
                "SELECT id, start FROM windows WHERE app = ? ORDER BY id DESC LIMIT 1",
                (self.app_name,),
            ).fetchone()
            if row is not None:
                return _Window(row[0], row[1])
            start = time.time()
            cursor = connection.execute(
                "INSERT INTO windows (app, start) VALUES (?, ?)", (self.app_name, start)
            )
            assert cursor.lastrowid is not None
            return _Window(cursor.lastrowid, start)

    # -- saved runs and request rows ---------------------------------------------------------

    def save_run(self, label: str) -> RunInfo:
        """Close the current window as run ``label`` and start a new one, in one transaction:
        no flush falls between the run and the new window. Writers wait meanwhile (the merge of
        one window, usually a few milliseconds; at most ``busy_timeout``)."""
        label = check_label(label)
        state = self._state()
        connection = self._connection(state)
        try:
            with _immediate(connection):
                count = connection.execute(
                    "SELECT count(*) FROM runs WHERE app = ?", (self.app_name,)
                ).fetchone()[0]
                if count >= MAX_RUNS:
                    raise RunLimitError(f"{MAX_RUNS} runs are saved already; delete some first")
                window = self._window(connection, create=True)
                assert window is not None
                loaded = self._merge(connection, window)
                now = time.time()
                with state.lock:
                    lost = loaded.lost + state.lost_pending
                snapshot = Snapshot(window.start, now, loaded.endpoints, loaded.processes, lost)
                payload = encode_run(snapshot)
                info = RunInfo.of("0", label, snapshot, now)
                run_id = connection.execute(
                    "INSERT INTO runs (app, saved_at, info, payload) VALUES (?, ?, ?, ?)",
                    (self.app_name, now, json.dumps(info.to_dict()), payload),
                ).lastrowid
                self._new_window(connection, now)
        except sqlite3.Error:
            self._drop_connection(state)
            raise
        with state.lock:
            state.lost_pending = 0
        return RunInfo.of(str(run_id), label, snapshot, now)

    def list_runs(self) -> list[RunInfo]:
        """The saved runs of this application, oldest first."""
        connection = self._connection(self._state())
        rows = connection.execute(
            "SELECT id, info FROM runs WHERE app = ? ORDER BY id", (self.app_name,)
        ).fetchall()
        runs = []
        for run_id, info in rows:
            try:
                runs.append(RunInfo.from_dict({**json.loads(info), "id": str(run_id)}))
            except ValueError as exc:
                state = self._state()
                warn_once(state.lock, state.warned, "run", "wsgiprof: skipped a saved run: %s", exc)
        return runs

    def load_run(self, run_id: str) -> Snapshot:
        """The snapshot of a saved run; :class:`UnknownRunError` when there is none."""
        if not run_id.isdigit():
            raise UnknownRunError(run_id)
        connection = self._connection(self._state())
        row = connection.execute(
            "SELECT payload FROM runs WHERE app = ? AND id = ?", (self.app_name, int(run_id))
        ).fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return decode_run(bytes(row[0]))

    def delete_run(self, run_id: str) -> bool:
        """Forget a saved run; False when there was none with that id."""
        if not run_id.isdigit():
            return False
        connection = self._connection(self._state())
        with _immediate(connection):
            deleted = connection.execute(
                "DELETE FROM runs WHERE app = ? AND id = ?", (self.app_name, int(run_id))
            ).rowcount
        return bool(deleted)

    def flush_requests(self, rows: Sequence[RequestRow]) -> None:
        """Append request rows to the current window, keeping the newest
        :data:`~wsgiprof.stores.base.REQUEST_ROWS_PER_PROCESS` of each process; never raises."""
        if not rows:
            return
        state = self._state()
        rows = rows[-REQUEST_ROWS_PER_PROCESS:]
        try:
            connection = self._connection(state)
            with _immediate(connection):
                window = self._window(connection, create=True)
                assert window is not None
                connection.executemany(
                    "INSERT INTO requests (window_id, host, pid, row) VALUES (?, ?, ?, ?)",
                    [
                        (window.id, row.host, row.pid, text)
                        for row, text in zip(rows, encode_rows(rows), strict=True)
                    ],
                )
                for host, pid in {(row.host, row.pid) for row in rows}:
                    connection.execute(
                        "DELETE FROM requests WHERE window_id = :window AND host = :host"
                        " AND pid = :pid AND id <= (SELECT id FROM requests"
                        " WHERE window_id = :window AND host = :host AND pid = :pid"
                        " ORDER BY id DESC LIMIT 1 OFFSET :keep)",
                        {
                            "window": window.id,
                            "host": host,
                            "pid": pid,
                            "keep": REQUEST_ROWS_PER_PROCESS,
                        },
                    )
        except Exception as exc:
            self._drop_connection(state)
            warn_once(state.lock, state.warned, "rows", "wsgiprof: request rows were lost: %s", exc)

    def read_requests(self) -> list[RequestRow]:
        """The request rows of the current window, oldest first."""
        connection = self._connection(self._state())
        connection.execute("BEGIN")
        try:
            window = self._window(connection, create=False)
            texts = (
                [
                    text
                    for (text,) in connection.execute(
                        "SELECT row FROM requests WHERE window_id = ? ORDER BY id", (window.id,)
                    )
                ]
                if window is not None
                else []
            )
        finally:
            connection.execute("COMMIT")
        return sorted(decode_rows(texts), key=lambda row: row.timestamp)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> _Connection:
        """Open a new connection, creating the file and checking or creating the schema."""
        try:
            _private_folders(os.path.dirname(self.path))
            _private_file(self.path)
        except OSError as exc:
            raise SqliteStoreError(f"cannot create the wsgiprof store {self.path}: {exc}") from exc
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        connection.owner_pid = os.getpid()
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._check_schema(connection)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SqliteStoreError(
                    f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                    "put the store on a local file system"
                )
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SqliteStoreError(f"{self.path} is not a usable wsgiprof store: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def _check_schema(self, connection: _Connection) -> None:
        if self._schema_version(connection) == SCHEMA_VERSION:
            return
        with _immediate(connection):
            version = self._schema_version(connection)
            if version == SCHEMA_VERSION:
                return
            if version == 1:
                self._create(connection, _SCHEMA_2)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                return
            if version > SCHEMA_VERSION:
                raise SqliteStoreError(
                    f"{self.path} was written by a newer wsgiprof (schema {version}; this one "
                    f"knows schema {SCHEMA_VERSION}): upgrade wsgiprof everywhere, or point "
                    "WSGIPROF_STORE at another file"
                )
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise SqliteStoreError(
                    f"{self.path} is an SQLite database that wsgiprof did not create; "
                    "point WSGIPROF_STORE at another file"
                )
            self._create(connection, _SCHEMA + _SCHEMA_2)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _create(connection: _Connection, schema: str) -> None:
        for statement in schema.split(";"):
            if statement.strip():
                connection.execute(statement)

    def _schema_version(self, connection: _Connection) -> int:
        application = connection.execute("PRAGMA application_id").fetchone()[0]
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if application not in (0, APPLICATION_ID) or (application == 0 and version):
            raise SqliteStoreError(
                f"{self.path} is an SQLite database that wsgiprof did not create; "
                "point WSGIPROF_STORE at another file"
            )
        return version

    def _state(self) -> _ProcessState:
        state = self._state_now
        if state.pid != os.getpid():
            state = self._renew_state()
        return state

    def _renew_state(self) -> _ProcessState:
        """In a forked child: forget the parent's connections without using or closing them."""
        with _FORK_GUARD:
            state = self._state_now
            if state.pid != os.getpid():
                _INHERITED.append(state)
                state = self._state_now = _ProcessState()
            return state

    def _connection(self, state: _ProcessState) -> _Connection:
        ident = threading.get_ident()
        connection = state.connections.get(ident)
        if connection is not None:
            return connection
        threading.current_thread()
        connection = self._connect()
        with state.lock:
            alive = {thread.ident for thread in threading.enumerate()}
            for other in [key for key in state.connections if key not in alive]:
                with contextlib.suppress(sqlite3.Error):
                    state.connections.pop(other).close()
            state.connections[ident] = connection
        return connection

    def _drop_connection(self, state: _ProcessState) -> None:
        with state.lock:
            connection = state.connections.pop(threading.get_ident(), None)
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


class _Immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception or on request."""

    def __init__(self, connection: sqlite3.Connection, nested: bool) -> None:
        self._connection = connection
        self._nested = nested
        self._done = False

    def __enter__(self) -> _Immediate:
        if not self._nested:
            self._connection.execute("BEGIN IMMEDIATE")
        return self

    def rollback(self) -> None:
        self._connection.execute("ROLLBACK")
        self._done = True

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self._nested or self._done:
            return
        if kind is None:
            self._connection.execute("COMMIT")
        elif self._connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("ROLLBACK")


def _immediate(connection: sqlite3.Connection, *, nested: bool = False) -> _Immediate:
    return _Immediate(connection, nested)


def _private_folders(folder: str) -> None:
    """Create ``folder`` and any missing parents, each readable by this user only."""
    if not folder or os.path.isdir(folder):
        return
    parent = os.path.dirname(folder)
    if parent != folder:
        _private_folders(parent)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return
    os.chmod(folder, 0o700)


def _private_file(path: str) -> None:
    """Create an empty file readable by this user only, unless it exists (SQLite gives the
    ``-wal`` and ``-shm`` files the same permissions)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)
