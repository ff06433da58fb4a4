"""Shared fixtures and hooks. Helpers live in tests/servers.py."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Generator, Iterator

import pytest
from pyinstrument.stack_sampler import get_stack_sampler

from tests.servers import (
    SERVER_PROCESSES_KEY,
    postgres_cluster,
    postgres_dsn,
    redis_server,
    server_process,
    threaded_server,
)

__all__ = ["postgres_cluster", "postgres_dsn", "redis_server", "server_process", "threaded_server"]

#: Opt-out marker for the "no wsgiprof* thread survives the test" check.
THREAD_LEAK_MARKER = "allow_thread_leak"
#: Threads whose name starts with this belong to wsgiprof and must not outlive a test.
WSGIPROF_THREAD_PREFIX = "wsgiprof"
#: How long in total to wait for wsgiprof threads that are just finishing.
THREAD_JOIN_GRACE = 2.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{THREAD_LEAK_MARKER}: the test may leave threads named '{WSGIPROF_THREAD_PREFIX}*' "
        "running (skips that part of the leak check)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use the PostgreSQL fixtures with ``postgres``."""
    for item in items:
        if "postgres_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of ``server_process`` servers to the report of a failing test."""
    report = yield
    if report.failed:
        for proc in item.stash.get(SERVER_PROCESSES_KEY, []):
            text = proc.logs()
            if len(text) > 20_000:
                text = "[... truncated ...]\n" + text[-20_000:]
            report.sections.append((f"Captured server log {proc.name} ({proc.url})", text))
    return report


@pytest.fixture(autouse=True)
def _no_profiler_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: no profiler left on this thread and no stray ``wsgiprof*`` thread.

    Whatever leaked is cleaned up before failing, so one leak does not fail later tests.
    """
    threads_before = set(threading.enumerate())
    yield
    problems: list[str] = []

    profile_func = sys.getprofile()
    if profile_func is not None:
        problems.append(f"sys.getprofile() is still set: {profile_func!r}")

    sampler = get_stack_sampler()
    if sampler.subscribers:
        targets = [s.target for s in sampler.subscribers]
        problems.append(f"pyinstrument stack sampler still has subscribers: {targets!r}")
        for target in targets:
            with contextlib.suppress(sampler.SubscriberNotFound):
                sampler.unsubscribe(target)
    if profile_func is not None:
        sys.setprofile(None)

    # Only a yappi that was imported can be running; don't import it just to ask.
    yappi = sys.modules.get("yappi")
    if yappi is not None and yappi.is_running():
        problems.append("yappi is still running")
        yappi.stop()
        yappi.clear_stats()

    if request.node.get_closest_marker(THREAD_LEAK_MARKER) is None:
        current = threading.current_thread()
        suspects = [
            t
            for t in threading.enumerate()
            if t.name.startswith(WSGIPROF_THREAD_PREFIX)
            and t is not current
            and t not in threads_before
        ]
        deadline = time.monotonic() + THREAD_JOIN_GRACE
        for t in suspects:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in suspects if t.is_alive()]
        if alive:
            problems.append(
                f"threads still running after the test: {alive} "
                f"(stop them, or mark the test @pytest.mark.{THREAD_LEAK_MARKER})"
            )

    if problems:
        pytest.fail("leak check failed:\n  " + "\n  ".join(problems), pytrace=False)
