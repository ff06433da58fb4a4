"""MemoryStore: merge of flushes, private snapshots, processes and windows in one process."""

from __future__ import annotations

import threading

from tests.store_contract import check_is_a_store, check_request_rows, check_runs
from wsgiprof.model import EndpointProfile, Frame, Weight
from wsgiprof.stores import MemoryStore
from wsgiprof.stores.base import ProcessInfo

MAIN = Frame("views.index", "/srv/app/views.py", 3)


def _delta(requests: int, samples: int = 1) -> dict[str, EndpointProfile]:
    profile = EndpointProfile(
        "GET /",
        requests=requests,
        sampled=1,
        cpu=0.01,
        stacks={(MAIN,): Weight(samples, 0.002, 0.001)},
    )
    return {"GET /": profile}


def test_is_a_store() -> None:
    check_is_a_store(MemoryStore())


def test_flushes_merge() -> None:
    store = MemoryStore()

    store.flush(_delta(3, samples=2), ProcessInfo(pid=1, host="h"))
    store.flush(_delta(4, samples=5), ProcessInfo(pid=1, host="h"))

    profile = store.read().endpoints["GET /"]
    assert profile.requests == 7
    assert profile.sampled == 2
    assert profile.stacks[(MAIN,)] == Weight(7, 0.004, 0.002)


def test_flush_copies_the_delta() -> None:
    store = MemoryStore()
    delta = _delta(3)

    store.flush(delta, ProcessInfo())
    delta["GET /"].requests = 1000

    assert store.read().endpoints["GET /"].requests == 3


def test_snapshot_belongs_to_the_caller() -> None:
    store = MemoryStore()
    store.flush(_delta(3), ProcessInfo())

    snapshot = store.read()
    snapshot.endpoints["GET /"].requests = 1000
    snapshot.endpoints["GET /"].stacks[(MAIN,)].samples = 1000

    again = store.read().endpoints["GET /"]
    assert again.requests == 3
    assert again.stacks[(MAIN,)].samples == 1


def test_processes_keep_the_latest_reading_per_host_and_pid() -> None:
    store = MemoryStore()

    store.flush({}, ProcessInfo(pid=1, host="a", rss_bytes=1))
    store.flush({}, ProcessInfo(pid=1, host="a", rss_bytes=2))
    store.flush({}, ProcessInfo(pid=1, host="b", rss_bytes=3))

    readings = {info.key: info.rss_bytes for info in store.read().processes}
    assert readings == {"a:1": 2, "b:1": 3}


def test_window_times() -> None:
    store = MemoryStore()
    start = store.window_start()

    snapshot = store.read()

    assert snapshot.window_start == start
    assert snapshot.window_end >= start
    assert snapshot.lost_flushes == 0


def test_reset_starts_an_empty_window() -> None:
    store = MemoryStore()
    before = store.window_start()
    store.flush(_delta(3), ProcessInfo())

    start = store.reset()

    assert start >= before
    assert store.window_start() == start
    snapshot = store.read()
    assert snapshot.endpoints == {}
    assert snapshot.processes == []


def test_concurrent_flushes_are_all_counted() -> None:
    store = MemoryStore()

    def work() -> None:
        for _ in range(200):
            store.flush(_delta(1), ProcessInfo())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert store.read().endpoints["GET /"].requests == 800


def test_runs_are_saved_listed_loaded_and_deleted() -> None:
    check_runs(MemoryStore())


def test_request_rows_are_kept_per_window() -> None:
    check_request_rows(MemoryStore())
