"""SqliteStore: one file shared by processes; merges, resets, compaction, locks, kills and forks.

Two ``SqliteStore`` objects on one file stand for two processes in most tests; the tests at the end
use real processes. :func:`hammer` is also the benchmark: ``WSGIPROF_SQLITE_STRESS_SECONDS=30``
runs the concurrency test for 30 s instead of a few.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import run_forked, unavailable
from tests.store_contract import check_is_a_store, check_request_rows, check_runs
from wsgiprof.config import Config, default_store
from wsgiprof.model import EndpointProfile, Frame, Stack, Weight
from wsgiprof.stores import available_schemes, open_store, sqlite_path
from wsgiprof.stores.base import ProcessInfo, Snapshot, UnknownRunError
from wsgiprof.stores.codec import encode_delta
from wsgiprof.stores.sqlite import _INHERITED, SCHEMA_VERSION, SqliteStore, SqliteStoreError

STRESS_SECONDS = float(os.environ.get("WSGIPROF_SQLITE_STRESS_SECONDS", "3"))

MAIN = Frame("views.index", "/srv/app/views.py", 3)
LEAF = Frame("render", "/srv/app/render.py", 9)
SLEEP = Frame("sleep", "<built-in>", 0, off_cpu=True)


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


def _rows(path: str) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM deltas").fetchone()[0])


def _integrity(path: str) -> str:
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "store.sqlite3")


# -- one process --------------------------------------------------------------------------------


def test_is_a_store(path: str) -> None:
    check_is_a_store(SqliteStore(path))


def test_flush_then_read_round_trips(path: str) -> None:
    store = SqliteStore(path)
    delta = _delta(5, "GET /a", "GET /b")

    store.flush(delta, ProcessInfo(pid=7, host="web-1"))
    snapshot = store.read()

    assert snapshot.endpoints == delta
    assert snapshot.lost_flushes == 0
    assert snapshot.window_start == store.window_start()
    assert snapshot.window_start <= snapshot.window_end
    store.close()


def test_empty_store_reads_empty(path: str) -> None:
    snapshot = SqliteStore(path).read()

    assert snapshot.endpoints == {}
    assert snapshot.processes == []


def test_snapshot_belongs_to_the_caller(path: str) -> None:
    store = SqliteStore(path)
    store.flush(_delta(5), ProcessInfo())

    store.read().endpoints["GET /"].requests = 1000

    assert store.read().endpoints["GET /"].requests == 5


def test_empty_delta_records_the_process_only(path: str) -> None:
    store = SqliteStore(path)

    store.flush({}, ProcessInfo(pid=3, host="h"))

    assert _rows(path) == 0
    assert [(p.host, p.pid) for p in store.read().processes] == [("h", 3)]


def test_file_and_new_folders_are_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.sqlite3"

    store = SqliteStore(str(path))
    store.flush(_delta(1), ProcessInfo())

    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for file in path.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    store.close()


def test_file_uses_wal_and_a_schema_version(path: str) -> None:
    SqliteStore(path)

    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        connection.close()


def test_relative_path_is_fixed_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("rel.sqlite3")
    monkeypatch.chdir("/")

    store.flush(_delta(1), ProcessInfo())

    assert store.path == str(tmp_path / "rel.sqlite3")
    assert _rows(store.path) == 1


@pytest.mark.parametrize("bad", ["", ":memory:", "file:x.db?mode=ro"])
def test_a_file_path_is_required(bad: str) -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteStore(bad)


def test_newer_schema_is_refused(path: str) -> None:
    SqliteStore(path)
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()

    with pytest.raises(SqliteStoreError, match="newer wsgiprof"):
        SqliteStore(path)


def test_foreign_database_is_refused_and_left_alone(path: str) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (id INTEGER)")
    connection.commit()
    connection.close()

    with pytest.raises(SqliteStoreError, match="did not create"):
        SqliteStore(path)

    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
        assert tables == [("users",)]
    finally:
        connection.close()


def test_file_that_is_not_a_database_is_refused(path: str) -> None:
    Path(path).write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(SqliteStoreError, match="not a usable wsgiprof store"):
        SqliteStore(path)


def _writable_here_but_not_in_a_locked_folder(folder: Path) -> None:
    """As the current user: a store can be created under ``folder``, but not under a folder of
    it that the user may read and not write."""
    SqliteStore(str(folder / "writable" / "sub" / "store.sqlite3")).close()
    locked = folder / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SqliteStoreError, match="cannot create"):
        SqliteStore(str(locked / "sub" / "store.sqlite3"))


def _as_user(user: pwd.struct_passwd, check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child that has dropped root's privileges to ``user``; whatever
    it raises fails this test, with the child's traceback."""

    def dropped() -> bytes:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        check()
        return b""

    code, report = run_forked(dropped, timeout=60)
    assert code == 0, f"as {user.pw_name}:\n{report.decode(errors='replace')}"


@pytest.mark.filterwarnings(
    # The privileges are dropped in a forked child; Python 3.12+ warns when threads exist.
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)
def test_unwritable_folder_is_reported(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        _writable_here_but_not_in_a_locked_folder(tmp_path)
        return
    # Root can write anywhere: check as ``nobody``, in a folder it owns under /tmp (which it can
    # traverse, unlike pytest's private temporary folder).
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        unavailable("running as root and there is no 'nobody' user to drop privileges to")
    folder = Path(tempfile.mkdtemp(prefix="wsgiprof-unwritable-", dir="/tmp"))
    try:
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        _as_user(nobody, lambda: _writable_here_but_not_in_a_locked_folder(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_threads_use_their_own_connections(path: str) -> None:
    store = SqliteStore(path)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                store.flush(_delta(1), ProcessInfo())
                store.read()
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert store.read().endpoints["GET /"].requests == 100


def test_connections_of_finished_threads_are_closed(path: str) -> None:
    store = SqliteStore(path)
    thread = threading.Thread(target=store.flush, args=(_delta(1), ProcessInfo()))
    thread.start()
    thread.join()
    assert thread.ident in store._state().connections

    store.read()

    assert set(store._state().connections) == {threading.get_ident()}
    store.close()
    assert store._state().connections == {}


# -- several stores on one file (standing for processes) ----------------------------------------


def test_two_stores_merge(path: str) -> None:
    one, two = SqliteStore(path), SqliteStore(path)

    one.flush(_delta(3, "GET /a", "GET /b"), ProcessInfo(pid=1, host="h"))
    two.flush(_delta(4, "GET /b", "GET /c"), ProcessInfo(pid=2, host="h"))

    expected = {"GET /a": 3, "GET /b": 7, "GET /c": 4}
    assert _requests(one.read()) == expected
    assert _requests(two.read()) == expected
    assert one.read().endpoints["GET /b"].stacks[(MAIN, LEAF)] == Weight(2, 0.004, 0.002)


def test_processes_are_listed_with_host_and_pid(path: str) -> None:
    one, two = SqliteStore(path), SqliteStore(path)

    one.flush(_delta(1), ProcessInfo(pid=11, host="web-1", rss_bytes=1, cpu_percent=50.0))
    two.flush(_delta(1), ProcessInfo(pid=12, host="web-1", threads=4))
    one.flush({}, ProcessInfo(pid=11, host="web-1", rss_bytes=2, last_seen=123.0))

    processes = one.read().processes
    assert [(p.host, p.pid) for p in processes] == [("web-1", 11), ("web-1", 12)]
    assert processes[0] == ProcessInfo(pid=11, host="web-1", rss_bytes=2, last_seen=123.0)
    assert processes[1].threads == 4


def test_reset_empties_the_window_for_everyone(path: str) -> None:
    one, two = SqliteStore(path), SqliteStore(path)
    one.flush(_delta(3), ProcessInfo(pid=1))
    two.flush(_delta(4), ProcessInfo(pid=2))
    before = one.window_start()

    start = two.reset()

    assert start >= before
    for store in (one, two):
        snapshot = store.read()
        assert snapshot.endpoints == {}
        assert snapshot.processes == []
        assert snapshot.window_start == start
        assert store.window_start() == start
    one.flush(_delta(5), ProcessInfo(pid=1))
    assert _requests(two.read()) == {"GET /": 5}
    assert _rows(path) == 1


def test_applications_sharing_a_file_stay_apart(path: str) -> None:
    shop, blog = SqliteStore(path, app_name="shop"), SqliteStore(path, app_name="blog")
    shop.flush(_delta(3, "GET /cart"), ProcessInfo(pid=1))
    blog.flush(_delta(4, "GET /post"), ProcessInfo(pid=2))

    shop.reset()

    assert _requests(shop.read()) == {}
    assert _requests(blog.read()) == {"GET /post": 4}
    assert [p.pid for p in blog.read().processes] == [2]


def test_compaction_keeps_totals_exact(path: str) -> None:
    reader = SqliteStore(path, compact_after=5)
    writers = [SqliteStore(path) for _ in range(3)]
    expected: dict[str, int] = {}
    for round_ in range(1, 9):
        for number, writer in enumerate(writers):
            name = f"GET /w{number}"
            writer.flush(_delta(round_, name, "GET /shared"), ProcessInfo(pid=number))
            expected[name] = expected.get(name, 0) + round_
            expected["GET /shared"] = expected.get("GET /shared", 0) + round_
    unmerged = writers[0].read()
    assert _rows(path) == 24

    merged = reader.read()

    assert _rows(path) == 1
    assert merged.endpoints == unmerged.endpoints
    assert _requests(merged) == expected
    assert merged.endpoints["GET /shared"].stacks[(MAIN, LEAF)].samples == 24
    assert reader.read().endpoints == unmerged.endpoints
    writers[1].flush(_delta(1, "GET /shared"), ProcessInfo(pid=1))
    assert reader.read().endpoints["GET /shared"].requests == expected["GET /shared"] + 1


def test_a_compaction_that_lost_a_race_changes_nothing(path: str) -> None:
    slow, fast = SqliteStore(path, compact_after=2), SqliteStore(path, compact_after=2)
    for _ in range(4):
        slow.flush(_delta(1), ProcessInfo())
    connection = slow._connection(slow._state())
    loaded = slow._load(connection, compact=False)

    fast.read()
    fast.flush(_delta(10), ProcessInfo())

    assert slow._compact(connection, loaded) is False
    assert _requests(slow.read()) == {"GET /": 14}


def test_reset_during_compaction_is_not_undone(path: str) -> None:
    slow, other = SqliteStore(path, compact_after=2), SqliteStore(path)
    for _ in range(4):
        slow.flush(_delta(1), ProcessInfo())
    connection = slow._connection(slow._state())
    loaded = slow._load(connection, compact=False)

    other.reset()

    assert slow._compact(connection, loaded) is False
    assert _requests(slow.read()) == {}


def test_writers_compact_when_nobody_reads(path: str) -> None:
    store = SqliteStore(path, compact_after=2)

    for _ in range(20):
        store.flush(_delta(1), ProcessInfo())

    assert _rows(path) < 9
    assert _requests(store.read()) == {"GET /": 20}


def test_undecodable_rows_are_skipped_and_kept(path: str, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(path, compact_after=1)
    store.flush(_delta(2), ProcessInfo())
    store.flush(_delta(3), ProcessInfo())
    future = bytearray(encode_delta(_delta(100)))
    future[3] = 99
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO deltas (window_id, pid, host, created, payload)"
        " SELECT max(id), 1, 'h', 0, ? FROM windows",
        (bytes(future),),
    )
    connection.commit()
    connection.close()

    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        assert _requests(store.read()) == {"GET /": 5}
        assert _requests(store.read()) == {"GET /": 5}

    assert _rows(path) == 3
    assert len([r for r in caplog.records if "skipped a delta" in r.getMessage()]) == 1


# -- trouble ------------------------------------------------------------------------------------


def test_flush_under_a_held_lock_counts_the_loss_and_logs_once(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(path, busy_timeout=0.05)
    other = SqliteStore(path)
    store.flush(_delta(1), ProcessInfo())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        store.flush(_delta(10), ProcessInfo())
        store.flush(_delta(10), ProcessInfo())
        store.flush({}, ProcessInfo())
        snapshot = store.read()

    assert snapshot.lost_flushes == 2
    assert _requests(snapshot) == {"GET /": 1}
    warnings = [r for r in caplog.records if r.name == "wsgiprof"]
    assert len(warnings) == 1
    assert "locked" in warnings[0].getMessage()
    assert other.read().lost_flushes == 0

    blocker.execute("ROLLBACK")
    blocker.close()
    store.flush(_delta(1), ProcessInfo())
    assert other.read().lost_flushes == 2
    assert store.read().lost_flushes == 2
    assert _requests(other.read()) == {"GET /": 2}


def test_flush_survives_a_vanished_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "gone"
    store = SqliteStore(str(folder / "store.sqlite3"))
    store.close()
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    folder.write_text("now a file")

    with caplog.at_level(logging.WARNING, logger="wsgiprof"):
        store.flush(_delta(1), ProcessInfo())

    assert len(caplog.records) == 1


def test_reset_discards_this_process_losses(path: str) -> None:
    store = SqliteStore(path, busy_timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    store.flush(_delta(1), ProcessInfo())
    blocker.execute("ROLLBACK")
    blocker.close()

    store.reset()

    assert store.read().lost_flushes == 0


# -- URLs ---------------------------------------------------------------------------------------


def test_sqlite_is_available() -> None:
    assert "sqlite" in available_schemes()


def test_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/abs.sqlite3"
    assert url.startswith("sqlite:////")

    store = open_store(url, app_name="shop")

    assert isinstance(store, SqliteStore)
    assert store.path == str(tmp_path / "abs.sqlite3")
    assert store.app_name == "shop"


def test_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    store = open_store("sqlite:///data/rel.sqlite3")

    assert isinstance(store, SqliteStore)
    assert store.path == str(tmp_path / "data" / "rel.sqlite3")
    assert sqlite_path("sqlite:///data/rel.sqlite3") == "data/rel.sqlite3"


def test_default_store_url_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    url = Config.from_env({}).store

    assert url == default_store()
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store.path.startswith(str(tmp_path))


def test_url_without_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite:///<path>"):
        sqlite_path("sqlite:///")


# -- real processes -----------------------------------------------------------------------------


@dataclass
class HammerResult:
    flushed: dict[str, int]
    flushes: int
    reads: int
    errors: list[str]
    snapshot: Snapshot


def _writer(path: str, number: int, seconds: float, start: Any, queue: Any) -> None:
    try:
        store = SqliteStore(path, compact_after=16)
        name = f"GET /w{number}"
        flushed = {name: 0, "GET /shared": 0}
        flushes = 0
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            requests = 1 + flushes % 7
            store.flush(_delta(requests, name, "GET /shared"), ProcessInfo())
            flushed[name] += requests
            flushed["GET /shared"] += requests
            flushes += 1
        queue.put(("writer", flushed, flushes, None))
    except BaseException:
        queue.put(("writer", {}, 0, traceback.format_exc()))


def _reader(path: str, seconds: float, start: Any, queue: Any) -> None:
    try:
        store = SqliteStore(path, compact_after=16)
        start.wait()
        deadline = time.monotonic() + seconds
        reads = 0
        previous = 0
        while time.monotonic() < deadline:
            total = store.read().endpoints.get("GET /shared")
            current = total.requests if total is not None else 0
            if current < previous:
                raise AssertionError(f"total went down from {previous} to {current}")
            previous = current
            reads += 1
        queue.put(("reader", {}, reads, None))
    except BaseException:
        queue.put(("reader", {}, 0, traceback.format_exc()))


def hammer(path: str, *, writers: int = 8, seconds: float = STRESS_SECONDS) -> HammerResult:
    """``writers`` processes flush small deltas as fast as they can for ``seconds`` while one
    more process reads (and so compacts) all the time."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    queue = context.Queue()
    processes = [
        context.Process(target=_writer, args=(path, n, seconds, start, queue))
        for n in range(writers)
    ]
    processes.append(context.Process(target=_reader, args=(path, seconds, start, queue)))
    SqliteStore(path)
    for process in processes:
        process.start()
    start.set()
    results = [queue.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    flushed: dict[str, int] = {}
    flushes = reads = 0
    errors = []
    for kind, counts, number, error in results:
        if error is not None:
            errors.append(f"{kind}: {error}")
        for name, requests in counts.items():
            flushed[name] = flushed.get(name, 0) + requests
        if kind == "writer":
            flushes += number
        else:
            reads += number
    return HammerResult(flushed, flushes, reads, errors, SqliteStore(path).read())


def test_eight_processes_flush_while_another_reads(path: str) -> None:
    result = hammer(path, writers=8, seconds=STRESS_SECONDS)

    assert result.errors == []
    assert result.flushes > 8
    assert result.reads > 1
    assert result.snapshot.lost_flushes == 0
    assert _requests(result.snapshot) == result.flushed
    assert result.snapshot.endpoints["GET /shared"].stacks[(MAIN, LEAF)].samples == result.flushes
    assert _integrity(path) == "ok"


def _big_delta(number: int) -> dict[str, EndpointProfile]:
    frames = [Frame(f"f{i}", f"/srv/app/m{i % 40}.py", i) for i in range(400)]
    stacks: dict[Stack, Weight] = {
        tuple(frames[(i * 7 + j) % 400] for j in range(30)): Weight(1, 0.001, 0.001)
        for i in range(200)
    }
    return {
        f"GET /k{number}/{e}": EndpointProfile(f"GET /k{number}/{e}", requests=1, stacks=stacks)
        for e in range(20)
    }


def _victim(path: str, committed: Any) -> None:
    store = SqliteStore(path, compact_after=4)
    delta = _big_delta(0)
    while True:
        store.flush(delta, ProcessInfo())
        with committed.get_lock():
            committed.value += 1


def test_a_process_killed_while_flushing_corrupts_nothing(path: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    queue = context.Queue()
    committed = context.Value("i", 0)
    SqliteStore(path)
    survivors = [
        context.Process(target=_writer, args=(path, n, 2.0, start, queue)) for n in range(2)
    ]
    victims = []
    for _ in range(3):
        victim = context.Process(target=_victim, args=(path, committed))
        victim.start()
        victims.append(victim)
    for process in survivors:
        process.start()
    start.set()
    deadline = time.monotonic() + 30
    while committed.value < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert committed.value >= 6, "the victims flush before they are killed"
    for number, victim in enumerate(victims):
        time.sleep(0.05 + 0.037 * number)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
    results = [queue.get(timeout=60) for _ in survivors]
    for process in survivors:
        process.join(timeout=30)

    assert _integrity(path) == "ok"
    assert [error for *_, error in results if error is not None] == []
    snapshot = SqliteStore(path).read()
    for kind, counts, *_ in results:
        assert kind == "writer"
        for name, requests in counts.items():
            if name != "GET /shared":
                assert snapshot.endpoints[name].requests == requests
    assert snapshot.endpoints["GET /shared"].requests == sum(
        counts["GET /shared"] for _, counts, *_ in results
    )
    victim_total = snapshot.endpoints["GET /k0/0"].requests
    assert committed.value <= victim_total <= committed.value + len(victims)
    assert _integrity(path) == "ok"


def _forked_child(store: SqliteStore, parent_connection_id: int, queue: Any) -> None:
    try:
        kept = [
            connection
            for state in _INHERITED
            for connection in state.connections.values()
            if id(connection) == parent_connection_id
        ]
        store.flush(_delta(2), ProcessInfo())
        connection = store._connection(store._state())
        queue.put(
            (
                kept[0].owner_pid if len(kept) == 1 else None,
                store._state().pid == os.getpid(),
                connection.owner_pid == os.getpid(),
                id(connection) != parent_connection_id,
                store.read().endpoints["GET /"].requests,
                None,
            )
        )
    except BaseException:
        queue.put((None, False, False, False, 0, traceback.format_exc()))


def test_a_forked_child_opens_its_own_connection(path: str) -> None:
    store = SqliteStore(path)
    store.flush(_delta(1), ProcessInfo())
    store.read()
    parent_connection = store._connection(store._state())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    child = context.Process(target=_forked_child, args=(store, id(parent_connection), queue))
    child.start()
    result = queue.get(timeout=60)
    child.join(timeout=30)

    assert result[-1] is None
    assert result[:5] == (os.getpid(), True, True, True, 3)
    assert child.exitcode == 0
    assert store._connection(store._state()) is parent_connection
    store.flush(_delta(4), ProcessInfo())
    assert store.read().endpoints["GET /"].requests == 7
    assert _integrity(path) == "ok"


def test_a_fork_without_at_fork_hooks_is_detected(path: str) -> None:
    store = SqliteStore(path)
    store.flush(_delta(1), ProcessInfo())
    old = store._state()
    old.pid = -1

    store.flush(_delta(1), ProcessInfo())

    assert store._state() is not old
    assert store._state().pid == os.getpid()
    assert store.read().endpoints["GET /"].requests == 2
    for connection in old.connections.values():
        connection.close()


# -- saved runs and request rows --------------------------------------------------------------


def test_runs_are_saved_listed_loaded_and_deleted(path: str) -> None:
    check_runs(SqliteStore(path))


def test_runs_are_shared_by_processes_and_apps_stay_apart(path: str) -> None:
    writer, reader = SqliteStore(path), SqliteStore(path)
    writer.flush(_delta(4), ProcessInfo(pid=1, host="a"))
    info = reader.save_run("baseline")
    assert info.requests == 4
    assert [run.id for run in writer.list_runs()] == [info.id]
    assert SqliteStore(path, app_name="other").list_runs() == []
    with pytest.raises(UnknownRunError):
        SqliteStore(path, app_name="other").load_run(info.id)


def test_request_rows_are_kept_per_window(path: str) -> None:
    check_request_rows(SqliteStore(path))


def test_schema_1_file_is_upgraded_in_place(path: str) -> None:
    store = SqliteStore(path)
    store.flush(_delta(2), ProcessInfo())
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE runs")
        connection.execute("DROP TABLE requests")
        connection.execute("PRAGMA user_version = 1")
    reopened = SqliteStore(path)
    assert _requests(reopened.read()) == {"GET /": 2}
    assert reopened.save_run("after upgrade").requests == 2
