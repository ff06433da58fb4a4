"""The run and request-row contract every store keeps, checked the same way for each store.

The store test modules call these with their own stores (memory, SQLite, Redis).
"""

from __future__ import annotations

import inspect

import pytest

from wsgiprof.model import EndpointProfile, Frame, Weight
from wsgiprof.stores.base import (
    REQUEST_ROWS_PER_PROCESS,
    ProcessInfo,
    RequestRow,
    Snapshot,
    Store,
    UnknownRunError,
)

MAIN = Frame("views.index", "/srv/app/views.py", 3)
LEAF = Frame("render", "/srv/app/render.py", 9)


def _delta(requests: int, cpu: float = 0.01) -> dict[str, EndpointProfile]:
    profile = EndpointProfile("GET /", requests=requests, sampled=requests, cpu=cpu, wall=cpu)
    profile.stacks[(MAIN, LEAF)] = Weight(requests, cpu, cpu)
    return {"GET /": profile}


def check_is_a_store(store: Store) -> None:
    """``store`` has every method of the :class:`~wsgiprof.stores.base.Store` protocol, taking the
    protocol's parameters (any more must be optional), and a new store reads an empty window.

    The annotation ``store: Store`` is checked by mypy only; this runs, so a store missing a
    method, or naming a parameter differently, fails the test suite too. Closes ``store``.
    """
    methods = [name for name, member in vars(Store).items() if inspect.isfunction(member)]
    assert {"flush", "read", "read_requests"} <= set(methods)
    for name in methods:
        if name.startswith("_"):
            continue
        method = getattr(store, name, None)
        assert callable(method), f"{type(store).__name__} has no method {name}()"
        wanted = list(inspect.signature(getattr(Store, name)).parameters.values())[1:]
        have = list(inspect.signature(method).parameters.values())
        assert [(p.name, p.kind) for p in have[: len(wanted)]] == [
            (p.name, p.kind) for p in wanted
        ], f"{type(store).__name__}.{name}{inspect.signature(method)} differs from the protocol"
        extra = have[len(wanted) :]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (
            f"{type(store).__name__}.{name} requires more than the protocol's parameters"
        )
    try:
        snapshot = store.read()
        assert isinstance(snapshot, Snapshot)
        assert (snapshot.endpoints, snapshot.processes, snapshot.lost_flushes) == ({}, [], 0)
        assert snapshot.window_start <= snapshot.window_end
        assert isinstance(store.window_start(), float)
        assert store.read_requests() == []
        assert store.list_runs() == []
    finally:
        store.close()


def check_runs(store: Store) -> None:
    """Save closes the window as an immutable run, lists, loads and deletes it."""
    store.flush(_delta(3, 0.03), ProcessInfo(pid=7, host="web-1"))
    first = store.save_run("  baseline ")
    assert first.label == "baseline"
    assert (first.requests, first.sampled, first.endpoints) == (3, 3, 1)
    assert first.cpu_seconds == pytest.approx(0.03)
    assert store.read().endpoints == {}, "saving a run starts a new window"

    store.flush(_delta(5, 0.01), ProcessInfo(pid=7, host="web-1"))
    second = store.save_run("faster")
    assert [run.label for run in store.list_runs()] == ["baseline", "faster"]
    assert len({first.id, second.id}) == 2

    loaded = store.load_run(first.id)
    assert loaded.endpoints["GET /"].requests == 3
    assert loaded.endpoints["GET /"].stacks[(MAIN, LEAF)].cpu == pytest.approx(0.03)
    assert [(p.pid, p.host) for p in loaded.processes] == [(7, "web-1")]
    assert loaded.window_start == first.window_start
    loaded.endpoints["GET /"].requests = 99
    assert store.load_run(first.id).endpoints["GET /"].requests == 3, "runs are immutable"

    assert store.delete_run(first.id) is True
    assert store.delete_run(first.id) is False
    assert store.delete_run("no-such-id") is False
    assert [run.id for run in store.list_runs()] == [second.id]
    with pytest.raises(UnknownRunError):
        store.load_run(first.id)
    with pytest.raises(UnknownRunError):
        store.load_run("../etc")
    for bad in ("", "   ", "x" * 101, "tab\there"):
        with pytest.raises(ValueError, match="label"):
            store.save_run(bad)


def check_request_rows(store: Store) -> None:
    """Rows of the window are kept, bounded per process, and a new window starts empty."""
    now = store.window_start() + 1
    rows = [RequestRow(now + i, "GET /", 200, 1.5, 2.5, 7, "web-1") for i in range(3)]
    store.flush_requests(rows)
    store.flush_requests([RequestRow(now + 0.5, "POST /login", 500, 3.0, 4.0, 8, "web-2")])
    read = store.read_requests()
    assert [row.timestamp for row in read] == sorted(row.timestamp for row in read)
    assert len(read) == 4
    assert RequestRow(now + 0.5, "POST /login", 500, 3.0, 4.0, 8, "web-2") in read

    many = [
        RequestRow(now + 10 + i / 1e5, "GET /", 200, 1.0, 1.0, 7, "web-1")
        for i in range(REQUEST_ROWS_PER_PROCESS + 50)
    ]
    store.flush(_delta(1), ProcessInfo(pid=7, host="web-1"))
    store.flush_requests(many)
    web1 = [row for row in store.read_requests() if row.pid == 7]
    assert len(web1) <= REQUEST_ROWS_PER_PROCESS + 3
    assert web1[-1] == many[-1], "the newest rows are kept"

    store.save_run("rows")
    assert store.read_requests() == []
